package storetest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/valethq/valet"
)

func testTicketCreate(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	before := a.lastEventID(t)

	actx := valet.WithActor(ctx, valet.Actor{UserID: a.agent.ID})
	tk := &valet.Ticket{AccountID: a.account.ID, Subject: "  Refund for order #12 ", Channel: "email",
		Customer: valet.PersonRef{ID: a.customer.ID}, AssigneeUser: &valet.PersonRef{ID: a.agent.ID},
		Tags: []valet.Tag{{Name: "refund"}, {Name: " vip "}, {Name: "refund"}}}
	msgs := []*valet.Message{
		{Public: true, BodyText: "I want   my money\nback."},
		{BodyText: "Checking with the warehouse.", FromAgent: true},
	}
	must(t, s.CreateTicket(actx, tk, msgs))
	if tk.ID == 0 || tk.Subject != "Refund for order #12" || tk.Status != valet.StatusOpen || tk.Priority != "normal" ||
		tk.MessagesCount != 2 || tk.Excerpt != "I want my money back." || tk.ClosedDatetime != nil {
		t.Fatalf("created %s", dump(tk))
	}
	wantEqual(t, tk.Customer, a.customer.Ref())
	wantEqual(t, tk.AssigneeUser, &valet.PersonRef{ID: a.agent.ID, Email: a.agent.Email, Name: a.agent.Name})
	if len(tk.Tags) != 2 || tk.Tags[0].Name != "refund" || tk.Tags[1].Name != "vip" || tk.Tags[0].ID == 0 {
		t.Fatalf("tags = %s", dump(tk.Tags))
	}
	wantTime(t, "created_datetime", tk.CreatedDatetime)
	if tk.OpenedDatetime == nil || !tk.OpenedDatetime.Equal(tk.CreatedDatetime) || !tk.UpdatedDatetime.Equal(tk.CreatedDatetime) {
		t.Fatalf("datetimes %s", dump(tk))
	}
	for _, m := range msgs {
		if m.ID == 0 || m.TicketID != tk.ID {
			t.Fatalf("message %s", dump(m))
		}
	}
	if msgs[0].Sender != a.customer.Ref() || msgs[0].Channel != "email" || msgs[0].SentDatetime == nil {
		t.Fatalf("customer message %s", dump(msgs[0]))
	}
	if msgs[1].Sender.ID != a.agent.ID || msgs[1].Channel != "internal-note" || msgs[1].SentDatetime != nil {
		t.Fatalf("note %s", dump(msgs[1]))
	}
	got, err := s.FindTicket(ctx, a.account.ID, tk.ID)
	must(t, err)
	wantEqual(t, got, tk)
	_, err = s.FindTicket(ctx, b.account.ID, tk.ID)
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.FindTicket(ctx, a.account.ID, tk.ID+1000)
	wantCode(t, err, valet.ENOTFOUND)

	evs := a.eventsAfter(t, before)
	wantEqual(t, eventTypes(evs), []string{"ticket-created:Ticket", "ticket-message-created:TicketMessage",
		"ticket-message-created:TicketMessage"})
	var data valet.Ticket
	must(t, json.Unmarshal(evs[0].Data, &data))
	data.AccountID = tk.AccountID
	wantEqual(t, &data, tk)
	if evs[0].UserID == nil || *evs[0].UserID != a.agent.ID || evs[0].AppID != nil {
		t.Fatalf("actor of %s", dump(evs[0]))
	}
	if evs[1].ObjectID != msgs[0].ID || evs[2].ObjectID != msgs[1].ID {
		t.Fatalf("message events %s", dump(evs))
	}

	// A customer named by email is found, or created with an event.
	before = a.lastEventID(t)
	byEmail := &valet.Ticket{AccountID: a.account.ID, Subject: "By email", Status: valet.StatusClosed,
		Customer: valet.PersonRef{Email: "NEW@Customer.test", Name: "Newcomer"}}
	must(t, s.CreateTicket(ctx, byEmail, nil))
	if byEmail.Customer.ID == 0 || byEmail.Customer.Email != "new@customer.test" || byEmail.Customer.Name != "Newcomer" ||
		byEmail.ClosedDatetime == nil || byEmail.OpenedDatetime != nil || byEmail.MessagesCount != 0 {
		t.Fatalf("created %s", dump(byEmail))
	}
	wantEqual(t, eventTypes(a.eventsAfter(t, before)), []string{"customer-created:Customer", "ticket-created:Ticket"})
	again := &valet.Ticket{AccountID: a.account.ID, Subject: "Again", Customer: valet.PersonRef{Email: "new@customer.test"}}
	must(t, s.CreateTicket(ctx, again, nil))
	if again.Customer != byEmail.Customer {
		t.Fatalf("customer %v, want the existing %v", again.Customer, byEmail.Customer)
	}
	// Beta's customer with the same address is beta's own.
	inB := &valet.Ticket{AccountID: b.account.ID, Subject: "B", Customer: valet.PersonRef{Email: "new@customer.test"}}
	must(t, s.CreateTicket(ctx, inB, nil))
	if inB.Customer.ID == byEmail.Customer.ID {
		t.Fatal("beta's ticket got alpha's customer")
	}

	before = a.lastEventID(t)
	failures := []struct {
		name   string
		ticket valet.Ticket
		msgs   []*valet.Message
		field  string
	}{
		{"no customer", valet.Ticket{Subject: "x"}, nil, "customer"},
		{"unknown customer", valet.Ticket{Subject: "x", Customer: valet.PersonRef{ID: 999999}}, nil, "customer"},
		{"customer of another account", valet.Ticket{Subject: "x", Customer: valet.PersonRef{ID: b.customer.ID}}, nil, "customer"},
		{"bad customer email", valet.Ticket{Subject: "x", Customer: valet.PersonRef{Email: "nope"}}, nil, "customer"},
		{"assignee of another account", valet.Ticket{Subject: "x", Customer: valet.PersonRef{ID: a.customer.ID},
			AssigneeUser: &valet.PersonRef{ID: b.agent.ID}}, nil, "assignee_user"},
		{"bad status", valet.Ticket{Subject: "x", Status: "pending", Customer: valet.PersonRef{ID: a.customer.ID}}, nil, "status"},
		{"bad priority", valet.Ticket{Subject: "x", Priority: "meh", Customer: valet.PersonRef{ID: a.customer.ID}}, nil, "priority"},
		{"subject too long", valet.Ticket{Subject: strings.Repeat("x", 999), Customer: valet.PersonRef{ID: a.customer.ID}}, nil, "subject"},
		{"empty tag", valet.Ticket{Subject: "x", Customer: valet.PersonRef{ID: a.customer.ID}, Tags: []valet.Tag{{Name: " "}}}, nil, "tags"},
		{"empty message", valet.Ticket{Subject: "x", Customer: valet.PersonRef{ID: a.customer.ID}},
			[]*valet.Message{{Public: true}}, "messages[0].body_text"},
		{"agent message without a user", valet.Ticket{Subject: "x", Customer: valet.PersonRef{ID: a.customer.ID}},
			[]*valet.Message{{Public: true, FromAgent: true, BodyText: "hi"}}, "messages[0].sender"},
		{"customer's email is new but the message is bad", valet.Ticket{Subject: "x", Customer: valet.PersonRef{Email: "brand-new@customer.test"}},
			[]*valet.Message{{Public: true, BodyText: "fine"}, {Public: true, FromAgent: true, BodyText: "hi", Sender: valet.PersonRef{ID: b.agent.ID}}},
			"messages[1].sender"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			tt.ticket.AccountID = a.account.ID
			wantField(t, s.CreateTicket(ctx, &tt.ticket, tt.msgs), tt.field)
		})
	}
	// Nothing of the failed creations remains: not even the customer made
	// by email before a later step failed.
	if evs := a.eventsAfter(t, before); len(evs) != 0 {
		t.Fatalf("failed creations appended %s", dump(evs))
	}
	cs, err := s.ListCustomers(ctx, a.account.ID, valet.CustomerFilter{Email: "brand-new@customer.test"})
	must(t, err)
	if len(cs.Data) != 0 {
		t.Fatal("a failed ticket creation left its customer behind")
	}
}

