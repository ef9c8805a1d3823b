package server

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// ticketOut is a ticket as a client reads it, with the uri.
type ticketOut struct {
	valet.Ticket
	URI string `json:"uri"`
}

func TestAPITickets(t *testing.T) {
	t.Parallel()
	onStores(t, testAPITickets)
}

func testAPITickets(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	auth := bearer(f.key)
	var created ticketOut

	t.Run("create with a new customer, messages and tags", func(t *testing.T) {
		r := e.do(t, "POST", "/api/tickets", map[string]any{
			"subject":  "  Parcel arrived damaged ",
			"customer": map[string]any{"email": "Bob@Customers.example", "name": "Bob"},
			"channel":  "email",
			"messages": []map[string]any{
				{"body_text": "The box was crushed.", "channel": "email"},
				{"body_text": "Checking with the carrier.", "public": false},
			},
			"tags": []any{"damaged", map[string]any{"name": "carrier"}},
		}, auth).want(t, 201)
		r.JSON(t, &created)
		if loc := r.Header.Get("Location"); loc != created.URI || created.URI != "/api/tickets/"+strconv.FormatInt(created.ID, 10)+"/" {
			t.Errorf("Location %q, uri %q", loc, created.URI)
		}
		if created.Subject != "Parcel arrived damaged" || created.Status != valet.StatusOpen || created.Priority != "normal" ||
			created.Channel != "email" || created.MessagesCount != 2 || created.Customer.Email != "bob@customers.example" || created.Customer.ID == 0 {
			t.Errorf("created %+v", created)
		}
		var names []string
		for _, tag := range created.Tags {
			names = append(names, tag.Name)
		}
		if strings.Join(names, ",") != "carrier,damaged" && strings.Join(names, ",") != "damaged,carrier" {
			t.Errorf("tags %v", created.Tags)
		}
		if r.Header.Get("ETag") != etag(created.UpdatedDatetime) {
			t.Errorf("ETag %q", r.Header.Get("ETag"))
		}
	})
	t.Run("create for an existing customer, closed and assigned", func(t *testing.T) {
		var tk ticketOut
		e.do(t, "POST", "/api/tickets/", map[string]any{
			"subject": "Invoice", "customer": map[string]any{"id": f.customer.ID}, "status": "closed",
			"priority": "high", "assignee_user": map[string]any{"id": f.agent.ID},
		}, auth).want(t, 201).JSON(t, &tk)
		if tk.Status != valet.StatusClosed || tk.ClosedDatetime == nil || tk.AssigneeUser == nil || tk.AssigneeUser.ID != f.agent.ID ||
			tk.Customer.ID != f.customer.ID || tk.MessagesCount != 0 || tk.Tags == nil {
			t.Errorf("created %+v", tk)
		}
	})
	t.Run("create errors", func(t *testing.T) {
		for _, c := range []struct {
			body  any
			field string
		}{
			{map[string]any{"subject": "x"}, "customer"},
			{map[string]any{"customer": map[string]any{"id": f.customer.ID}, "status": "pending"}, "status"},
			{map[string]any{"customer": map[string]any{"id": f.customer.ID}, "priority": "meh"}, "priority"},
			{map[string]any{"customer": map[string]any{"id": f.customer.ID}, "channel": "pigeon"}, "channel"},
			{map[string]any{"customer": map[string]any{"id": f.customer.ID}, "messages": []any{map[string]any{}}}, "messages[0].body_text"},
			{map[string]any{"customer": map[string]any{"id": f.customer.ID}, "messages": []any{map[string]any{"body_text": "a", "channel": "x"}}}, "messages[0].channel"},
			{map[string]any{"customer": map[string]any{"id": f.customer.ID}, "messages": []any{map[string]any{"body_text": "a"},
				map[string]any{"body_text": "b", "sender": map[string]any{"email": "stranger@example.com"}}}}, "messages[1].sender"},
			{map[string]any{"customer": map[string]any{"email": "not an email"}}, "customer"},
			{`{"subjet": "typo"}`, "subjet"},
			{`{"subject": ["a"]}`, "subject"},
			{`{"customer": {"id": "7"}}`, "customer.id"},
			{`{"subject": "x",`, "body"},
			{`not json`, "body"},
			{``, "body"},
			{map[string]any{"customer": map[string]any{"id": 99999999}}, ""},
		} {
			r := e.do(t, "POST", "/api/tickets", c.body, auth).want(t, 400)
			d := r.Err(t)
			if d.Code != valet.EINVALID || d.Msg == "" || (c.field != "" && len(d.Data[c.field]) == 0) {
				t.Errorf("%v: error %+v, want data.%s", c.body, d, c.field)
			}
		}
		r := e.do(t, "POST", "/api/tickets", `{}`, auth, header("Content-Type", "text/plain")).want(t, 400)
		if len(r.Err(t).Data["Content-Type"]) == 0 {
			t.Errorf("content type error %+v", r.Err(t))
		}
		e.do(t, "POST", "/api/tickets", `subject=x`, auth, header("Content-Type", "application/x-www-form-urlencoded")).want(t, 400)
		e.do(t, "POST", "/api/tickets", map[string]any{"subject": "x", "customer": map[string]any{"id": f.customer.ID}},
			auth, header("Content-Type", "application/json; charset=utf-8")).want(t, 201)
	})
	t.Run("get", func(t *testing.T) {
		id := strconv.FormatInt(created.ID, 10)
		for _, path := range []string{"/api/tickets/" + id, "/api/tickets/" + id + "/"} {
			var tk ticketOut
			r := e.do(t, "GET", path, nil, auth).want(t, 200)
			r.JSON(t, &tk)
			if tk.ID != created.ID || tk.URI != created.URI || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("GET %s: %+v", path, tk)
			}
		}
		for _, path := range []string{"/api/tickets/999999", "/api/tickets/abc", "/api/tickets/0", "/api/tickets/-1", "/api/tickets/99999999999999999999"} {
			if d := e.do(t, "GET", path, nil, auth).want(t, 404).Err(t); d.Code != valet.ENOTFOUND {
				t.Errorf("%s: %+v", path, d)
			}
		}
	})
	t.Run("list and filters", func(t *testing.T) {
		var all list[ticketOut]
		r := e.do(t, "GET", "/api/tickets", nil, auth).want(t, 200)
		r.JSON(t, &all)
		if all.Object != "list" || all.URI != "/api/tickets" || len(all.Data) != 4 || all.Meta.NextCursor != nil || all.Meta.PrevCursor != nil {
			t.Errorf("list %+v", all)
		}
		var raw map[string]json.RawMessage
		r.JSON(t, &raw)
		if string(raw["meta"]) != `{"prev_cursor":null,"next_cursor":null}` {
			t.Errorf("meta %s", raw["meta"])
		}
		count := func(q string) int {
			var page list[ticketOut]
			e.do(t, "GET", "/api/tickets?"+q, nil, auth).want(t, 200).JSON(t, &page)
			return len(page.Data)
		}
		if n := count("status=closed"); n != 1 {
			t.Errorf("status=closed: %d", n)
		}
		if n := count("status=open"); n != 3 {
			t.Errorf("status=open: %d", n)
		}
		if n := count("customer_id=" + strconv.FormatInt(created.Customer.ID, 10)); n != 1 {
			t.Errorf("customer_id: %d", n)
		}
		if n := count("assignee_user_id=" + strconv.FormatInt(f.agent.ID, 10)); n != 1 {
			t.Errorf("assignee_user_id: %d", n)
		}
		if n := count("updated_since=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); n != 0 {
			t.Errorf("updated_since future: %d", n)
		}
		if n := count("updated_since=2000-01-01T00:00:00Z&limit=2"); n != 2 {
			t.Errorf("updated_since past, limit 2: %d", n)
		}
	})
	t.Run("update", func(t *testing.T) {
		path := "/api/tickets/" + strconv.FormatInt(created.ID, 10)
		var tk ticketOut
		e.do(t, "PUT", path, map[string]any{"status": "closed", "subject": "Damaged parcel", "assignee_user": map[string]any{"id": f.agent.ID}}, auth).want(t, 200).JSON(t, &tk)
		if tk.Status != valet.StatusClosed || tk.ClosedDatetime == nil || tk.Subject != "Damaged parcel" || tk.AssigneeUser == nil || tk.AssigneeUser.ID != f.agent.ID {
			t.Errorf("after close %+v", tk)
		}
		e.do(t, "PUT", path+"/", map[string]any{"status": "open", "assignee_user": nil}, auth).want(t, 200).JSON(t, &tk)
		if tk.Status != valet.StatusOpen || tk.AssigneeUser != nil || tk.Subject != "Damaged parcel" {
			t.Errorf("after reopen %+v", tk)
		}
		for _, c := range []struct {
			body  any
			field string
		}{
			{map[string]any{"status": "pending"}, "status"},
			{map[string]any{"priority": 3}, "priority"},
			{map[string]any{"id": 5}, "id"},
			{map[string]any{"updated_datetime": "yesterday"}, "updated_datetime"},
			{map[string]any{"customer": map[string]any{"id": 99999999}}, ""},
			{map[string]any{"assignee_user": map[string]any{"id": 99999999}}, ""},
			{map[string]any{"assignee_user": map[string]any{"name": "x"}}, ""},
		} {
			d := e.do(t, "PUT", path, c.body, auth).want(t, 400).Err(t)
			if c.field != "" && len(d.Data[c.field]) == 0 {
				t.Errorf("%v: %+v, want data.%s", c.body, d, c.field)
			}
		}
		e.do(t, "PUT", "/api/tickets/999999", map[string]any{}, auth).want(t, 404)
	})
	t.Run("messages", func(t *testing.T) {
		path := "/api/tickets/" + strconv.FormatInt(created.ID, 10) + "/messages"
		var m valet.Message
		e.do(t, "POST", path, map[string]any{"body_text": "A replacement is on its way.", "subject": "Re: damaged"}, auth).want(t, 201).JSON(t, &m)
		if !m.FromAgent || !m.Public || m.Sender.ID != f.owner.ID || m.TicketID != created.ID || m.Channel != "email" {
			t.Errorf("reply %+v", m)
		}
		e.do(t, "POST", path+"/", map[string]any{"body_text": "Refund if it happens again.", "public": false}, auth).want(t, 201).JSON(t, &m)
		if m.Public || m.Channel != "internal-note" || !m.FromAgent {
			t.Errorf("note %+v", m)
		}
		e.do(t, "POST", path, map[string]any{"body_text": "Thanks!", "from_agent": false}, auth).want(t, 201).JSON(t, &m)
		if m.FromAgent || m.Sender.ID != created.Customer.ID {
			t.Errorf("customer message %+v", m)
		}
		var msgs list[valet.Message]
		e.do(t, "GET", path, nil, auth).want(t, 200).JSON(t, &msgs)
		if len(msgs.Data) != 5 || msgs.Data[0].BodyText != "The box was crushed." || msgs.Data[4].BodyText != "Thanks!" {
			t.Errorf("messages %+v", msgs.Data)
		}
		var page list[valet.Message]
		e.do(t, "GET", path+"?limit=2", nil, auth).want(t, 200).JSON(t, &page)
		if len(page.Data) != 2 || page.Meta.NextCursor == nil {
			t.Errorf("limit=2: %+v", page)
		}
		var tk ticketOut
		e.do(t, "GET", "/api/tickets/"+strconv.FormatInt(created.ID, 10), nil, auth).want(t, 200).JSON(t, &tk)
		if tk.MessagesCount != 5 {
			t.Errorf("messages_count %d", tk.MessagesCount)
		}
		if d := e.do(t, "POST", path, map[string]any{}, auth).want(t, 400).Err(t); len(d.Data["body_text"]) == 0 {
			t.Errorf("empty message: %+v", d)
		}
		e.do(t, "POST", path, map[string]any{"body": "x"}, auth).want(t, 400)
		// A sender by email is found by it, or refused: never dropped.
		var byEmail valet.Message
		e.do(t, "POST", path, map[string]any{"body_text": "From the owner", "sender": map[string]any{"email": f.owner.Email}},
			auth).want(t, 201).JSON(t, &byEmail)
		if byEmail.Sender.ID != f.owner.ID {
			t.Errorf("sender by email: %+v", byEmail.Sender)
		}
		if d := e.do(t, "POST", path, map[string]any{"body_text": "x", "sender": map[string]any{"email": "stranger@example.com"}},
			auth).want(t, 400).Err(t); len(d.Data["sender"]) == 0 {
			t.Errorf("unknown sender email: %+v", d)
		}
		e.do(t, "POST", "/api/tickets/999999/messages", map[string]any{"body_text": "x"}, auth).want(t, 404)
		e.do(t, "GET", "/api/tickets/999999/messages", nil, auth).want(t, 404)
		e.do(t, "GET", path+"?limit=500", nil, auth).want(t, 400)
	})
	t.Run("tags", func(t *testing.T) {
		path := "/api/tickets/" + strconv.FormatInt(created.ID, 10) + "/tags"
		names := func(r *apiResp) string {
			var l list[valet.Tag]
			r.JSON(t, &l)
			var out []string
			for _, tag := range l.Data {
				out = append(out, tag.Name)
			}
			return strings.Join(out, ",")
		}
		if got := names(e.do(t, "PUT", path, map[string]any{"names": []string{}}, auth).want(t, 200)); got != "" {
			t.Errorf("after clearing: %q", got)
		}
		if got := names(e.do(t, "POST", path, map[string]any{"names": []any{"vip", map[string]any{"name": "refund"}}}, auth).want(t, 200)); got != "refund,vip" && got != "vip,refund" {
			t.Errorf("after add: %q", got)
		}
		if got := names(e.do(t, "PUT", path+"/", map[string]any{"names": []string{"exchange"}}, auth).want(t, 200)); got != "exchange" {
			t.Errorf("after replace: %q", got)
		}
		e.do(t, "DELETE", path, map[string]any{"names": []string{"exchange"}}, auth).want(t, 204)
		if got := names(e.do(t, "GET", path, nil, auth).want(t, 200)); got != "" {
			t.Errorf("after remove: %q", got)
		}
		if d := e.do(t, "POST", path, map[string]any{}, auth).want(t, 400).Err(t); len(d.Data["names"]) == 0 {
			t.Errorf("no names: %+v", d)
		}
		e.do(t, "POST", path, map[string]any{"names": "vip"}, auth).want(t, 400)
		e.do(t, "POST", path, map[string]any{"names": []string{""}}, auth).want(t, 400)
		e.do(t, "POST", path, map[string]any{"names": []string{strings.Repeat("x", 300)}}, auth).want(t, 400)
		e.do(t, "GET", "/api/tickets/999999/tags", nil, auth).want(t, 404)
		e.do(t, "POST", "/api/tickets/999999/tags", map[string]any{"names": []string{"a"}}, auth).want(t, 404)
	})
	t.Run("delete", func(t *testing.T) {
		path := "/api/tickets/" + strconv.FormatInt(created.ID, 10)
		r := e.do(t, "DELETE", path, nil, auth).want(t, 204)
		if len(r.Body) != 0 {
			t.Errorf("204 with body %q", r.Body)
		}
		e.do(t, "GET", path, nil, auth).want(t, 404)
		e.do(t, "DELETE", path, nil, auth).want(t, 404)
		e.do(t, "GET", path+"/messages", nil, auth).want(t, 404)
	})
	t.Run("actor recorded on events", func(t *testing.T) {
		tok, grant := mustOAuthToken(t, e.store, f.account, f.agent)
		var tk ticketOut
		e.do(t, "POST", "/api/tickets", map[string]any{"subject": "via app", "customer": map[string]any{"id": f.customer.ID}}, bearer(tok)).want(t, 201).JSON(t, &tk)
		events, err := e.store.ListEvents(context.Background(), f.account.ID, valet.EventFilter{Types: []string{valet.EventTicketCreated}, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var byApp, byKey *valet.Event
		for i, ev := range events {
			switch ev.ObjectID {
			case tk.ID:
				byApp = &events[i]
			case created.ID:
				byKey = &events[i]
			}
		}
		if byApp == nil || byApp.UserID == nil || *byApp.UserID != f.agent.ID || byApp.AppID == nil || *byApp.AppID != grant.AppID {
			t.Errorf("event by app: %+v", byApp)
		}
		if byKey == nil || byKey.UserID == nil || *byKey.UserID != f.owner.ID || byKey.AppID != nil {
			t.Errorf("event by API key: %+v", byKey)
		}
	})
}

// customerOut is a customer as a client reads it, with the uri.
type customerOut struct {
	valet.Customer
	URI string `json:"uri"`
}

func TestAPICustomers(t *testing.T) {
	t.Parallel()
	onStores(t, testAPICustomers)
}

func testAPICustomers(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	auth := bearer(f.key)

	var c customerOut
	r := e.do(t, "POST", "/api/customers", map[string]any{
		"email": " Carol@Example.COM ", "firstname": "Carol", "lastname": "Danvers", "external_id": "shop-42",
		"language": "en", "timezone": "Europe/Paris", "note": "Prefers email", "data": map[string]any{"orders": 3},
	}, auth).want(t, 201)
	r.JSON(t, &c)
	if c.Email != "carol@example.com" || c.Name != "Carol Danvers" || c.ExternalID != "shop-42" || string(c.Data) != `{"orders":3}` ||
		c.URI != "/api/customers/"+strconv.FormatInt(c.ID, 10)+"/" || r.Header.Get("Location") != c.URI {
		t.Errorf("created %+v (Location %q)", c, r.Header.Get("Location"))
	}
	path := "/api/customers/" + strconv.FormatInt(c.ID, 10)

	t.Run("create errors", func(t *testing.T) {
		if d := e.do(t, "POST", "/api/customers", map[string]any{"email": "carol@example.com"}, auth).want(t, 409).Err(t); d.Code != valet.ECONFLICT {
			t.Errorf("duplicate: %+v", d)
		}
		for _, c := range []struct {
			body  any
			field string
		}{
			{map[string]any{}, "name"},
			{map[string]any{"email": "nope"}, "email"},
			{map[string]any{"name": "x", "data": []int{1}}, "data"},
			{map[string]any{"name": "x", "data": "text"}, "data"},
			{map[string]any{"name": strings.Repeat("x", 300)}, "name"},
			{map[string]any{"name": "x", "id": 3}, "id"},
			{map[string]any{"name": 3}, "name"},
			{`{"name": "a\u0000b"}`, "body"},
			{map[string]any{"name": "x", "language": "english"}, "language"},
			{map[string]any{"name": "x", "language": "en_US!"}, "language"},
			{map[string]any{"name": "x", "language": "en_US"}, "language"},
			{map[string]any{"name": "x", "timezone": "Mars/Olympus_Mons"}, "timezone"},
			{map[string]any{"name": "x", "timezone": "Local"}, "timezone"},
			{map[string]any{"name": "x", "timezone": "../../etc/passwd"}, "timezone"},
		} {
			d := e.do(t, "POST", "/api/customers", c.body, auth).want(t, 400).Err(t)
			if len(d.Data[c.field]) == 0 {
				t.Errorf("%v: %+v, want data.%s", c.body, d, c.field)
			}
		}
	})
	t.Run("get and list", func(t *testing.T) {
		var got customerOut
		e.do(t, "GET", path+"/", nil, auth).want(t, 200).JSON(t, &got)
		if got.ID != c.ID || got.Email != c.Email {
			t.Errorf("get %+v", got)
		}
		e.do(t, "GET", "/api/customers/999999", nil, auth).want(t, 404)
		var l list[customerOut]
		e.do(t, "GET", "/api/customers", nil, auth).want(t, 200).JSON(t, &l)
		if len(l.Data) != 2 {
			t.Errorf("list %+v", l)
		}
		e.do(t, "GET", "/api/customers?email=CAROL@example.com", nil, auth).want(t, 200).JSON(t, &l)
		if len(l.Data) != 1 || l.Data[0].ID != c.ID {
			t.Errorf("by email %+v", l)
		}
		e.do(t, "GET", "/api/customers?external_id=shop-42", nil, auth).want(t, 200).JSON(t, &l)
		if len(l.Data) != 1 || l.Data[0].ID != c.ID {
			t.Errorf("by external_id %+v", l)
		}
		e.do(t, "GET", "/api/customers?order_by=created_datetime:desc&limit=1", nil, auth).want(t, 200).JSON(t, &l)
		if len(l.Data) != 1 || l.Data[0].ID != c.ID || l.Meta.NextCursor == nil {
			t.Errorf("newest first %+v", l)
		}
		e.do(t, "GET", "/api/customers?order_by=email", nil, auth).want(t, 400)
	})
	t.Run("update", func(t *testing.T) {
		var got customerOut
		e.do(t, "PUT", path, map[string]any{"note": "VIP", "data": nil}, auth).want(t, 200).JSON(t, &got)
		if got.Note != "VIP" || (got.Data != nil && string(got.Data) != "null") || got.Email != c.Email || got.Firstname != "Carol" {
			t.Errorf("updated %+v (data %s)", got, got.Data)
		}
		if d := e.do(t, "PUT", path, map[string]any{"email": "owner-of-nothing"}, auth).want(t, 400).Err(t); len(d.Data["email"]) == 0 {
			t.Errorf("bad email %+v", d)
		}
		if d := e.do(t, "PUT", path, map[string]any{"timezone": "Europe/Atlantis"}, auth).want(t, 400).Err(t); len(d.Data["timezone"]) == 0 {
			t.Errorf("bad timezone %+v", d)
		}
		e.do(t, "PUT", path, map[string]any{"language": "pt-BR", "timezone": "America/Sao_Paulo"}, auth).want(t, 200).JSON(t, &got)
		if got.Language != "pt-BR" || got.Timezone != "America/Sao_Paulo" {
			t.Errorf("language and timezone %+v", got)
		}
		e.do(t, "PUT", path, map[string]any{"email": f.customer.Email}, auth).want(t, 409)
		e.do(t, "PUT", path, map[string]any{"created_datetime": time.Now()}, auth).want(t, 400)
		e.do(t, "PUT", "/api/customers/999999", map[string]any{"note": "x"}, auth).want(t, 404)
	})
	t.Run("delete", func(t *testing.T) {
		e.do(t, "DELETE", "/api/customers/"+strconv.FormatInt(f.customer.ID, 10), nil, auth).want(t, 409)
		e.do(t, "DELETE", path, nil, auth).want(t, 204)
		e.do(t, "GET", path, nil, auth).want(t, 404)
		e.do(t, "DELETE", path, nil, auth).want(t, 404)
	})
}

func TestAPIAccountAndUsers(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIAccountAndUsers)
}

