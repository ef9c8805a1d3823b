package apiclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/apiclient"
)

func TestAccountAndUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	agent := e.member("agent@acme.example", valet.RoleAgent)
	c := e.client(t)
	ctx := context.Background()

	a, err := c.Account(ctx)
	must(t, err)
	if a.ID != e.account.ID || a.Name != "acme" || a.DisplayName != "Acme" || a.CreatedDatetime.IsZero() {
		t.Errorf("Account = %+v", a)
	}

	var users []valet.User
	for u, err := range c.Users(ctx) {
		must(t, err)
		users = append(users, u)
	}
	if len(users) != 2 || users[0].Email != e.owner.Email || users[0].Role != valet.RoleOwner ||
		users[1].ID != agent.ID || users[1].Role != valet.RoleAgent {
		t.Errorf("Users = %+v", users)
	}

	u, err := c.User(ctx, agent.ID)
	must(t, err)
	if u.Email != "agent@acme.example" || u.Role != valet.RoleAgent || u.CreatedDatetime.IsZero() {
		t.Errorf("User = %+v", u)
	}
	if _, err := c.User(ctx, 9999); !apiclient.IsNotFound(err) {
		t.Errorf("User(9999) error = %v, want not found", err)
	}
	if used, limit := c.CallLimit(); limit != 1_000_000 || used < 1 {
		t.Errorf("CallLimit = %d/%d", used, limit)
	}
}

// TestTicketsPagination walks 26 tickets in pages of 10: every ticket once,
// newest first; breaking out of the loop stops the requests; a page's
// cursor resumes the walk.
func TestTicketsPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 25 {
		e.newTicket(t, e.customer, fmt.Sprintf("Ticket %d", i))
	}
	rec := newRecorder()
	c := e.client(t, apiclient.WithHTTPClient(rec.httpClient()))
	ctx := context.Background()
	opts := apiclient.TicketListOptions{PageSize: 10, Status: valet.StatusOpen}

	var ids []int64
	for tk, err := range c.Tickets(ctx, opts) {
		must(t, err)
		ids = append(ids, tk.ID)
	}
	if len(ids) != 26 {
		t.Fatalf("walked %d tickets, want 26", len(ids))
	}
	if !slices.IsSortedFunc(ids, func(a, b int64) int { return int(b - a) }) {
		t.Errorf("ids not newest first: %v", ids)
	}
	if n := len(slices.Compact(slices.Clone(ids))); n != 26 {
		t.Errorf("%d distinct ids, want 26", n)
	}
	reqs := rec.requests()
	if len(reqs) != 3 || !strings.Contains(reqs[0], "limit=10") || !strings.Contains(reqs[0], "status=open") ||
		strings.Contains(reqs[0], "cursor=") || !strings.Contains(reqs[2], "cursor=") || !strings.Contains(reqs[2], "status=open") {
		t.Errorf("requests = %q, want 3 pages with the filter on each", reqs)
	}

	// Breaking after 12 rows needs two pages, not three.
	before := rec.count()
	n := 0
	for _, err := range c.Tickets(ctx, opts) {
		must(t, err)
		if n++; n == 12 {
			break
		}
	}
	if got := rec.count() - before; got != 2 {
		t.Errorf("breaking after 12 rows made %d requests, want 2", got)
	}

	// One page, then the rest from its cursor.
	p, err := c.TicketsPage(ctx, apiclient.TicketListOptions{PageSize: 10})
	must(t, err)
	if len(p.Data) != 10 || p.NextCursor == "" || p.PrevCursor != "" || p.Data[0].ID != ids[0] {
		t.Fatalf("TicketsPage = %d rows, next %q, prev %q", len(p.Data), p.NextCursor, p.PrevCursor)
	}
	rest := 0
	for tk, err := range c.Tickets(ctx, apiclient.TicketListOptions{PageSize: 10, Cursor: p.NextCursor}) {
		must(t, err)
		if rest == 0 && tk.ID != ids[10] {
			t.Errorf("resumed at %d, want %d", tk.ID, ids[10])
		}
		rest++
	}
	if rest != 16 {
		t.Errorf("resumed walk gave %d tickets, want 16", rest)
	}

	// A cursor sent with another order is the server's 400, yielded once.
	var errs int
	for _, err := range c.Tickets(ctx, apiclient.TicketListOptions{Cursor: p.NextCursor, OrderBy: "updated_datetime:asc"}) {
		if err == nil {
			t.Fatal("row from a mismatched cursor")
		}
		if !apiclient.IsInvalid(err) {
			t.Errorf("mismatched cursor error = %v", err)
		}
		errs++
	}
	if errs != 1 {
		t.Errorf("%d errors yielded, want 1", errs)
	}
}

func TestTicketLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	agent := e.member("agent@acme.example", valet.RoleAgent)
	c := e.client(t)
	ctx := context.Background()

	tk, err := c.CreateTicket(ctx, apiclient.NewTicket{
		Subject:        "Where is my order #10234?",
		Customer:       apiclient.Ref{Email: "sam.lee@example.com", Name: "Sam Lee"},
		Channel:        "email",
		Tags:           []string{"shipping"},
		AssigneeUserID: agent.ID,
		Messages:       []apiclient.NewMessage{{BodyText: "Hi, my order has not arrived yet."}},
	})
	must(t, err)
	if tk.ID == 0 || tk.Status != valet.StatusOpen || tk.Priority != "normal" || tk.Channel != "email" ||
		tk.Customer.Email != "sam.lee@example.com" || tk.AssigneeUser == nil || tk.AssigneeUser.ID != agent.ID ||
		len(tk.Tags) != 1 || tk.Tags[0].Name != "shipping" || tk.MessagesCount != 1 || tk.OpenedDatetime == nil {
		t.Errorf("CreateTicket = %+v", tk)
	}

	got, err := c.Ticket(ctx, tk.ID)
	must(t, err)
	if got.Subject != tk.Subject || !got.UpdatedDatetime.Equal(tk.UpdatedDatetime) {
		t.Errorf("Ticket = %+v, want %+v", got, tk)
	}

	// A reply and an internal note.
	reply, err := c.CreateMessage(ctx, tk.ID, apiclient.NewMessage{BodyText: "It shipped today with UPS."})
	must(t, err)
	if !reply.FromAgent || !reply.Public || reply.Sender.ID != e.owner.ID || reply.TicketID != tk.ID || reply.SentDatetime == nil {
		t.Errorf("reply = %+v", reply)
	}
	note, err := c.CreateMessage(ctx, tk.ID, apiclient.NewMessage{BodyText: "Checked.", Public: new(false)})
	must(t, err)
	if note.Public || note.Channel != "internal-note" || note.SentDatetime != nil {
		t.Errorf("note = %+v", note)
	}
	var bodies []string
	for m, err := range c.Messages(ctx, tk.ID) {
		must(t, err)
		bodies = append(bodies, m.BodyText)
	}
	if want := []string{"Hi, my order has not arrived yet.", "It shipped today with UPS.", "Checked."}; !slices.Equal(bodies, want) {
		t.Errorf("Messages = %q, want %q", bodies, want)
	}

	// Tags.
	tags, err := c.AddTicketTags(ctx, tk.ID, "vip", "refund")
	must(t, err)
	if len(tags) != 3 {
		t.Errorf("AddTicketTags = %+v", tags)
	}
	tags, err = c.SetTicketTags(ctx, tk.ID, "vip")
	must(t, err)
	if len(tags) != 1 || tags[0].Name != "vip" {
		t.Errorf("SetTicketTags = %+v", tags)
	}
	must(t, c.RemoveTicketTags(ctx, tk.ID, "vip"))
	tags, err = c.TicketTags(ctx, tk.ID)
	must(t, err)
	if len(tags) != 0 {
		t.Errorf("TicketTags after removing = %+v", tags)
	}

	// Update with a stale ETag: 412 and nothing written.
	_, err = c.UpdateTicket(ctx, tk.ID, apiclient.TicketUpdate{Status: new(valet.StatusClosed), IfMatch: apiclient.ETag(tk.UpdatedDatetime)})
	if !apiclient.IsPreconditionFailed(err) || apiError(t, err).Code != apiclient.CodePreconditionFailed {
		t.Fatalf("stale If-Match: %v, want 412", err)
	}
	// With the current one: closed and unassigned.
	cur, err := c.Ticket(ctx, tk.ID)
	must(t, err)
	if cur.Status != valet.StatusOpen {
		t.Fatalf("a refused update was written: %+v", cur)
	}
	up, err := c.UpdateTicket(ctx, tk.ID, apiclient.TicketUpdate{
		Status: new(valet.StatusClosed), Priority: new("high"), Unassign: true, IfMatch: apiclient.ETag(cur.UpdatedDatetime)})
	must(t, err)
	if up.Status != valet.StatusClosed || up.Priority != "high" || up.AssigneeUser != nil || up.ClosedDatetime == nil ||
		up.Subject != tk.Subject {
		t.Errorf("UpdateTicket = %+v", up)
	}
	up, err = c.UpdateTicket(ctx, tk.ID, apiclient.TicketUpdate{AssigneeUserID: agent.ID})
	must(t, err)
	if up.AssigneeUser == nil || up.AssigneeUser.ID != agent.ID || up.Status != valet.StatusClosed {
		t.Errorf("assign = %+v", up)
	}

	must(t, c.DeleteTicket(ctx, tk.ID))
	_, err = c.Ticket(ctx, tk.ID)
	if !apiclient.IsNotFound(err) {
		t.Fatalf("Ticket after delete: %v, want 404", err)
	}
	ae := apiError(t, err)
	if ae.StatusCode != 404 || ae.Code != apiclient.CodeNotFound || ae.Message != "Ticket not found." || ae.RequestID == "" ||
		ae.Method != "GET" || !strings.HasPrefix(ae.Path, "/api/tickets/") {
		t.Errorf("404 error = %#v", ae)
	}
	if err := c.DeleteTicket(ctx, tk.ID); !apiclient.IsNotFound(err) {
		t.Errorf("second delete: %v, want 404", err)
	}
}

func TestCustomerLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()

	cu, err := c.CreateCustomer(ctx, apiclient.NewCustomer{Email: "Sam.Lee@example.com", Firstname: "Sam", Lastname: "Lee",
		Language: "en", Data: json.RawMessage(`{"orders_count":1}`)})
	must(t, err)
	if cu.ID == 0 || cu.Email != "sam.lee@example.com" || cu.Name != "Sam Lee" || string(cu.Data) != `{"orders_count":1}` {
		t.Errorf("CreateCustomer = %+v (data %s)", cu, cu.Data)
	}
	_, err = c.CreateCustomer(ctx, apiclient.NewCustomer{Email: "sam.lee@example.com"})
	if !apiclient.IsConflict(err) {
		t.Errorf("duplicate email: %v, want 409", err)
	}

	var found []valet.Customer
	for x, err := range c.Customers(ctx, apiclient.CustomerListOptions{Email: "sam.lee@example.com"}) {
		must(t, err)
		found = append(found, x)
	}
	if len(found) != 1 || found[0].ID != cu.ID {
		t.Errorf("Customers(email) = %+v", found)
	}
	n := 0
	for _, err := range c.Customers(ctx, apiclient.CustomerListOptions{PageSize: 1}) {
		must(t, err)
		n++
	}
	if n != 2 {
		t.Errorf("Customers walked %d, want 2", n)
	}

	up, err := c.UpdateCustomer(ctx, cu.ID, apiclient.CustomerUpdate{Note: new("Prefers chat."), IfMatch: apiclient.ETag(cu.UpdatedDatetime)})
	must(t, err)
	if up.Note != "Prefers chat." || up.Name != "Sam Lee" || string(up.Data) != `{"orders_count":1}` {
		t.Errorf("UpdateCustomer = %+v", up)
	}
	up, err = c.UpdateCustomer(ctx, cu.ID, apiclient.CustomerUpdate{Data: json.RawMessage("null")})
	must(t, err)
	if up.Data != nil && string(up.Data) != "null" {
		t.Errorf("data not cleared: %s", up.Data)
	}
	_, err = c.UpdateCustomer(ctx, cu.ID, apiclient.CustomerUpdate{Note: new("x"), IfMatch: apiclient.ETag(cu.UpdatedDatetime)})
	if !apiclient.IsPreconditionFailed(err) {
		t.Errorf("stale If-Match: %v, want 412", err)
	}
	got, err := c.Customer(ctx, cu.ID)
	must(t, err)
	if got.Note != "Prefers chat." {
		t.Errorf("Customer = %+v", got)
	}

	if err := c.DeleteCustomer(ctx, e.customer.ID); !apiclient.IsConflict(err) {
		t.Errorf("deleting a customer with tickets: %v, want 409", err)
	}
	must(t, c.DeleteCustomer(ctx, cu.ID))
	if _, err := c.Customer(ctx, cu.ID); !apiclient.IsNotFound(err) {
		t.Errorf("Customer after delete: %v, want 404", err)
	}
}