func testTicketUpdate(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	other := a.newCustomer(t, "other")
	tk := a.newTicket(t, "Broken zipper")
	before := a.lastEventID(t)
	actx := valet.WithActor(ctx, valet.Actor{UserID: a.owner.ID, AppID: 7})

	got, err := s.UpdateTicket(actx, a.account.ID, tk.ID, func(t *valet.Ticket) error {
		t.Status = valet.StatusClosed
		t.Subject = "Broken zipper on jacket"
		t.Priority = "high"
		t.Customer = valet.PersonRef{ID: other.ID}
		t.AssigneeUser = &valet.PersonRef{ID: a.agent.ID}
		t.MessagesCount = 99 // not the closure's to change
		t.Tags = []valet.Tag{{Name: "ignored"}}
		return nil
	})
	must(t, err)
	if got.Status != valet.StatusClosed || got.Subject != "Broken zipper on jacket" || got.Priority != "high" ||
		got.Customer != other.Ref() || got.AssigneeUser == nil || got.AssigneeUser.Email != a.agent.Email ||
		got.MessagesCount != 1 || len(got.Tags) != 0 || got.ClosedDatetime == nil || !got.ClosedDatetime.Equal(got.UpdatedDatetime) ||
		!got.OpenedDatetime.Equal(tk.CreatedDatetime) || got.UpdatedDatetime.Before(tk.UpdatedDatetime) {
		t.Fatalf("updated %s", dump(got))
	}
	found, err := s.FindTicket(ctx, a.account.ID, tk.ID)
	must(t, err)
	wantEqual(t, found, got)
	evs := a.eventsAfter(t, before)
	wantEqual(t, eventTypes(evs), []string{"ticket-updated:Ticket"})
	if evs[0].UserID == nil || *evs[0].UserID != a.owner.ID || evs[0].AppID == nil || *evs[0].AppID != 7 {
		t.Fatalf("actor of %s", dump(evs[0]))
	}
	var data valet.Ticket
	must(t, json.Unmarshal(evs[0].Data, &data))
	data.AccountID = got.AccountID
	wantEqual(t, &data, got)

	// Reopening sets opened and clears closed; unassigning clears the assignee.
	got, err = s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error {
		t.Status = valet.StatusOpen
		t.AssigneeUser = nil
		return nil
	})
	must(t, err)
	if got.ClosedDatetime != nil || got.OpenedDatetime == nil || !got.OpenedDatetime.Equal(got.UpdatedDatetime) ||
		got.AssigneeUser != nil {
		t.Fatalf("reopened %s", dump(got))
	}

	// No change, no write and no event.
	before = a.lastEventID(t)
	same, err := s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error { return nil })
	must(t, err)
	wantEqual(t, same, got)

	stale := valet.Errorf(valet.EPRECONDITION, "The ticket changed since you loaded it.")
	failures := []struct {
		name      string
		accountID int64
		id        int64
		update    func(*valet.Ticket) error
		code      string
	}{
		{"closure error", a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Subject = "lost"; return stale }, valet.EPRECONDITION},
		{"bad status", a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Status = "snoozed"; return nil }, valet.EINVALID},
		{"customer of another account", a.account.ID, tk.ID, func(t *valet.Ticket) error {
			t.Customer = valet.PersonRef{ID: b.customer.ID}
			return nil
		}, valet.EINVALID},
		{"no customer", a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Customer = valet.PersonRef{Email: "x@y.test"}; return nil }, valet.EINVALID},
		{"assignee of another account", a.account.ID, tk.ID, func(t *valet.Ticket) error {
			t.AssigneeUser = &valet.PersonRef{ID: b.owner.ID}
			return nil
		}, valet.EINVALID},
		{"another account", b.account.ID, tk.ID, func(t *valet.Ticket) error { t.Subject = "mine"; return nil }, valet.ENOTFOUND},
		{"missing", a.account.ID, tk.ID + 1000, func(t *valet.Ticket) error { return nil }, valet.ENOTFOUND},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UpdateTicket(ctx, tt.accountID, tt.id, tt.update)
			wantCode(t, err, tt.code)
		})
	}
	_, err = s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error { return stale })
	if !errors.Is(err, stale) {
		t.Fatalf("closure error not returned as is: %v", err)
	}
	after, err := s.FindTicket(ctx, a.account.ID, tk.ID)
	must(t, err)
	wantEqual(t, after, got)
	if evs := a.eventsAfter(t, before); len(evs) != 0 {
		t.Fatalf("failed or empty updates appended %s", dump(evs))
	}

	// The ticket shows its customer's current name.
	_, err = s.UpdateCustomer(ctx, a.account.ID, other.ID, func(c *valet.Customer) error { c.Name = "Other Renamed"; return nil })
	must(t, err)
	after, err = s.FindTicket(ctx, a.account.ID, tk.ID)
	must(t, err)
	if after.Customer.Name != "Other Renamed" {
		t.Fatalf("customer = %+v", after.Customer)
	}
}