func testAPIAccountAndUsers(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	other := newFixture(t, e.store, "globex")
	auth := bearer(f.key)

	var a struct {
		valet.Account
		URI string `json:"uri"`
	}
	e.do(t, "GET", "/api/account", nil, auth).want(t, 200).JSON(t, &a)
	if a.ID != f.account.ID || a.Name != "acme" || a.DisplayName != "ACME" || a.CreatedDatetime.IsZero() {
		t.Errorf("account %+v", a)
	}
	var users list[userJSONOut]
	e.do(t, "GET", "/api/users", nil, auth).want(t, 200).JSON(t, &users)
	if len(users.Data) != 2 || users.Data[0].ID != f.owner.ID || users.Data[0].Role != valet.RoleOwner ||
		users.Data[1].Role != valet.RoleAgent || users.Data[1].URI != "/api/users/"+strconv.FormatInt(f.agent.ID, 10)+"/" {
		t.Errorf("users %+v", users.Data)
	}
	r := e.do(t, "GET", "/api/users?limit=1", nil, auth).want(t, 200)
	if strings.Contains(string(r.Body), "password") {
		t.Errorf("users leak a password field: %s", r.Body)
	}
	var u userJSONOut
	e.do(t, "GET", "/api/users/"+strconv.FormatInt(f.agent.ID, 10), nil, auth).want(t, 200).JSON(t, &u)
	if u.Email != f.agent.Email || u.Role != valet.RoleAgent {
		t.Errorf("user %+v", u)
	}
	e.do(t, "GET", "/api/users/"+strconv.FormatInt(other.owner.ID, 10), nil, auth).want(t, 404)
	e.do(t, "GET", "/api/users/me", nil, auth).want(t, 404)
	e.do(t, "GET", "/api/users?cursor=%%%", nil, auth).want(t, 400)
	e.do(t, "GET", "/api/users?cursor=abc", nil, auth).want(t, 400)
}

