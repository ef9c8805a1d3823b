package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
)

func TestAPIAuthentication(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIAuthentication)
}

func testAPIAuthentication(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	token, _ := mustOAuthToken(t, e.store, f.account, f.owner)

	t.Run("missing", func(t *testing.T) {
		r := e.do(t, "GET", "/api/account", nil).want(t, 401)
		if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="valet"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
		if r.Err(t).Code != valet.EUNAUTHORIZED {
			t.Errorf("code %q", r.Err(t).Code)
		}
		if r.Header.Get("X-Valet-Account-Api-Call-Limit") != "" {
			t.Error("a 401 has no account, so no rate-limit header")
		}
	})
	for name, auth := range map[string]string{
		"unknown key":      "Bearer " + valet.NewSecret(valet.PrefixAPIKey),
		"unknown token":    "Bearer " + valet.NewSecret(valet.PrefixAccessToken),
		"refresh token":    "Bearer " + valet.NewSecret(valet.PrefixRefreshToken),
		"no prefix":        "Bearer abc",
		"empty bearer":     "Bearer ",
		"other scheme":     "Token " + f.key,
		"basic not base64": "Basic %%%",
		"basic no colon":   "Basic " + "b3duZXI=",
		"long junk":        "Bearer vak_" + strings.Repeat("x", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do(t, "GET", "/api/account", nil, header("Authorization", auth)).want(t, 401)
			if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="valet", error="invalid_token"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
	t.Run("bearer api key", func(t *testing.T) {
		e.do(t, "GET", "/api/account", nil, bearer(f.key)).want(t, 200)
		e.do(t, "GET", "/api/account", nil, header("Authorization", "bearer "+f.key)).want(t, 200)
	})
	t.Run("bearer access token", func(t *testing.T) {
		e.do(t, "GET", "/api/account", nil, bearer(token)).want(t, 200)
	})
	t.Run("basic", func(t *testing.T) {
		e.do(t, "GET", "/api/account", nil, basicAuth(f.owner.Email, f.key)).want(t, 200)
		e.do(t, "GET", "/api/account", nil, basicAuth(strings.ToUpper(f.owner.Email), f.key)).want(t, 200)
	})
	t.Run("basic wrong email", func(t *testing.T) {
		e.do(t, "GET", "/api/account", nil, basicAuth(f.agent.Email, f.key)).want(t, 401)
		e.do(t, "GET", "/api/account", nil, basicAuth("", f.key)).want(t, 401)
	})
	t.Run("basic with access token", func(t *testing.T) {
		e.do(t, "GET", "/api/account", nil, basicAuth(f.owner.Email, token)).want(t, 401)
	})
	t.Run("expired token", func(t *testing.T) {
		e.clock.Advance(25 * time.Hour)
		defer e.clock.Advance(-25 * time.Hour)
		e.do(t, "GET", "/api/account", nil, bearer(token)).want(t, 401)
	})
	t.Run("revoked grant", func(t *testing.T) {
		tok2, g2 := mustOAuthToken(t, e.store, f.account, f.owner)
		e.do(t, "GET", "/api/account", nil, bearer(tok2)).want(t, 200)
		if err := e.store.RevokeGrant(context.Background(), f.account.ID, g2.ID); err != nil {
			t.Fatal(err)
		}
		r := e.do(t, "GET", "/api/account", nil, bearer(tok2)).want(t, 401)
		if !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate = %q", r.Header.Get("WWW-Authenticate"))
		}
		e.do(t, "GET", "/api/account", nil, bearer(token)).want(t, 200) // other grants live on
	})
	t.Run("deleted key", func(t *testing.T) {
		key := mustAPIKey(t, e.store, f.account, f.agent)
		e.do(t, "GET", "/api/account", nil, bearer(key)).want(t, 200)
		keys, err := e.store.ListAPIKeys(context.Background(), f.account.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k.UserID == f.agent.ID {
				if err := e.store.DeleteAPIKey(context.Background(), f.account.ID, k.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		e.do(t, "GET", "/api/account", nil, bearer(key)).want(t, 401)
	})
}

func TestAPILastUsedBatched(t *testing.T) {
	t.Parallel()
	onStores(t, testAPILastUsedBatched)
}

func testAPILastUsedBatched(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	ctx := context.Background()
	lastUsed := func() *time.Time {
		keys, err := e.store.ListAPIKeys(ctx, f.account.ID)
		if err != nil || len(keys) != 1 {
			t.Fatalf("ListAPIKeys: %v %v", keys, err)
		}
		return keys[0].LastUsedDatetime
	}
	e.do(t, "GET", "/api/account", nil, bearer(f.key)).want(t, 200)
	if lu := lastUsed(); lu != nil {
		t.Fatalf("authenticating wrote last-used %v; it must only batch", lu)
	}
	e.clock.Advance(time.Minute)
	e.do(t, "GET", "/api/account", nil, bearer(f.key)).want(t, 200)
	if err := e.srv.flushLastUsed(ctx); err != nil {
		t.Fatal(err)
	}
	lu := lastUsed()
	if lu == nil || !lu.Equal(e.clock.Now()) {
		t.Fatalf("last used %v, want %v", lu, e.clock.Now())
	}
	// Close flushes what is left.
	e.clock.Advance(time.Minute)
	e.do(t, "GET", "/api/account", nil, bearer(f.key)).want(t, 200)
	if err := e.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if lu := lastUsed(); lu == nil || !lu.Equal(e.clock.Now()) {
		t.Fatalf("after Close, last used %v, want %v", lu, e.clock.Now())
	}
}

// An installed app's "last used" (the connected apps page) is batched the
// same way.
func TestAPIGrantLastUsedBatched(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	f := newFixture(t, e.store, "acme")
	ctx := context.Background()
	token, grant := mustOAuthToken(t, e.store, f.account, f.owner)
	lastUsed := func() *time.Time {
		grants, err := e.store.(valet.OAuthService).ListGrants(ctx, f.account.ID)
		if err != nil || len(grants) != 1 || grants[0].ID != grant.ID {
			t.Fatalf("ListGrants: %v %v", grants, err)
		}
		return grants[0].LastUsedDatetime
	}
	e.clock.Advance(time.Minute)
	e.do(t, "GET", "/api/account", nil, bearer(token)).want(t, 200)
	if lu := lastUsed(); lu != nil {
		t.Fatalf("authenticating wrote last-used %v; it must only batch", lu)
	}
	if err := e.srv.flushLastUsed(ctx); err != nil {
		t.Fatal(err)
	}
	if lu := lastUsed(); lu == nil || !lu.Equal(e.clock.Now()) {
		t.Fatalf("last used %v, want %v", lu, e.clock.Now())
	}
}

// scopeCase is one route of the scope table: the request that succeeds
// with the route's scope, and its status.
type scopeCase struct {
	route  string // "METHOD /path" as registered
	scope  valet.Scope
	path   string
	body   any
	status int
}

func TestAPIScopes(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIScopes)
}

func testAPIScopes(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	doomedCustomer := mustCustomer(t, e.store, f.account, "doomed@customers.example")
	doomedTicket := mustTicket(t, e.store, f.account, f.customer, "delete me")
	hook := mustIntegration(t, e.store, f.account, "Orders", "https://hooks.example.com/valet")
	doomedHook := mustIntegration(t, e.store, f.account, "Doomed", "https://hooks.example.com/doomed")
	hid := strconv.FormatInt(hook.ID, 10)
	tid := strconv.FormatInt(f.ticket.ID, 10)
	cid := strconv.FormatInt(f.customer.ID, 10)
	cases := []scopeCase{
		{"GET /api/account", valet.ScopeAccountRead, "/api/account", nil, 200},
		{"GET /api/users", valet.ScopeUsersRead, "/api/users", nil, 200},
		{"GET /api/users/{id}", valet.ScopeUsersRead, "/api/users/" + strconv.FormatInt(f.agent.ID, 10), nil, 200},
		{"GET /api/customers", valet.ScopeCustomersRead, "/api/customers", nil, 200},
		{"POST /api/customers", valet.ScopeCustomersWrite, "/api/customers", map[string]any{"email": "new@customers.example"}, 201},
		{"GET /api/customers/{id}", valet.ScopeCustomersRead, "/api/customers/" + cid, nil, 200},
		{"PUT /api/customers/{id}", valet.ScopeCustomersWrite, "/api/customers/" + cid, map[string]any{"note": "VIP"}, 200},
		{"DELETE /api/customers/{id}", valet.ScopeCustomersWrite, "/api/customers/" + strconv.FormatInt(doomedCustomer.ID, 10), nil, 204},
		{"GET /api/tickets", valet.ScopeTicketsRead, "/api/tickets", nil, 200},
		{"POST /api/tickets", valet.ScopeTicketsWrite, "/api/tickets", map[string]any{"subject": "Hi", "customer": map[string]any{"id": f.customer.ID}}, 201},
		{"GET /api/tickets/{id}", valet.ScopeTicketsRead, "/api/tickets/" + tid, nil, 200},
		{"PUT /api/tickets/{id}", valet.ScopeTicketsWrite, "/api/tickets/" + tid, map[string]any{"priority": "high"}, 200},
		{"DELETE /api/tickets/{id}", valet.ScopeTicketsWrite, "/api/tickets/" + strconv.FormatInt(doomedTicket.ID, 10), nil, 204},
		{"GET /api/tickets/{id}/messages", valet.ScopeTicketsRead, "/api/tickets/" + tid + "/messages", nil, 200},
		{"POST /api/tickets/{id}/messages", valet.ScopeTicketsWrite, "/api/tickets/" + tid + "/messages", map[string]any{"body_text": "On its way."}, 201},
		{"GET /api/tickets/{id}/tags", valet.ScopeTicketsRead, "/api/tickets/" + tid + "/tags", nil, 200},
		{"POST /api/tickets/{id}/tags", valet.ScopeTicketsWrite, "/api/tickets/" + tid + "/tags", map[string]any{"names": []string{"vip"}}, 200},
		{"PUT /api/tickets/{id}/tags", valet.ScopeTicketsWrite, "/api/tickets/" + tid + "/tags", map[string]any{"names": []string{"vip", "refund"}}, 200},
		{"DELETE /api/tickets/{id}/tags", valet.ScopeTicketsWrite, "/api/tickets/" + tid + "/tags", map[string]any{"names": []string{"vip"}}, 204},
		{"GET /api/events", valet.ScopeEventsRead, "/api/events", nil, 200},
		{"GET /api/integrations", valet.ScopeIntegrationsRead, "/api/integrations", nil, 200},
		{"POST /api/integrations", valet.ScopeIntegrationsWrite, "/api/integrations", map[string]any{"http": map[string]any{"url": "https://hooks.example.com/new", "triggers": map[string]bool{"ticket-created": true}}}, 201},
		{"GET /api/integrations/{id}", valet.ScopeIntegrationsRead, "/api/integrations/" + hid, nil, 200},
		{"PUT /api/integrations/{id}", valet.ScopeIntegrationsWrite, "/api/integrations/" + hid, map[string]any{"name": "Orders v2"}, 200},
		{"DELETE /api/integrations/{id}", valet.ScopeIntegrationsWrite, "/api/integrations/" + strconv.FormatInt(doomedHook.ID, 10), nil, 204},
		{"GET /api/integrations/{id}/deliveries", valet.ScopeIntegrationsRead, "/api/integrations/" + hid + "/deliveries", nil, 200},
	}

	// Scopes a success needs beside the route's, for what the request reads
	// through it: a webhook's deliveries carry tickets.
	also := map[string]valet.Scope{"POST /api/integrations": valet.ScopeTicketsRead,
		"PUT /api/integrations/{id}": valet.ScopeTicketsRead}

	// The table covers every registered route, with the scope it declares.
	declared := map[string]valet.Scope{}
	for _, rt := range e.srv.apiRoutes() {
		declared[rt.method+" "+rt.path] = rt.scope
	}
	for _, c := range cases {
		if declared[c.route] != c.scope {
			t.Errorf("%s: table says %s, route declares %q", c.route, c.scope, declared[c.route])
		}
		delete(declared, c.route)
	}
	for route := range declared {
		t.Errorf("route %s is missing from the scope table", route)
	}

	// One key per API scope, holding only it; the row x column answer is
	// the success status for the route's scope and 403 for every other.
	keys := map[valet.Scope]string{}
	for _, sc := range valet.APIScopes() {
		keys[sc] = mustAPIKey(t, e.store, f.account, f.owner, sc)
	}
	tok, _ := mustOAuthToken(t, e.store, f.account, f.owner, valet.ScopeEventsRead)
	for _, c := range cases {
		method, _, _ := strings.Cut(c.route, " ")
		for _, sc := range valet.APIScopes() {
			if sc == c.scope {
				continue // the success runs last, after the refusals left the data alone
			}
			r := e.do(t, method, c.path, c.body, bearer(keys[sc]))
			if r.Status != 403 {
				t.Errorf("%s with %s: status %d, want 403; %s", c.route, sc, r.Status, r.Body)
				continue
			}
			want := `Bearer realm="valet", error="insufficient_scope", scope="` + string(c.scope) + `"`
			if got := r.Header.Get("WWW-Authenticate"); got != want {
				t.Errorf("%s with %s: WWW-Authenticate %q, want %q", c.route, sc, got, want)
			}
			if d := r.Err(t); d.Code != valet.ESCOPE || len(d.Data["scope"]) == 0 {
				t.Errorf("%s with %s: error %+v", c.route, sc, d)
			}
		}
		if c.scope != valet.ScopeEventsRead {
			e.do(t, method, c.path, c.body, bearer(tok)).want(t, 403) // OAuth tokens are checked alike
		}
		key := keys[c.scope]
		if more := also[c.route]; more != "" {
			if r := e.do(t, method, c.path, c.body, bearer(key)); r.Status != 403 || !strings.Contains(r.Header.Get("WWW-Authenticate"), string(more)) {
				t.Errorf("%s with %s alone: status %d, want 403 naming %s; %s", c.route, c.scope, r.Status, more, r.Body)
			}
			key = mustAPIKey(t, e.store, f.account, f.owner, c.scope, more)
		}
		r := e.do(t, method, c.path, c.body, bearer(key))
		if r.Status != c.status {
			t.Errorf("%s with %s: status %d, want %d; %s", c.route, c.scope, r.Status, c.status, r.Body)
		}
	}
	// write does not imply read
	e.do(t, "GET", "/api/tickets", nil, bearer(mustAPIKey(t, e.store, f.account, f.owner, valet.ScopeTicketsWrite))).want(t, 403)
}

func TestAPICrossAccount(t *testing.T) {
	t.Parallel()
	onStores(t, testAPICrossAccount)
}

func testAPICrossAccount(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	a := newFixture(t, e.store, "acme")
	b := newFixture(t, e.store, "globex")
	for range 4 {
		mustTicket(t, e.store, a.account, a.customer, "A's ticket")
	}
	bTok, _ := mustOAuthToken(t, e.store, b.account, b.owner)
	tid := "/api/tickets/" + strconv.FormatInt(a.ticket.ID, 10)
	cid := "/api/customers/" + strconv.FormatInt(a.customer.ID, 10)

	for _, cred := range []string{b.key, bTok} {
		for _, c := range []struct{ method, path string }{
			{"GET", tid}, {"PUT", tid}, {"DELETE", tid},
			{"GET", tid + "/messages"}, {"POST", tid + "/messages"},
			{"GET", tid + "/tags"}, {"POST", tid + "/tags"}, {"PUT", tid + "/tags"}, {"DELETE", tid + "/tags"},
			{"GET", cid}, {"PUT", cid}, {"DELETE", cid},
			{"GET", "/api/users/" + strconv.FormatInt(a.owner.ID, 10)},
		} {
			var body any
			switch {
			case strings.HasSuffix(c.path, "/tags") && c.method != "GET":
				body = map[string]any{"names": []string{"x"}}
			case strings.HasSuffix(c.path, "/messages") && c.method == "POST":
				body = map[string]any{"body_text": "x"}
			case c.method == "PUT":
				body = map[string]any{}
			}
			r := e.do(t, c.method, c.path, body, bearer(cred))
			if r.Status != 404 {
				t.Errorf("B %s %s: status %d, want 404; %s", c.method, c.path, r.Status, r.Body)
			}
		}
	}
	// A's rows are untouched.
	if _, err := e.store.FindTicket(context.Background(), a.account.ID, a.ticket.ID); err != nil {
		t.Fatalf("A's ticket: %v", err)
	}
	if _, err := e.store.FindCustomer(context.Background(), a.account.ID, a.customer.ID); err != nil {
		t.Fatalf("A's customer: %v", err)
	}

	// Lists hold only B's rows, also when paging with a cursor from A's list.
	var aPage list[valet.Ticket]
	e.do(t, "GET", "/api/tickets?limit=2", nil, bearer(a.key)).want(t, 200).JSON(t, &aPage)
	if aPage.Meta.NextCursor == nil {
		t.Fatal("A's first page has no next cursor")
	}
	for _, path := range []string{
		"/api/tickets", "/api/tickets?limit=100",
		"/api/tickets?cursor=" + url.QueryEscape(*aPage.Meta.NextCursor),
		"/api/tickets?customer_id=" + strconv.FormatInt(a.customer.ID, 10),
	} {
		var page list[valet.Ticket]
		e.do(t, "GET", path, nil, bearer(b.key)).want(t, 200).JSON(t, &page)
		for _, tk := range page.Data {
			if tk.ID != b.ticket.ID {
				t.Errorf("B's %s shows ticket %d (%s)", path, tk.ID, tk.Subject)
			}
		}
	}
	var customers list[valet.Customer]
	e.do(t, "GET", "/api/customers?email="+url.QueryEscape(a.customer.Email), nil, bearer(b.key)).want(t, 200).JSON(t, &customers)
	if len(customers.Data) != 0 {
		t.Errorf("B finds A's customer by email: %+v", customers.Data)
	}
	var users list[valet.User]
	e.do(t, "GET", "/api/users", nil, bearer(b.key)).want(t, 200).JSON(t, &users)
	for _, u := range users.Data {
		if u.ID == a.owner.ID || u.ID == a.agent.ID {
			t.Errorf("B lists A's user %s", u.Email)
		}
	}
	var events list[valet.Event]
	e.do(t, "GET", "/api/events?limit=100", nil, bearer(b.key)).want(t, 200).JSON(t, &events)
	for _, ev := range events.Data {
		if ev.ObjectID == a.ticket.ID && strings.HasPrefix(ev.Type, "ticket") {
			t.Errorf("B sees A's event %+v", ev)
		}
	}
	var account valet.Account
	e.do(t, "GET", "/api/account", nil, bearer(b.key)).want(t, 200).JSON(t, &account)
	if account.ID != b.account.ID {
		t.Errorf("B's account is %d", account.ID)
	}
	// Naming A's customer or user in B's writes is a validation error, not a leak.
	e.do(t, "POST", "/api/tickets", map[string]any{"customer": map[string]any{"id": a.customer.ID}}, bearer(b.key)).want(t, 400)
	e.do(t, "POST", "/api/tickets", map[string]any{"customer": map[string]any{"id": b.customer.ID},
		"assignee_user": map[string]any{"id": a.agent.ID}}, bearer(b.key)).want(t, 400)
	e.do(t, "PUT", "/api/tickets/"+strconv.FormatInt(b.ticket.ID, 10), map[string]any{"customer": map[string]any{"id": a.customer.ID}}, bearer(b.key)).want(t, 400)
}

func TestAPIPagination(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIPagination)
}

func testAPIPagination(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	existing := map[int64]bool{f.ticket.ID: true}
	for i := range 23 {
		existing[mustTicket(t, e.store, f.account, f.customer, fmt.Sprintf("ticket %d", i)).ID] = true
	}
	for _, order := range []string{"created_datetime:asc", "created_datetime:desc", "updated_datetime:desc", "updated_datetime"} {
		t.Run(order, func(t *testing.T) {
			seen := map[int64]int{}
			path := "/api/tickets?limit=5&order_by=" + order
			for pages := 0; ; pages++ {
				if pages > 50 {
					t.Fatal("pagination does not end")
				}
				var page list[valet.Ticket]
				e.do(t, "GET", path, nil, bearer(f.key)).want(t, 200).JSON(t, &page)
				if page.Object != "list" || len(page.Data) > 5 {
					t.Fatalf("page %+v", page)
				}
				for _, tk := range page.Data {
					seen[tk.ID]++
				}
				// Rows inserted while walking must not shift the cursor.
				mustTicket(t, e.store, f.account, f.customer, "inserted while paging")
				if page.Meta.NextCursor == nil {
					break
				}
				path = "/api/tickets?limit=5&order_by=" + order + "&cursor=" + url.QueryEscape(*page.Meta.NextCursor)
			}
			for id := range existing {
				if seen[id] != 1 {
					t.Errorf("ticket %d seen %d times", id, seen[id])
				}
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("ticket %d seen %d times", id, n)
				}
			}
		})
	}

	t.Run("prev cursor", func(t *testing.T) {
		var first, second, back list[valet.Ticket]
		e.do(t, "GET", "/api/tickets?limit=4&order_by=created_datetime:asc", nil, bearer(f.key)).want(t, 200).JSON(t, &first)
		if first.Meta.PrevCursor != nil || first.Meta.NextCursor == nil {
			t.Fatalf("first page meta %+v", first.Meta)
		}
		e.do(t, "GET", "/api/tickets?limit=4&order_by=created_datetime:asc&cursor="+url.QueryEscape(*first.Meta.NextCursor), nil, bearer(f.key)).want(t, 200).JSON(t, &second)
		if second.Meta.PrevCursor == nil {
			t.Fatal("second page has no prev cursor")
		}
		e.do(t, "GET", "/api/tickets?limit=4&order_by=created_datetime:asc&cursor="+url.QueryEscape(*second.Meta.PrevCursor), nil, bearer(f.key)).want(t, 200).JSON(t, &back)
		ids := func(p list[valet.Ticket]) (out []int64) {
			for _, tk := range p.Data {
				out = append(out, tk.ID)
			}
			return out
		}
		if !slices.Equal(ids(first), ids(back)) {
			t.Errorf("back from page 2: %v, want %v", ids(back), ids(first))
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, q := range []string{"limit=0", "limit=101", "limit=x", "limit=-1", "cursor=garbage", "order_by=subject",
			"order_by=created_datetime:sideways", "status=pending", "customer_id=x", "customer_id=-3",
			"assignee_user_id=0", "updated_since=yesterday"} {
			r := e.do(t, "GET", "/api/tickets?"+q, nil, bearer(f.key)).want(t, 400)
			field, _, _ := strings.Cut(q, "=")
			if d := r.Err(t); d.Code != valet.EINVALID || len(d.Data[field]) == 0 {
				t.Errorf("%s: error %+v, want data.%s", q, d, field)
			}
		}
		// A cursor made for one order is refused for another.
		var page list[valet.Ticket]
		e.do(t, "GET", "/api/tickets?limit=2&order_by=created_datetime:asc", nil, bearer(f.key)).want(t, 200).JSON(t, &page)
		e.do(t, "GET", "/api/tickets?order_by=created_datetime:desc&cursor="+url.QueryEscape(*page.Meta.NextCursor), nil, bearer(f.key)).want(t, 400)
		e.do(t, "GET", "/api/tickets?limit=100", nil, bearer(f.key)).want(t, 200)
	})
}

func TestAPIBodyLimits(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	f := newFixture(t, e.store, "acme")
	big := `{"subject": "big", "customer": {"id": 1}, "messages": [{"body_text": "` + strings.Repeat("a", maxBodyBytes) + `"}]}`
	r := e.do(t, "POST", "/api/tickets", big, bearer(f.key)).want(t, 413)
	if r.Err(t).Code != valet.ETOOLARGE {
		t.Errorf("code %q", r.Err(t).Code)
	}
	// Without a Content-Length (chunked), the limit holds while reading.
	r = e.do(t, "POST", "/api/tickets", nil, bearer(f.key), func(req *http.Request) {
		req.Body = struct {
			*strings.Reader
			noClose
		}{strings.NewReader(big), noClose{}}
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/json")
	}).want(t, 413)
	// A customer PUT too.
	e.do(t, "PUT", "/api/customers/"+strconv.FormatInt(f.customer.ID, 10), `{"note": "`+strings.Repeat("n", maxBodyBytes)+`"}`, bearer(f.key)).want(t, 413)
}

type noClose struct{}

func (noClose) Close() error { return nil }

func TestAPIRateLimit(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, func(c *Config) {
		c.APIKeyLimit = RateLimit{Requests: 3, Per: 3 * time.Second}
		c.OAuthLimit = RateLimit{Requests: 5, Per: 5 * time.Second}
	})
	f := newFixture(t, e.store, "acme")
	other := newFixture(t, e.store, "globex")
	key2 := mustAPIKey(t, e.store, f.account, f.agent, valet.ScopeAccountRead)
	tok, _ := mustOAuthToken(t, e.store, f.account, f.owner)

	for i := 1; i <= 3; i++ {
		r := e.do(t, "GET", "/api/account", nil, bearer(f.key)).want(t, 200)
		if got, want := r.Header.Get("X-Valet-Account-Api-Call-Limit"), fmt.Sprintf("%d/3", i); got != want {
			t.Errorf("call %d: limit header %q, want %q", i, got, want)
		}
	}
	// The bucket is the account's for API keys: another key of it is refused too.
	for _, key := range []string{f.key, key2} {
		r := e.do(t, "GET", "/api/account", nil, bearer(key)).want(t, 429)
		if r.Header.Get("Retry-After") != "1" || r.Header.Get("X-Valet-Account-Api-Call-Limit") != "3/3" {
			t.Errorf("429 headers: Retry-After %q, limit %q", r.Header.Get("Retry-After"), r.Header.Get("X-Valet-Account-Api-Call-Limit"))
		}
		if r.Err(t).Code != valet.ERATELIMIT {
			t.Errorf("code %q", r.Err(t).Code)
		}
	}
	// Refused calls, even to routes without scope, do not reach the handler.
	e.do(t, "POST", "/api/tickets", `{`, bearer(key2)).want(t, 429)
	// OAuth apps and other accounts have buckets of their own.
	r := e.do(t, "GET", "/api/account", nil, bearer(tok)).want(t, 200)
	if got := r.Header.Get("X-Valet-Account-Api-Call-Limit"); got != "1/5" {
		t.Errorf("oauth limit header %q", got)
	}
	e.do(t, "GET", "/api/account", nil, bearer(other.key)).want(t, 200)
	// The bucket leaks one request per second.
	e.clock.Advance(time.Second)
	r = e.do(t, "GET", "/api/account", nil, bearer(f.key)).want(t, 200)
	if got := r.Header.Get("X-Valet-Account-Api-Call-Limit"); got != "3/3" {
		t.Errorf("after 1 s: %q", got)
	}
	e.do(t, "GET", "/api/account", nil, bearer(f.key)).want(t, 429)
	e.clock.Advance(3 * time.Second)
	r = e.do(t, "GET", "/api/account", nil, bearer(f.key)).want(t, 200)
	if got := r.Header.Get("X-Valet-Account-Api-Call-Limit"); got != "1/3" {
		t.Errorf("after draining: %q", got)
	}
	// Error answers carry the header too.
	r = e.do(t, "GET", "/api/tickets/999999", nil, bearer(f.key)).want(t, 404)
	if got := r.Header.Get("X-Valet-Account-Api-Call-Limit"); got != "2/3" {
		t.Errorf("on a 404: %q", got)
	}
}

func TestAPIPrecondition(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIPrecondition)
}