// TestErrors checks the error answers parse into *Error with their fields.
func TestErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(t)

	// 400 with per-field problems, including a nested message's.
	_, err := c.CreateTicket(ctx, apiclient.NewTicket{Subject: "x", Status: "pending",
		Messages: []apiclient.NewMessage{{Subject: "no body"}}})
	if !apiclient.IsInvalid(err) {
		t.Fatalf("invalid ticket: %v, want 400", err)
	}
	ae := apiError(t, err)
	want := map[string][]string{
		"customer":              {"an id or an email is required"},
		"status":                {"must be open or closed"},
		"messages[0].body_text": {"a body_text or body_html is required"},
	}
	if ae.Code != apiclient.CodeInvalid || ae.Message != "Some fields are invalid." || fmt.Sprint(ae.Fields) != fmt.Sprint(want) {
		t.Errorf("400 = %#v", ae)
	}
	if s := ae.Error(); !strings.Contains(s, "POST /api/tickets: 400 invalid") || !strings.Contains(s, "status: must be open or closed") {
		t.Errorf("Error() = %q", s)
	}

	// 403 insufficient scope, from a key that may only read tickets.
	ro := e.client(t, apiclient.WithAPIKey(e.owner.Email, e.apiKey(t, valet.ScopeTicketsRead)))
	yielded := 0
	for _, err := range ro.Customers(ctx, apiclient.CustomerListOptions{}) {
		yielded++
		if !apiclient.IsForbidden(err) {
			t.Fatalf("Customers without scope: %v, want 403", err)
		}
		ae := apiError(t, err)
		if ae.Code != apiclient.CodeInsufficientScope || fmt.Sprint(ae.Fields["scope"]) != "[customers:read is required]" {
			t.Errorf("403 = %#v", ae)
		}
	}
	if yielded != 1 {
		t.Errorf("iterator yielded %d times, want the error once", yielded)
	}
	if _, err := ro.Ticket(ctx, e.ticket.ID); err != nil {
		t.Errorf("Ticket with tickets:read: %v", err)
	}

	// 401: a key that does not exist, sent as Bearer and as Basic.
	for _, opt := range []apiclient.Option{
		apiclient.WithAPIKey("", "vak_unknown"),
		apiclient.WithAPIKey(e.owner.Email, "vak_unknown"),
	} {
		_, err := e.client(t, opt).Account(ctx)
		if !apiclient.IsUnauthorized(err) || apiError(t, err).Code != apiclient.CodeUnauthorized {
			t.Errorf("unknown key: %v, want 401", err)
		}
	}
	// The right key with another user's email is refused too.
	if _, err := e.client(t, apiclient.WithAPIKey("someone@else.example", e.key)).Account(ctx); !apiclient.IsUnauthorized(err) {
		t.Errorf("key with a wrong email: %v, want 401", err)
	}
	// A key sent as Bearer works.
	if _, err := e.client(t, apiclient.WithAPIKey("", e.key)).Account(ctx); err != nil {
		t.Errorf("key as Bearer: %v", err)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()
	for i := range 3 {
		e.newTicket(t, e.customer, fmt.Sprintf("More %d", i))
	}

	// The fixture made customer-created, ticket-created and
	// ticket-message-created; each ticket since made two more.
	var all []valet.Event
	for ev, err := range c.Events(ctx, apiclient.EventListOptions{PageSize: 2}) {
		must(t, err)
		all = append(all, ev)
	}
	if len(all) != 9 || all[0].Type != valet.EventCustomerCreated || all[1].Type != valet.EventTicketCreated {
		t.Fatalf("Events = %d events: %+v", len(all), all)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Errorf("event ids not increasing: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	var tk valet.Ticket
	if err := json.Unmarshal(all[1].Data, &tk); err != nil || tk.ID != e.ticket.ID || all[1].ObjectType != "Ticket" {
		t.Errorf("ticket-created data = %s (%v)", all[1].Data, err)
	}

	var created []int64
	for ev, err := range c.Events(ctx, apiclient.EventListOptions{After: all[1].ID, Types: []string{valet.EventTicketCreated}}) {
		must(t, err)
		created = append(created, ev.ObjectID)
	}
	if len(created) != 3 {
		t.Errorf("ticket-created after the first = %v, want 3", created)
	}

	// Breaking early.
	n := 0
	for _, err := range c.Events(ctx, apiclient.EventListOptions{PageSize: 1}) {
		must(t, err)
		if n++; n == 2 {
			break
		}
	}

	p, err := c.EventsPage(ctx, apiclient.EventListOptions{After: all[6].ID, PageSize: 2})
	must(t, err)
	if len(p.Events) != 2 || p.LastID != all[8].ID || !p.More {
		t.Errorf("EventsPage = %+v", p)
	}
	p, err = c.EventsPage(ctx, apiclient.EventListOptions{After: p.LastID})
	must(t, err)
	if len(p.Events) != 0 || p.LastID != all[8].ID || p.More {
		t.Errorf("EventsPage at the end = %+v", p)
	}

	// A long poll returns as soon as an event is written.
	done := make(chan *apiclient.EventPage, 1)
	go func() {
		p, err := c.EventsPage(ctx, apiclient.EventListOptions{After: all[8].ID, Wait: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- p
	}()
	_, err = c.CreateCustomer(ctx, apiclient.NewCustomer{Name: "Late"})
	must(t, err)
	if p := <-done; p == nil || len(p.Events) != 1 || p.Events[0].Type != valet.EventCustomerCreated {
		t.Errorf("long poll = %+v", p)
	}

	if _, err := c.EventsPage(ctx, apiclient.EventListOptions{Types: []string{"nope"}}); !apiclient.IsInvalid(err) {
		t.Errorf("unknown type: %v, want 400", err)
	}
}

func TestIntegrations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()

	in, secret, err := c.CreateIntegration(ctx, apiclient.NewIntegration{Name: "Hub", URL: "https://hub.example.com/webhooks",
		Triggers: []string{valet.EventTicketCreated, valet.EventTicketMessageCreated}})
	must(t, err)
	if !strings.HasPrefix(secret, valet.PrefixWebhookSecret) || in.ID == 0 || in.Type != "http" || in.Name != "Hub" ||
		in.HTTP.URL != "https://hub.example.com/webhooks" || in.HTTP.Method != "POST" || in.Status != valet.IntegrationActive ||
		!in.HTTP.Triggers[valet.EventTicketCreated] || in.HTTP.Triggers[valet.EventTicketUpdated] || in.SecretHint == "" ||
		!strings.HasSuffix(secret, strings.TrimPrefix(in.SecretHint, "…")) {
		t.Errorf("CreateIntegration = %+v, secret %q", in, secret)
	}

	list, err := c.Integrations(ctx)
	must(t, err)
	if len(list) != 1 || list[0].ID != in.ID {
		t.Errorf("Integrations = %+v", list)
	}
	got, err := c.Integration(ctx, in.ID)
	must(t, err)
	if got.Name != "Hub" || got.CreatedByUserID == nil || *got.CreatedByUserID != e.owner.ID {
		t.Errorf("Integration = %+v", got)
	}

	up, err := c.UpdateIntegration(ctx, in.ID, apiclient.IntegrationUpdate{Name: new("Hub 2"),
		Triggers: []string{valet.EventTicketUpdated}, Status: new(valet.IntegrationDisabled)})
	must(t, err)
	if up.Name != "Hub 2" || up.HTTP.URL != in.HTTP.URL || !up.HTTP.Triggers[valet.EventTicketUpdated] ||
		up.HTTP.Triggers[valet.EventTicketCreated] || up.Status != valet.IntegrationDisabled || up.DisabledDatetime == nil {
		t.Errorf("UpdateIntegration = %+v", up)
	}
	up, err = c.UpdateIntegration(ctx, in.ID, apiclient.IntegrationUpdate{URL: new("https://hub.example.com/v2"), Status: new(valet.IntegrationActive)})
	must(t, err)
	if up.HTTP.URL != "https://hub.example.com/v2" || !up.HTTP.Triggers[valet.EventTicketUpdated] || up.Status != valet.IntegrationActive {
		t.Errorf("UpdateIntegration(url) = %+v", up)
	}

	_, err = c.UpdateIntegration(ctx, in.ID, apiclient.IntegrationUpdate{Triggers: []string{"ticket-exploded"}})
	if ae := apiError(t, err); ae.StatusCode != 400 || len(ae.Fields["http.triggers"]) == 0 {
		t.Errorf("unknown trigger: %#v", ae)
	}
	_, _, err = c.CreateIntegration(ctx, apiclient.NewIntegration{URL: "http://hub.example.com/", Triggers: []string{valet.EventTicketCreated}})
	if ae := apiError(t, err); ae.StatusCode != 400 || len(ae.Fields["http.url"]) == 0 {
		t.Errorf("plain http URL: %#v", ae)
	}

	ds, err := c.Deliveries(ctx, in.ID, 10)
	must(t, err)
	if len(ds) != 0 {
		t.Errorf("Deliveries = %+v", ds)
	}

	must(t, c.DeleteIntegration(ctx, in.ID))
	if _, err := c.Integration(ctx, in.ID); !apiclient.IsNotFound(err) {
		t.Errorf("Integration after delete: %v, want 404", err)
	}
	if _, err := c.Deliveries(ctx, in.ID, 0); !apiclient.IsNotFound(err) {
		t.Errorf("Deliveries after delete: %v, want 404", err)
	}
}