type userJSONOut struct {
	valet.User
	URI string `json:"uri"`
}

func TestAPIEvents(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIEvents)
}

func testAPIEvents(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	auth := bearer(f.key)

	var all list[valet.Event]
	e.do(t, "GET", "/api/events?limit=100", nil, auth).want(t, 200).JSON(t, &all)
	if len(all.Data) < 3 || all.Meta.NextCursor != nil || all.Meta.LastID != all.Data[len(all.Data)-1].ID {
		t.Fatalf("events %+v", all)
	}
	for i := 1; i < len(all.Data); i++ {
		if all.Data[i].ID <= all.Data[i-1].ID {
			t.Fatalf("events out of order: %+v", all.Data)
		}
	}
	var only list[valet.Event]
	e.do(t, "GET", "/api/events?types=customer-created,+ticket-created", nil, auth).want(t, 200).JSON(t, &only)
	for _, ev := range only.Data {
		if ev.Type != valet.EventCustomerCreated && ev.Type != valet.EventTicketCreated {
			t.Errorf("types filter let %s through", ev.Type)
		}
	}
	if len(only.Data) != 2 {
		t.Errorf("filtered events %+v", only.Data)
	}
	// Each event's object is for the scope that reads it; the event itself
	// is for events:read.
	for _, c := range []struct {
		scopes                   []valet.Scope
		customerData, ticketData bool
	}{
		{[]valet.Scope{valet.ScopeEventsRead}, false, false},
		{[]valet.Scope{valet.ScopeEventsRead, valet.ScopeTicketsRead}, false, true},
		{[]valet.Scope{valet.ScopeEventsRead, valet.ScopeCustomersRead}, true, false},
	} {
		var l list[valet.Event]
		e.do(t, "GET", "/api/events?limit=100", nil, bearer(mustAPIKey(t, e.store, f.account, f.owner, c.scopes...))).
			want(t, 200).JSON(t, &l)
		if len(l.Data) != len(all.Data) {
			t.Fatalf("%v: %d events, want %d", c.scopes, len(l.Data), len(all.Data))
		}
		for _, ev := range l.Data {
			want := c.ticketData
			if valet.EventReadScope(ev.Type) == valet.ScopeCustomersRead {
				want = c.customerData
			}
			if has := len(ev.Data) > 0 && string(ev.Data) != "null"; has != want {
				t.Errorf("%v: %s has data %s", c.scopes, ev.Type, ev.Data)
			}
		}
	}
	var page list[valet.Event]
	e.do(t, "GET", "/api/events?limit=1", nil, auth).want(t, 200).JSON(t, &page)
	if len(page.Data) != 1 || page.Meta.NextCursor == nil || *page.Meta.NextCursor != strconv.FormatInt(page.Data[0].ID, 10) {
		t.Fatalf("limit=1: %+v", page)
	}
	var next list[valet.Event]
	e.do(t, "GET", "/api/events?limit=1&cursor="+*page.Meta.NextCursor, nil, auth).want(t, 200).JSON(t, &next)
	if len(next.Data) != 1 || next.Data[0].ID != all.Data[1].ID {
		t.Errorf("next page %+v", next)
	}
	var byID list[valet.Event]
	e.do(t, "GET", "/api/events?limit=1&order_by=id:asc", nil, auth).want(t, 200).JSON(t, &byID)
	if len(byID.Data) != 1 || byID.Data[0].ID != all.Data[0].ID {
		t.Errorf("order_by=id:asc: %+v", byID)
	}
	for _, q := range []string{"after=x", "after=-1", "types=nope", "limit=0", "limit=101", "wait=31", "wait=x", "wait=-1",
		"order_by=created_datetime:desc", "order_by=id:desc", "order_by=bogus", "cursor=abc", "cursor=3&after=4"} {
		field, _, _ := strings.Cut(q, "=")
		if d := e.do(t, "GET", "/api/events?"+q, nil, auth).want(t, 400).Err(t); len(d.Data[field]) == 0 {
			t.Errorf("%s: %+v", q, d)
		}
	}
	last := strconv.FormatInt(all.Meta.LastID, 10)

	t.Run("wait with nothing new", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		var l list[valet.Event]
		e.do(t, "GET", "/api/events?wait=1&after="+last+"&types=customer-deleted", nil, auth).want(t, 200).JSON(t, &l)
		if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
			t.Errorf("waited %v for 1 s", d)
		}
		if len(l.Data) != 0 || l.Meta.LastID != all.Meta.LastID {
			t.Errorf("empty wait %+v", l)
		}
	})
	t.Run("long poll wakes on a new event", func(t *testing.T) {
		t.Parallel()
		var wg sync.WaitGroup
		var got list[valet.Event]
		var took time.Duration
		wg.Go(func() {
			start := time.Now()
			r := e.do(t, "GET", "/api/events?wait=10&types=ticket-created&after="+last, nil, auth)
			took = time.Since(start)
			if r.Status == 200 {
				_ = json.Unmarshal(r.Body, &got)
			}
		})
		time.Sleep(300 * time.Millisecond)
		var tk ticketOut
		e.do(t, "POST", "/api/tickets", map[string]any{"subject": "new", "customer": map[string]any{"id": f.customer.ID}}, auth).want(t, 201).JSON(t, &tk)
		wg.Wait()
		if len(got.Data) != 1 || got.Data[0].ObjectID != tk.ID || got.Data[0].Type != valet.EventTicketCreated {
			t.Errorf("long poll got %+v", got)
		}
		if took > 3*time.Second {
			t.Errorf("long poll answered after %v", took)
		}
	})
}

