package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/valethq/valet"
)

func testEvents(t *testing.T, s valet.Store) {
	b := newFixture(t, s, "beta")
	a := newFixture(t, s, "alpha")
	base := a.lastEventID(t)
	tk := a.newTicket(t, "Events")
	b.newTicket(t, "Beta's events")
	_, err := s.SetTicketTags(ctx, a.account.ID, tk.ID, valet.TagsAdd, []string{"x"})
	must(t, err)
	must(t, s.CreateMessage(ctx, &valet.Message{AccountID: a.account.ID, TicketID: tk.ID, Public: true, BodyText: "More"}))
	must(t, s.DeleteTicket(ctx, a.account.ID, tk.ID))

	all := a.eventsAfter(t, base)
	wantEqual(t, eventTypes(all), []string{"ticket-created:Ticket", "ticket-message-created:TicketMessage",
		"ticket-updated:Ticket", "ticket-message-created:TicketMessage", "ticket-deleted:Ticket"})
	for i, e := range all {
		if i > 0 && e.ID <= all[i-1].ID {
			t.Fatalf("event ids do not increase: %d after %d", e.ID, all[i-1].ID)
		}
		wantTime(t, "event created_datetime", e.CreatedDatetime)
		if e.AccountID != a.account.ID || !json.Valid(e.Data) || e.Data[0] != '{' {
			t.Fatalf("event %s", dump(e))
		}
	}

	// Beta's events are beta's only, and alpha's ids tell beta nothing.
	bevs, err := s.ListEvents(ctx, b.account.ID, valet.EventFilter{})
	must(t, err)
	for _, e := range bevs {
		if e.AccountID != b.account.ID {
			t.Fatalf("beta sees %s", dump(e))
		}
	}
	if len(bevs) != 3 { // the fixture's customer, the ticket and its message
		t.Fatalf("beta has %d events: %s", len(bevs), dump(eventTypes(bevs)))
	}

	filters := []struct {
		name string
		f    valet.EventFilter
		want []int64
	}{
		{"after", valet.EventFilter{After: all[2].ID}, []int64{all[3].ID, all[4].ID}},
		{"limit", valet.EventFilter{After: base, Limit: 2}, []int64{all[0].ID, all[1].ID}},
		{"types", valet.EventFilter{After: base, Types: []string{valet.EventTicketMessageCreated, valet.EventTicketDeleted}},
			[]int64{all[1].ID, all[3].ID, all[4].ID}},
		{"after the last", valet.EventFilter{After: all[4].ID + 1000}, []int64{}},
	}
	for _, tt := range filters {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := s.ListEvents(ctx, a.account.ID, tt.f)
			must(t, err)
			ids := []int64{}
			for _, e := range evs {
				ids = append(ids, e.ID)
			}
			wantEqual(t, ids, tt.want)
		})
	}
	for _, f := range []valet.EventFilter{{Types: []string{"ticket-exploded"}}, {Limit: -1}, {Limit: 101}, {After: -1}} {
		_, err := s.ListEvents(ctx, a.account.ID, f)
		wantCode(t, err, valet.EINVALID)
	}
}

// testEventsAtomic checks that a change and its event are one: what fails
// leaves no event, what succeeds leaves exactly its events.
func testEventsAtomic(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	taken := a.newCustomer(t, "taken")
	tk := a.newTicket(t, "Atomic")
	before := a.lastEventID(t)

	fail := fmt.Errorf("closure says no")
	steps := []func() error{
		func() error {
			return s.CreateCustomer(ctx, &valet.Customer{AccountID: a.account.ID, Email: taken.Email})
		},
		func() error {
			_, err := s.UpdateCustomer(ctx, a.account.ID, a.customer.ID, func(c *valet.Customer) error { c.Email = taken.Email; return nil })
			return err
		},
		func() error {
			_, err := s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Status = valet.StatusClosed; return fail })
			return err
		},
		func() error { return s.DeleteCustomer(ctx, a.account.ID, a.customer.ID) },
		func() error {
			_, err := s.SetTicketTags(ctx, a.account.ID, tk.ID, valet.TagsAdd, []string{"ok", strings.Repeat("x", 200)})
			return err
		},
		func() error {
			return s.CreateTicket(ctx, &valet.Ticket{AccountID: a.account.ID, Subject: "x", Customer: valet.PersonRef{Email: "fresh@customer.test"},
				Tags: []valet.Tag{{Name: "new-tag"}}}, []*valet.Message{{FromAgent: true, BodyText: "no sender"}})
		},
	}
	for i, step := range steps {
		if err := step(); err == nil {
			t.Fatalf("step %d succeeded", i)
		}
	}
	if evs := a.eventsAfter(t, before); len(evs) != 0 {
		t.Fatalf("failed changes appended %s", dump(evs))
	}
	got, err := s.FindTicket(ctx, a.account.ID, tk.ID)
	must(t, err)
	wantEqual(t, got, tk)
}