func testAPIPrecondition(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	for _, kind := range []struct {
		path string
		body map[string]any
	}{
		{"/api/tickets/" + strconv.FormatInt(f.ticket.ID, 10), map[string]any{"subject": "Changed"}},
		{"/api/customers/" + strconv.FormatInt(f.customer.ID, 10), map[string]any{"note": "Changed"}},
	} {
		t.Run(kind.path, func(t *testing.T) {
			r := e.do(t, "GET", kind.path, nil, bearer(f.key)).want(t, 200)
			tag := r.Header.Get("ETag")
			var obj struct {
				UpdatedDatetime time.Time `json:"updated_datetime"`
			}
			r.JSON(t, &obj)
			if tag != etag(obj.UpdatedDatetime) {
				t.Fatalf("ETag %q, updated %v", tag, obj.UpdatedDatetime)
			}
			e.do(t, "GET", kind.path, nil, bearer(f.key), header("If-None-Match", tag)).want(t, 304)

			r = e.do(t, "PUT", kind.path, kind.body, bearer(f.key), header("If-Match", tag)).want(t, 200)
			newTag := r.Header.Get("ETag")
			if newTag == tag || newTag == "" {
				t.Fatalf("ETag after PUT %q (was %q)", newTag, tag)
			}
			r = e.do(t, "PUT", kind.path, kind.body, bearer(f.key), header("If-Match", tag)).want(t, 412)
			if r.Err(t).Code != valet.EPRECONDITION {
				t.Errorf("code %q", r.Err(t).Code)
			}
			stale := map[string]any{"updated_datetime": obj.UpdatedDatetime}
			for k, v := range kind.body {
				stale[k] = v
			}
			e.do(t, "PUT", kind.path, stale, bearer(f.key)).want(t, 412)
			var cur struct {
				UpdatedDatetime time.Time `json:"updated_datetime"`
			}
			e.do(t, "GET", kind.path, nil, bearer(f.key)).want(t, 200).JSON(t, &cur)
			stale["updated_datetime"] = cur.UpdatedDatetime
			e.do(t, "PUT", kind.path, stale, bearer(f.key), header("If-Match", newTag)).want(t, 200)
		})
	}
}