func TestAPIFallback(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	f := newFixture(t, e.store, "acme")
	if d := e.do(t, "GET", "/api/nothing-here", nil, bearer(f.key)).want(t, 404).Err(t); d.Code != valet.ENOTFOUND {
		t.Errorf("unknown route %+v", d)
	}
	r := e.do(t, "PATCH", "/api/tickets/1", `{}`, bearer(f.key)).want(t, 405)
	if got := r.Header.Get("Allow"); got != "GET, PUT, DELETE" {
		t.Errorf("Allow %q", got)
	}
	if r.Err(t).Code != "method_not_allowed" {
		t.Errorf("405 body %s", r.Body)
	}
	if got := e.do(t, "POST", "/api/account", `{}`, bearer(f.key)).want(t, 405).Header.Get("Allow"); got != "GET" {
		t.Errorf("Allow %q", got)
	}
}

func TestAPIInternalErrorsDoNotLeak(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	f := newFixture(t, e.store, "acme")
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, "GET", "/api/tickets/"+strconv.FormatInt(f.ticket.ID, 10), nil, bearer(f.key)).want(t, 500)
	d := r.Err(t)
	id := r.Header.Get("X-Request-Id")
	if d.Code != valet.EINTERNAL || !strings.Contains(d.Msg, id) || d.Data != nil {
		t.Errorf("500 body %s", r.Body)
	}
	if strings.Contains(strings.ToLower(string(r.Body)), "sql") || strings.Contains(string(r.Body), "closed") {
		t.Errorf("500 leaks the cause: %s", r.Body)
	}
}