func testTicketDelete(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	tk := a.newTicket(t, "Delete me", func(t *valet.Ticket) { t.Tags = []valet.Tag{{Name: "spam"}} })
	keep := a.newTicket(t, "Keep me", func(t *valet.Ticket) { t.Tags = []valet.Tag{{Name: "spam"}} })
	before := a.lastEventID(t)

	wantCode(t, s.DeleteTicket(ctx, b.account.ID, tk.ID), valet.ENOTFOUND)
	must(t, s.DeleteTicket(ctx, a.account.ID, tk.ID))
	wantCode(t, s.DeleteTicket(ctx, a.account.ID, tk.ID), valet.ENOTFOUND)
	_, err := s.FindTicket(ctx, a.account.ID, tk.ID)
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.ListMessages(ctx, a.account.ID, tk.ID, valet.ListOptions{})
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.ListTicketTags(ctx, a.account.ID, tk.ID)
	wantCode(t, err, valet.ENOTFOUND)
	tags, err := s.ListTicketTags(ctx, a.account.ID, keep.ID)
	must(t, err)
	if len(tags) != 1 || tags[0].Name != "spam" {
		t.Fatalf("other ticket's tags = %v", tags)
	}
	evs := a.eventsAfter(t, before)
	wantEqual(t, eventTypes(evs), []string{"ticket-deleted:Ticket"})
	if evs[0].ObjectID != tk.ID {
		t.Fatalf("event %s", dump(evs[0]))
	}
	// With its ticket gone, the customer can be deleted once keep goes too.
	must(t, s.DeleteTicket(ctx, a.account.ID, keep.ID))
	must(t, s.DeleteCustomer(ctx, a.account.ID, a.customer.ID))
}