// testConcurrentWriters has 20 goroutines create tickets in one account at
// once — some for a customer that does not exist yet, named by the same
// email — while a consumer follows the feed with after=ID. No write may
// fail, and the consumer must see every event exactly once: an event that
// commits after a higher id was read would be skipped for good.
func testConcurrentWriters(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	start := a.lastEventID(t)
	const writers, each = 20, 3

	var consumed []valet.Event
	done := make(chan struct{})
	consumerErr := make(chan error, 1)
	go func() {
		after := start
		finished := false
		for {
			select {
			case <-done:
				finished = true
			default:
			}
			evs, err := s.ListEvents(ctx, a.account.ID, valet.EventFilter{After: after, Limit: valet.MaxLimit})
			if err != nil {
				consumerErr <- err
				return
			}
			consumed = append(consumed, evs...)
			if len(evs) > 0 {
				after = evs[len(evs)-1].ID
			} else if finished {
				consumerErr <- nil
				return
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				ref := valet.PersonRef{ID: a.customer.ID}
				if w%2 == 0 {
					ref = valet.PersonRef{Email: "rush@customer.test"}
				}
				tk := &valet.Ticket{AccountID: a.account.ID, Subject: fmt.Sprintf("w%d-%d", w, i), Customer: ref}
				errs <- s.CreateTicket(ctx, tk, []*valet.Message{{Public: true, BodyText: "at once"}})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	close(done)
	must(t, <-consumerErr)

	all := []valet.Event{}
	for after := start; ; {
		evs := a.eventsAfter(t, after)
		if len(evs) == 0 {
			break
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].ID
	}
	if want := writers*each*2 + 1; len(all) != want {
		t.Fatalf("%d events, want %d (each ticket and message, and the one new customer)", len(all), want)
	}
	if len(consumed) != len(all) {
		t.Fatalf("the consumer saw %d of %d events", len(consumed), len(all))
	}
	for i := range all {
		if consumed[i].ID != all[i].ID || (i > 0 && all[i].ID <= all[i-1].ID) {
			t.Fatalf("event %d: consumed %d, stored %d", i, consumed[i].ID, all[i].ID)
		}
	}
	p, err := s.ListCustomers(ctx, a.account.ID, valet.CustomerFilter{Email: "rush@customer.test"})
	must(t, err)
	if len(p.Data) != 1 {
		t.Fatalf("%d customers for one email", len(p.Data))
	}
}

// testConcurrentUpdates runs read-modify-write changes on one ticket at
// once: none may be lost.
func testConcurrentUpdates(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	tk := a.newTicket(t, "")
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Subject += "x"; return nil })
			errs <- err
		})
		wg.Go(func() {
			_, err := s.SetTicketTags(ctx, a.account.ID, tk.ID, valet.TagsAdd, []string{fmt.Sprint("tag", i)})
			errs <- err
		})
		wg.Go(func() {
			errs <- s.CreateMessage(ctx, &valet.Message{AccountID: a.account.ID, TicketID: tk.ID, Public: true, BodyText: "again"})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	got, err := s.FindTicket(ctx, a.account.ID, tk.ID)
	must(t, err)
	if got.Subject != strings.Repeat("x", n) || len(got.Tags) != n || got.MessagesCount != n+1 {
		t.Fatalf("lost updates: subject %q, %d tags, %d messages", got.Subject, len(got.Tags), got.MessagesCount)
	}
}
