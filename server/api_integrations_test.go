package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// integrationOut is an integration as a client reads it.
type integrationOut struct {
	valet.Integration
	URI    string `json:"uri"`
	Secret string `json:"secret"`
}

// mustIntegration stores a webhook of account to url for ticket-created.
func mustIntegration(t testing.TB, store valet.Store, account *valet.Account, name, url string) *valet.Integration {
	t.Helper()
	in := &valet.Integration{AccountID: account.ID, Type: valet.IntegrationTypeHTTP, Name: name,
		HTTP: valet.IntegrationHTTP{URL: url, Method: "POST", Triggers: map[string]bool{valet.EventTicketCreated: true}}}
	if _, err := store.CreateIntegration(context.Background(), in); err != nil {
		t.Fatalf("CreateIntegration: %v", err)
	}
	return in
}

func TestAPIIntegrations(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIIntegrations)
}

func testAPIIntegrations(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	other := newFixture(t, e.store, "globex")
	auth := bearer(f.key)

	var created integrationOut
	r := e.do(t, "POST", "/api/integrations", map[string]any{
		"type": "http", "name": "Order system",
		"http": map[string]any{"url": "https://hooks.example.com/valet", "method": "POST",
			"triggers": map[string]any{"ticket-created": true, "ticket-message-created": true}},
	}, auth).want(t, 201)
	r.JSON(t, &created)
	id := strconv.FormatInt(created.ID, 10)
	path := "/api/integrations/" + id
	if created.URI != path+"/" || r.Header.Get("Location") != created.URI {
		t.Errorf("uri %q, Location %q", created.URI, r.Header.Get("Location"))
	}
	if !strings.HasPrefix(created.Secret, valet.PrefixWebhookSecret) || !strings.HasSuffix(created.Secret, strings.TrimPrefix(created.SecretHint, "…")) ||
		created.SecretHint == "" {
		t.Errorf("secret %q, hint %q", created.Secret, created.SecretHint)
	}
	if created.Type != "http" || created.Name != "Order system" || created.Status != valet.IntegrationActive ||
		created.HTTP.Method != "POST" || created.HTTP.URL != "https://hooks.example.com/valet" ||
		!created.HTTP.Triggers["ticket-created"] || created.HTTP.Triggers["ticket-updated"] || !created.HTTP.Triggers["ticket-message-created"] ||
		created.AppID != nil || created.CreatedByUserID == nil || *created.CreatedByUserID != f.owner.ID || created.DisabledDatetime != nil {
		t.Errorf("created %+v", created)
	}
	var raw map[string]json.RawMessage
	r.JSON(t, &raw)
	if string(raw["http"]) == "" || len(raw["triggers"]) != 0 {
		t.Errorf("not Gorgias's shape: %s", r.Body)
	}

	t.Run("created by an app", func(t *testing.T) {
		tok, grant := mustOAuthToken(t, e.store, f.account, f.owner, valet.ScopeIntegrationsWrite, valet.ScopeIntegrationsRead,
			valet.ScopeTicketsRead)
		var in integrationOut
		e.do(t, "POST", "/api/integrations/", map[string]any{
			"http": map[string]any{"url": "http://127.0.0.1:9999/hook", "triggers": map[string]any{"ticket-updated": true}},
		}, bearer(tok)).want(t, 201).JSON(t, &in)
		// A delivery carries the ticket: without tickets:read an app can
		// neither have ticket events delivered nor change a webhook that
		// delivers them.
		blind, _ := mustOAuthToken(t, e.store, f.account, f.owner, valet.ScopeIntegrationsWrite, valet.ScopeIntegrationsRead)
		hook := map[string]any{"url": "https://hooks.example.com/blind", "triggers": map[string]any{"ticket-created": true}}
		r := e.do(t, "POST", "/api/integrations", map[string]any{"http": hook}, bearer(blind)).want(t, 403)
		if d := r.Err(t); d.Code != valet.ESCOPE || len(d.Data["scope"]) == 0 ||
			!strings.Contains(r.Header.Get("WWW-Authenticate"), `scope="tickets:read"`) {
			t.Errorf("webhook without tickets:read: %+v %v", d, r.Header)
		}
		e.do(t, "PUT", "/api/integrations/"+strconv.FormatInt(in.ID, 10), map[string]any{"http": map[string]any{"url": "https://hooks.example.com/blind"}},
			bearer(blind)).want(t, 403)
		// An app changes and deletes only the webhooks it set up: another
		// app's, or the account's own, would keep delivering to it after
		// its access ends.
		other, _ := mustOAuthToken(t, e.store, f.account, f.owner, valet.ScopeIntegrationsWrite, valet.ScopeTicketsRead)
		mine := "/api/integrations/" + strconv.FormatInt(in.ID, 10)
		for _, c := range []struct{ method, path, token, by string }{
			{"PUT", mine, other, "by another app"}, {"DELETE", mine, other, "by another app"},
			{"PUT", path, tok, "settings or with an API key"}, {"DELETE", path, tok, "settings or with an API key"},
		} {
			r := e.do(t, c.method, c.path, map[string]any{"http": map[string]any{"url": "https://hooks.example.com/taken"}},
				bearer(c.token)).want(t, 403)
			// The credential has every scope this needs: the refusal is
			// not a scope's, and does not ask for one (RFC 6750 §3.1).
			if d := r.Err(t); d.Code != valet.EFORBIDDEN || !strings.Contains(d.Msg, c.by) || r.Header.Get("WWW-Authenticate") != "" {
				t.Errorf("%s %s: %+v %v", c.method, c.path, d, r.Header)
			}
		}
		e.do(t, "PUT", mine, map[string]any{"name": "Mine"}, bearer(tok)).want(t, 200)
		// An app an agent installed reads webhooks but does not manage
		// them, as the agent cannot on the settings pages.
		agentTok, _ := mustOAuthToken(t, e.store, f.account, f.agent, valet.ScopeIntegrationsWrite, valet.ScopeIntegrationsRead)
		path := "/api/integrations/" + strconv.FormatInt(in.ID, 10)
		e.do(t, "GET", path, nil, bearer(agentTok)).want(t, 200)
		// A webhook that does not exist is 404 for them too, as for reading.
		e.do(t, "PUT", "/api/integrations/999999", map[string]any{"name": "x"}, bearer(agentTok)).want(t, 404)
		e.do(t, "DELETE", "/api/integrations/999999", nil, bearer(agentTok)).want(t, 404)
		for _, req := range []struct{ method, path string }{{"POST", "/api/integrations"}, {"PUT", path}, {"DELETE", path}} {
			r := e.do(t, req.method, req.path, map[string]any{"name": "x",
				"http": map[string]any{"url": "https://attacker.example/x", "triggers": map[string]any{"ticket-updated": true}},
			}, bearer(agentTok)).want(t, 403)
			if d := r.Err(t); d.Code != valet.EFORBIDDEN || !strings.Contains(d.Msg, "agent role") || r.Header.Get("WWW-Authenticate") != "" {
				t.Errorf("agent's app, %s %s: %+v %v", req.method, req.path, d, r.Header)
			}
		}
		if in.AppID == nil || *in.AppID != grant.AppID || in.CreatedByUserID == nil || *in.CreatedByUserID != f.owner.ID ||
			in.Name == "" || in.Type != "http" {
			t.Errorf("by app %+v", in)
		}
		e.do(t, "DELETE", "/api/integrations/"+strconv.FormatInt(in.ID, 10), nil, bearer(tok)).want(t, 204)
	})
	t.Run("create errors", func(t *testing.T) {
		for _, c := range []struct {
			body  any
			field string
		}{
			{map[string]any{}, "http.url"},
			{map[string]any{"http": map[string]any{"url": "https://x.example"}}, "http.triggers"},
			{map[string]any{"http": map[string]any{"url": "http://x.example/hook", "triggers": map[string]bool{"ticket-created": true}}}, "http.url"},
			{map[string]any{"http": map[string]any{"url": "not a url", "triggers": map[string]bool{"ticket-created": true}}}, "http.url"},
			{map[string]any{"http": map[string]any{"url": "https://x.example", "triggers": map[string]bool{"ticket-created": false}}}, "http.triggers"},
			{map[string]any{"http": map[string]any{"url": "https://x.example", "triggers": map[string]bool{"customer-created": true}}}, "http.triggers"},
			{map[string]any{"http": map[string]any{"url": "https://x.example", "method": "GET", "triggers": map[string]bool{"ticket-created": true}}}, "http.method"},
			{map[string]any{"type": "email", "http": map[string]any{"url": "https://x.example", "triggers": map[string]bool{"ticket-created": true}}}, "type"},
			{map[string]any{"name": strings.Repeat("x", 101), "http": map[string]any{"url": "https://x.example", "triggers": map[string]bool{"ticket-created": true}}}, "name"},
			{map[string]any{"status": "active"}, "status"},
			{map[string]any{"url": "https://x.example"}, "url"},
			{map[string]any{"http": map[string]any{"url": "https://x.example", "triggers": []string{"ticket-created"}}}, "http.triggers"},
			{`{"http": {"url": "https://x.example", "headers": {}}}`, "headers"},
		} {
			d := e.do(t, "POST", "/api/integrations", c.body, auth).want(t, 400).Err(t)
			if d.Code != valet.EINVALID || len(d.Data[c.field]) == 0 {
				t.Errorf("%v: %+v, want data.%s", c.body, d, c.field)
			}
		}
	})
	t.Run("get and list", func(t *testing.T) {
		var got integrationOut
		r := e.do(t, "GET", path, nil, auth).want(t, 200)
		r.JSON(t, &got)
		if got.ID != created.ID || got.URI != created.URI || got.SecretHint != created.SecretHint || got.Secret != "" ||
			strings.Contains(string(r.Body), created.Secret) || strings.Contains(string(r.Body), `"secret"`) {
			t.Errorf("get %s", r.Body)
		}
		second := mustIntegration(t, e.store, f.account, "Second", "https://second.example/hook")
		var l list[integrationOut]
		r = e.do(t, "GET", "/api/integrations", nil, auth).want(t, 200)
		r.JSON(t, &l)
		if l.Object != "list" || l.URI != "/api/integrations" || len(l.Data) != 2 || l.Data[0].ID != second.ID || l.Data[1].ID != created.ID ||
			l.Meta.NextCursor != nil || l.Meta.PrevCursor != nil || strings.Contains(string(r.Body), `"secret"`) {
			t.Errorf("list %s", r.Body)
		}
		e.do(t, "GET", "/api/integrations/999999", nil, auth).want(t, 404)
		e.do(t, "GET", "/api/integrations/abc", nil, auth).want(t, 404)
		e.do(t, "GET", "/api/integrations?x=%zz", nil, auth).want(t, 400)
		// A page at a time, like every list.
		var page, rest list[integrationOut]
		e.do(t, "GET", "/api/integrations?limit=1", nil, auth).want(t, 200).JSON(t, &page)
		if len(page.Data) != 1 || page.Data[0].ID != second.ID || page.Meta.NextCursor == nil {
			t.Fatalf("limit=1: %+v", page)
		}
		e.do(t, "GET", "/api/integrations?limit=1&cursor="+url.QueryEscape(*page.Meta.NextCursor), nil, auth).want(t, 200).JSON(t, &rest)
		if len(rest.Data) != 1 || rest.Data[0].ID != created.ID || rest.Meta.NextCursor != nil {
			t.Errorf("second page: %+v", rest)
		}
		for _, q := range []string{"limit=abc", "limit=0", "limit=101", "order_by=name", "cursor=nope",
			"limit=1&limit=2", "order_by=id&order_by=id:asc"} {
			field, _, _ := strings.Cut(q, "=")
			if d := e.do(t, "GET", "/api/integrations?"+q, nil, auth).want(t, 400).Err(t); len(d.Data[field]) == 0 {
				t.Errorf("%s: %+v", q, d)
			}
		}
		// Another account sees none of them.
		var theirs list[integrationOut]
		e.do(t, "GET", "/api/integrations", nil, bearer(other.key)).want(t, 200).JSON(t, &theirs)
		if len(theirs.Data) != 0 {
			t.Errorf("globex lists %+v", theirs.Data)
		}
	})
	t.Run("update", func(t *testing.T) {
		var got integrationOut
		e.do(t, "PUT", path, map[string]any{"name": "Orders", "http": map[string]any{"url": "https://hooks.example.com/v2",
			"triggers": map[string]any{"ticket-updated": true}}}, auth).want(t, 200).JSON(t, &got)
		if got.Name != "Orders" || got.HTTP.URL != "https://hooks.example.com/v2" || got.HTTP.Triggers["ticket-created"] ||
			!got.HTTP.Triggers["ticket-updated"] || got.Status != valet.IntegrationActive || got.UpdatedDatetime.Before(created.UpdatedDatetime) {
			t.Errorf("updated %+v", got)
		}
		e.do(t, "PUT", path+"/", map[string]any{"status": "disabled"}, auth).want(t, 200).JSON(t, &got)
		if got.Status != valet.IntegrationDisabled || got.DisabledDatetime == nil || got.Name != "Orders" {
			t.Errorf("disabled %+v", got)
		}
		e.do(t, "PUT", path, map[string]any{"status": "active"}, auth).want(t, 200).JSON(t, &got)
		if got.Status != valet.IntegrationActive || got.DisabledDatetime != nil || got.ConsecutiveFailures != 0 {
			t.Errorf("re-enabled %+v", got)
		}
		for _, c := range []struct {
			body  any
			field string
		}{
			{map[string]any{"status": "paused"}, "status"},
			{map[string]any{"http": map[string]any{"url": "ftp://x.example"}}, "http.url"},
			{map[string]any{"http": map[string]any{"triggers": map[string]bool{}}}, "http.triggers"},
			{map[string]any{"id": 5}, "id"},
			{map[string]any{"secret": "vws_mine"}, "secret"},
			{map[string]any{"consecutive_failures": 0}, "consecutive_failures"},
		} {
			d := e.do(t, "PUT", path, c.body, auth).want(t, 400).Err(t)
			if len(d.Data[c.field]) == 0 {
				t.Errorf("%v: %+v, want data.%s", c.body, d, c.field)
			}
		}
		e.do(t, "PUT", "/api/integrations/999999", map[string]any{"name": "x"}, auth).want(t, 404)
	})
	t.Run("deliveries", func(t *testing.T) {
		var l list[valet.Delivery]
		e.do(t, "GET", path+"/deliveries", nil, auth).want(t, 200).JSON(t, &l)
		if l.Object != "list" || len(l.Data) != 0 || l.Data == nil {
			t.Errorf("deliveries %+v", l)
		}
		// The log has one page: a cursor or another order is refused, not
		// answered with the same page.
		for _, q := range []string{"limit=0", "limit=101", "limit=x", "limit=1&limit=2", "cursor=YzF8aWQ6YXNjfGF8Mnwy",
			"order_by=id:asc", "order_by=created_datetime"} {
			field, _, _ := strings.Cut(q, "=")
			if d := e.do(t, "GET", path+"/deliveries?"+q, nil, auth).want(t, 400).Err(t); len(d.Data[field]) == 0 {
				t.Errorf("%s: %+v", q, d)
			}
		}
		e.do(t, "GET", path+"/deliveries?limit=100", nil, auth).want(t, 200)
		e.do(t, "GET", path+"/deliveries?order_by=id:desc", nil, auth).want(t, 200)
		e.do(t, "GET", "/api/integrations/999999/deliveries", nil, auth).want(t, 404)
	})
	t.Run("another account's is 404", func(t *testing.T) {
		tok, _ := mustOAuthToken(t, e.store, other.account, other.owner)
		for _, cred := range []string{other.key, tok} {
			for _, c := range []struct {
				method, path string
				body         any
			}{
				{"GET", path, nil}, {"PUT", path, map[string]any{"name": "mine now"}}, {"DELETE", path, nil},
				{"GET", path + "/deliveries", nil},
			} {
				if r := e.do(t, c.method, c.path, c.body, bearer(cred)); r.Status != 404 {
					t.Errorf("globex %s %s: %d %s", c.method, c.path, r.Status, r.Body)
				}
			}
		}
		if in, err := e.store.FindIntegration(context.Background(), f.account.ID, created.ID); err != nil || in.Name != "Orders" {
			t.Errorf("acme's integration after globex tried: %+v %v", in, err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		e.do(t, "DELETE", path, nil, auth).want(t, 204)
		e.do(t, "GET", path, nil, auth).want(t, 404)
		e.do(t, "DELETE", path, nil, auth).want(t, 404)
		e.do(t, "GET", path+"/deliveries", nil, auth).want(t, 404)
	})
}

// TestAPIIntegrationsGolden pins the JSON of integrations and deliveries in
// testdata/api/integration*.json, as TestAPIGolden does for the rest.
func TestAPIIntegrationsGolden(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIIntegrationsGolden)
}

func testAPIIntegrationsGolden(t *testing.T, open storeOpener) {
	ctx := context.Background()
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	auth := bearer(f.key)
	var in integrationOut
	e.do(t, "POST", "/api/integrations", map[string]any{"name": "Order system",
		"http": map[string]any{"url": "https://hooks.example.com/valet", "triggers": map[string]any{"ticket-created": true}}},
		auth).want(t, 201).JSON(t, &in)
	// One delivery that failed once and one delivered, written through the
	// store as the dispatcher would.
	mustTicket(t, e.store, f.account, f.customer, "First")
	mustTicket(t, e.store, f.account, f.customer, "Second")
	if _, err := e.store.EnqueueDeliveries(ctx, 100); err != nil {
		t.Fatal(err)
	}
	jobs, err := e.store.ClaimDeliveries(ctx, 10, time.Minute)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("claimed %d: %v", len(jobs), err)
	}
	if err := e.store.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: jobs[0].ID, OK: true, StatusCode: 204}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: jobs[1].ID, StatusCode: 503,
		Error: "503 Service Unavailable", NextAttempt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	iid := strconv.FormatInt(in.ID, 10)
	for _, c := range []struct {
		name   string
		method string
		path   string
		body   any
		status int
	}{
		{"integration_created", "POST", "/api/integrations", map[string]any{"name": "Agent",
			"http": map[string]any{"url": "http://127.0.0.1:8090/webhooks/valet", "triggers": map[string]any{"ticket-updated": true, "ticket-message-created": true}}}, 201},
		{"integration", "GET", "/api/integrations/" + iid, nil, 200},
		{"integrations_list", "GET", "/api/integrations", nil, 200},
		{"integration_deliveries", "GET", "/api/integrations/" + iid + "/deliveries", nil, 200},
		{"integration_error_invalid", "POST", "/api/integrations", map[string]any{"http": map[string]any{"url": "http://example.com/hook"}}, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, c.method, c.path, c.body, auth).want(t, c.status)
			var v any
			r.JSON(t, &v)
			checkGolden(t, c.name, normalizeJSON(normalizeSecrets(v)))
		})
	}
}

// normalizeSecrets replaces the random parts of webhook secrets.
func normalizeSecrets(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			switch k {
			case "secret":
				x[k] = valet.PrefixWebhookSecret + "<secret>"
			case "secret_hint":
				x[k] = "<hint>"
			default:
				x[k] = normalizeSecrets(val)
			}
		}
	case []any:
		for i := range x {
			x[i] = normalizeSecrets(x[i])
		}
	}
	return v
}

// checkGolden compares v, as indented JSON, with testdata/api/name.json
// (rewritten with -update).
func checkGolden(t *testing.T, name string, v any) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", "api", name+".json")
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (run with -update if intended):\n%s", name, path, got)
	}
}