func testMessages(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	tk := a.newTicket(t, "Late delivery")
	second := a.newCustomer(t, "second")
	before := a.lastEventID(t)

	actx := valet.WithActor(ctx, valet.Actor{UserID: a.agent.ID})
	reply := &valet.Message{AccountID: a.account.ID, TicketID: tk.ID, Public: true, FromAgent: true,
		BodyHTML: "<p>Sorry &amp; thanks</p><p>It ships today.</p>", Subject: "Re: Late delivery"}
	must(t, s.CreateMessage(actx, reply))
	if reply.ID == 0 || reply.Sender.ID != a.agent.ID || reply.Sender.Email != a.agent.Email || reply.SentDatetime == nil {
		t.Fatalf("reply %s", dump(reply))
	}
	wantTime(t, "created_datetime", reply.CreatedDatetime)
	got, err := s.FindTicket(ctx, a.account.ID, tk.ID)
	must(t, err)
	if got.MessagesCount != 2 || got.Excerpt != "Sorry & thanks It ships today." || !got.UpdatedDatetime.Equal(reply.CreatedDatetime) {
		t.Fatalf("ticket after reply %s", dump(got))
	}

	note := &valet.Message{AccountID: a.account.ID, TicketID: tk.ID, FromAgent: true, Sender: valet.PersonRef{ID: a.owner.ID},
		BodyText: "Customer is a VIP."}
	must(t, s.CreateMessage(ctx, note))
	if note.Sender.ID != a.owner.ID || note.Public || note.Channel != "internal-note" {
		t.Fatalf("note %s", dump(note))
	}
	fromCustomer := &valet.Message{AccountID: a.account.ID, TicketID: tk.ID, Public: true, BodyText: "Thanks!"}
	must(t, s.CreateMessage(ctx, fromCustomer))
	if fromCustomer.Sender != a.customer.Ref() || fromCustomer.FromAgent {
		t.Fatalf("customer message %s", dump(fromCustomer))
	}
	cc := &valet.Message{AccountID: a.account.ID, TicketID: tk.ID, Public: true, BodyText: "Me too",
		Sender: valet.PersonRef{ID: second.ID}}
	must(t, s.CreateMessage(ctx, cc))
	if cc.Sender != second.Ref() {
		t.Fatalf("cc sender %v", cc.Sender)
	}
	got, err = s.FindTicket(ctx, a.account.ID, tk.ID)
	must(t, err)
	if got.MessagesCount != 5 || got.Excerpt != "Me too" {
		t.Fatalf("an internal note must not replace the excerpt: %s", dump(got))
	}
	evs := a.eventsAfter(t, before)
	wantEqual(t, eventTypes(evs), []string{"ticket-message-created:TicketMessage", "ticket-message-created:TicketMessage",
		"ticket-message-created:TicketMessage", "ticket-message-created:TicketMessage"})
	var data valet.Message
	must(t, json.Unmarshal(evs[0].Data, &data))
	data.AccountID = reply.AccountID
	wantEqual(t, &data, reply)

	failures := []struct {
		name string
		m    valet.Message
		code string
	}{
		{"ticket of another account", valet.Message{AccountID: b.account.ID, TicketID: tk.ID, BodyText: "x"}, valet.ENOTFOUND},
		{"missing ticket", valet.Message{AccountID: a.account.ID, TicketID: tk.ID + 1000, BodyText: "x"}, valet.ENOTFOUND},
		{"no body", valet.Message{AccountID: a.account.ID, TicketID: tk.ID, Public: true}, valet.EINVALID},
		{"bad channel", valet.Message{AccountID: a.account.ID, TicketID: tk.ID, BodyText: "x", Channel: "pigeon"}, valet.EINVALID},
		{"agent from another account", valet.Message{AccountID: a.account.ID, TicketID: tk.ID, BodyText: "x", FromAgent: true,
			Sender: valet.PersonRef{ID: b.agent.ID}}, valet.EINVALID},
		{"agent without a user", valet.Message{AccountID: a.account.ID, TicketID: tk.ID, BodyText: "x", FromAgent: true}, valet.EINVALID},
		{"customer of another account", valet.Message{AccountID: a.account.ID, TicketID: tk.ID, BodyText: "x",
			Sender: valet.PersonRef{ID: b.customer.ID}}, valet.EINVALID},
	}
	before = a.lastEventID(t)
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, s.CreateMessage(ctx, &tt.m), tt.code)
		})
	}
	if evs := a.eventsAfter(t, before); len(evs) != 0 {
		t.Fatalf("failed messages appended %s", dump(evs))
	}

	// Oldest first, paged both ways.
	want := []int64{0, reply.ID, note.ID, fromCustomer.ID, cc.ID}
	p, err := s.ListMessages(ctx, a.account.ID, tk.ID, valet.ListOptions{Limit: 2})
	must(t, err)
	want[0] = p.Data[0].ID
	var ids []int64
	for {
		for _, m := range p.Data {
			ids = append(ids, m.ID)
			if m.TicketID != tk.ID {
				t.Fatalf("message of another ticket: %s", dump(m))
			}
		}
		if p.NextCursor == "" {
			break
		}
		p, err = s.ListMessages(ctx, a.account.ID, tk.ID, valet.ListOptions{Limit: 2, Cursor: p.NextCursor})
		must(t, err)
	}
	wantEqual(t, ids, want)
	p, err = s.ListMessages(ctx, a.account.ID, tk.ID, valet.ListOptions{OrderBy: "created_datetime:desc"})
	must(t, err)
	if len(p.Data) != 5 || p.Data[0].ID != cc.ID {
		t.Fatalf("newest first %s", dump(p))
	}
	wantEqual(t, p.Data[1], *fromCustomer)
	_, err = s.ListMessages(ctx, b.account.ID, tk.ID, valet.ListOptions{})
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.ListMessages(ctx, a.account.ID, tk.ID, valet.ListOptions{OrderBy: "subject"})
	wantField(t, err, "order_by")

	// A sender named by email is found by it; the name stored is the
	// person's own, and an email that names nobody, or another person
	// than the id, is refused.
	byEmail := []struct {
		m    valet.Message
		want valet.PersonRef
	}{
		{valet.Message{FromAgent: true, Sender: valet.PersonRef{Email: " " + strings.ToUpper(a.owner.Email), Name: "Someone"}},
			valet.PersonRef{ID: a.owner.ID, Email: a.owner.Email, Name: a.owner.Name}},
		{valet.Message{Public: true, Sender: valet.PersonRef{Email: second.Email, Name: "Someone"}}, second.Ref()},
		{valet.Message{Public: true, Sender: valet.PersonRef{Email: a.customer.Email}}, a.customer.Ref()},
		{valet.Message{Public: true, Sender: valet.PersonRef{ID: second.ID, Email: second.Email}}, second.Ref()},
	}
	for _, c := range byEmail {
		m := c.m
		m.AccountID, m.TicketID, m.BodyText = a.account.ID, tk.ID, "by email"
		must(t, s.CreateMessage(ctx, &m))
		wantEqual(t, m.Sender, c.want)
	}
	elsewhere := b.newCustomer(t, "only-in-another-account")
	for _, sender := range []valet.PersonRef{{Email: "nobody@customer.test"}, {Email: elsewhere.Email},
		{ID: second.ID, Email: a.customer.Email}} {
		m := valet.Message{AccountID: a.account.ID, TicketID: tk.ID, Public: true, BodyText: "x", Sender: sender}
		wantField(t, s.CreateMessage(ctx, &m), "sender")
	}
	for _, sender := range []valet.PersonRef{{Email: "nobody@example.test"}, {Email: b.agent.Email},
		{ID: a.owner.ID, Email: a.agent.Email}} {
		m := valet.Message{AccountID: a.account.ID, TicketID: tk.ID, FromAgent: true, BodyText: "x", Sender: sender}
		wantField(t, s.CreateMessage(ctx, &m), "sender")
	}
}