// TestAPITicketCustomerByEmail: a ticket whose customer is given by email
// may create that customer, which takes customers:write; by id it takes
// tickets:write alone.
func TestAPITicketCustomerByEmail(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	f := newFixture(t, e.store, "acme")
	ticketsOnly, _ := mustOAuthToken(t, e.store, f.account, f.owner, valet.ScopeTicketsWrite)
	ticket := func(customer map[string]any) map[string]any {
		return map[string]any{"subject": "Where is my order?", "customer": customer,
			"messages": []any{map[string]any{"body_text": "Hello"}}}
	}
	r := e.do(t, "POST", "/api/tickets", ticket(map[string]any{"email": "newbie@customers.example", "name": "New Bie"}),
		bearer(ticketsOnly)).want(t, 403)
	if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, `scope="customers:write"`) {
		t.Errorf("WWW-Authenticate %q", got)
	}
	if page, err := e.store.ListCustomers(context.Background(), f.account.ID, valet.CustomerFilter{Email: "newbie@customers.example"}); err != nil || len(page.Data) != 0 {
		t.Fatalf("the refused ticket created its customer: %v %v", page, err)
	}
	e.do(t, "POST", "/api/tickets", ticket(map[string]any{"id": f.customer.ID}), bearer(ticketsOnly)).want(t, 201)
	both, _ := mustOAuthToken(t, e.store, f.account, f.owner, valet.ScopeTicketsWrite, valet.ScopeCustomersWrite)
	e.do(t, "POST", "/api/tickets", ticket(map[string]any{"email": "newbie@customers.example"}), bearer(both)).want(t, 201)
}