func testTags(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	tk := a.newTicket(t, "Tag me")
	bt := b.newTicket(t, "Beta's")
	before := a.lastEventID(t)

	names := func(tags []valet.Tag) []string {
		out := []string{}
		for _, g := range tags {
			out = append(out, g.Name)
		}
		return out
	}
	steps := []struct {
		op      valet.TagOp
		names   []string
		want    []string
		changed bool
	}{
		{valet.TagsAdd, []string{"urgent", "billing", " urgent "}, []string{"billing", "urgent"}, true},
		{valet.TagsAdd, []string{"billing"}, []string{"billing", "urgent"}, false},
		{valet.TagsReplace, []string{"vip", "billing"}, []string{"billing", "vip"}, true},
		{valet.TagsRemove, []string{"vip", "never-existed"}, []string{"billing"}, true},
		{valet.TagsRemove, []string{"vip"}, []string{"billing"}, false},
		{valet.TagsReplace, nil, []string{}, true},
		{valet.TagsAdd, []string{"billing"}, []string{"billing"}, true},
	}
	for i, st := range steps {
		last := a.lastEventID(t)
		tags, err := s.SetTicketTags(ctx, a.account.ID, tk.ID, st.op, st.names)
		must(t, err)
		wantEqual(t, names(tags), st.want)
		listed, err := s.ListTicketTags(ctx, a.account.ID, tk.ID)
		must(t, err)
		wantEqual(t, listed, tags)
		found, err := s.FindTicket(ctx, a.account.ID, tk.ID)
		must(t, err)
		wantEqual(t, found.Tags, tags)
		evs := a.eventsAfter(t, last)
		if st.changed != (len(evs) == 1) || (len(evs) == 1 && evs[0].Type != valet.EventTicketUpdated) {
			t.Fatalf("step %d: events %s, changed %v", i, dump(evs), st.changed)
		}
		if len(evs) == 1 {
			var data valet.Ticket
			must(t, json.Unmarshal(evs[0].Data, &data))
			data.AccountID = found.AccountID
			wantEqual(t, &data, found)
		}
	}
	// A tag keeps its id when re-added; beta's tag of the same name is beta's.
	tags, err := s.SetTicketTags(ctx, b.account.ID, bt.ID, valet.TagsAdd, []string{"billing"})
	must(t, err)
	aTags, err := s.ListTicketTags(ctx, a.account.ID, tk.ID)
	must(t, err)
	if tags[0].ID == aTags[0].ID {
		t.Fatal("two accounts share a tag")
	}

	_, err = s.SetTicketTags(ctx, b.account.ID, tk.ID, valet.TagsAdd, []string{"x"})
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.ListTicketTags(ctx, b.account.ID, tk.ID)
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.SetTicketTags(ctx, a.account.ID, tk.ID, valet.TagsAdd, []string{""})
	wantField(t, err, "tags")
	_, err = s.SetTicketTags(ctx, a.account.ID, tk.ID, valet.TagsAdd, []string{strings.Repeat("é", 101)})
	wantField(t, err, "tags")
	if n := len(a.eventsAfter(t, before)); n != 5 {
		t.Fatalf("%d events for 5 changes", n)
	}
}
