package storetest

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/valethq/valet"
)

func testCustomers(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	before := a.lastEventID(t)

	c := &valet.Customer{AccountID: a.account.ID, Email: " Jo@Shop.TEST", Firstname: "Jo", Lastname: "Doe",
		ExternalID: "cus_1", Language: "fr", Timezone: "Europe/Paris", Note: "VIP",
		Data: json.RawMessage(`{ "orders": [1, 2],  "plan": "gold" }`)}
	must(t, s.CreateCustomer(ctx, c))
	if c.ID == 0 || c.Email != "jo@shop.test" || c.Name != "Jo Doe" {
		t.Fatalf("created %+v", c)
	}
	if string(c.Data) != `{"orders":[1,2],"plan":"gold"}` {
		t.Fatalf("data = %s, want it compacted", c.Data)
	}
	wantTime(t, "created_datetime", c.CreatedDatetime)
	got, err := s.FindCustomer(ctx, a.account.ID, c.ID)
	must(t, err)
	wantEqual(t, got, c)

	evs := a.eventsAfter(t, before)
	if len(evs) != 1 || evs[0].Type != valet.EventCustomerCreated || evs[0].ObjectType != "Customer" ||
		evs[0].ObjectID != c.ID {
		t.Fatalf("events = %s", dump(evs))
	}
	var data valet.Customer
	must(t, json.Unmarshal(evs[0].Data, &data))
	data.AccountID = c.AccountID
	wantEqual(t, &data, c)

	// Another account's customer is not found, whatever the id.
	_, err = s.FindCustomer(ctx, b.account.ID, c.ID)
	wantCode(t, err, valet.ENOTFOUND)

	tests := []struct {
		name     string
		customer valet.Customer
		code     string
	}{
		{"email taken", valet.Customer{AccountID: a.account.ID, Email: "JO@shop.test"}, valet.ECONFLICT},
		{"email free in another account", valet.Customer{AccountID: b.account.ID, Email: "jo@shop.test"}, ""},
		{"no email", valet.Customer{AccountID: a.account.ID, Name: "Walk-in"}, ""},
		{"no email again", valet.Customer{AccountID: a.account.ID, Name: "Walk-in"}, ""},
		{"nothing", valet.Customer{AccountID: a.account.ID}, valet.EINVALID},
		{"bad email", valet.Customer{AccountID: a.account.ID, Email: "jo@"}, valet.EINVALID},
		{"data not an object", valet.Customer{AccountID: a.account.ID, Name: "X", Data: json.RawMessage(`[1]`)}, valet.EINVALID},
		{"no such account", valet.Customer{AccountID: b.account.ID + 1000, Name: "X"}, valet.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, s.CreateCustomer(ctx, &tt.customer), tt.code)
		})
	}
	// Only the successful creations appended events.
	if n := len(a.eventsAfter(t, before)); n != 3 {
		t.Fatalf("%d events in alpha, want 3", n)
	}

	_, err = s.FindCustomer(ctx, a.account.ID, c.ID+1000)
	wantCode(t, err, valet.ENOTFOUND)
}

func testCustomerUpdate(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	other := a.newCustomer(t, "other")
	before := a.lastEventID(t)

	got, err := s.UpdateCustomer(ctx, a.account.ID, a.customer.ID, func(c *valet.Customer) error {
		c.Name = "Renamed"
		c.Email = "NEW@customer.test"
		c.Data = json.RawMessage(`{"a": 1}`)
		c.ID = 999999 // not the closure's to change
		return nil
	})
	must(t, err)
	if got.ID != a.customer.ID || got.Name != "Renamed" || got.Email != "new@customer.test" || string(got.Data) != `{"a":1}` {
		t.Fatalf("updated %+v", got)
	}
	if !got.CreatedDatetime.Equal(a.customer.CreatedDatetime) || got.UpdatedDatetime.Before(a.customer.UpdatedDatetime) {
		t.Fatalf("datetimes %v %v", got.CreatedDatetime, got.UpdatedDatetime)
	}
	found, err := s.FindCustomer(ctx, a.account.ID, a.customer.ID)
	must(t, err)
	wantEqual(t, found, got)
	evs := a.eventsAfter(t, before)
	wantEqual(t, eventTypes(evs), []string{"customer-updated:Customer"})

	// A change that changes nothing writes nothing.
	_, err = s.UpdateCustomer(ctx, a.account.ID, a.customer.ID, func(c *valet.Customer) error { return nil })
	must(t, err)
	before = a.lastEventID(t)

	stale := valet.Errorf(valet.EPRECONDITION, "stale")
	failures := []struct {
		name      string
		accountID int64
		id        int64
		update    func(*valet.Customer) error
		code      string
	}{
		{"closure error", a.account.ID, a.customer.ID, func(c *valet.Customer) error { c.Name = "X"; return stale }, valet.EPRECONDITION},
		{"email of another customer", a.account.ID, a.customer.ID, func(c *valet.Customer) error { c.Email = other.Email; return nil }, valet.ECONFLICT},
		{"invalid", a.account.ID, a.customer.ID, func(c *valet.Customer) error { c.Email = "x@"; return nil }, valet.EINVALID},
		{"another account", b.account.ID, a.customer.ID, func(c *valet.Customer) error { c.Name = "X"; return nil }, valet.ENOTFOUND},
		{"missing", a.account.ID, a.customer.ID + 1000, func(c *valet.Customer) error { return nil }, valet.ENOTFOUND},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UpdateCustomer(ctx, tt.accountID, tt.id, tt.update)
			wantCode(t, err, tt.code)
		})
	}
	_, err = s.UpdateCustomer(ctx, a.account.ID, a.customer.ID, func(c *valet.Customer) error { return stale })
	if !errors.Is(err, stale) {
		t.Fatalf("closure error not returned as is: %v", err)
	}
	after, err := s.FindCustomer(ctx, a.account.ID, a.customer.ID)
	must(t, err)
	wantEqual(t, after, found)
	if evs := a.eventsAfter(t, before); len(evs) != 0 {
		t.Fatalf("failed updates appended %s", dump(evs))
	}
}

func testCustomerDelete(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	lone := a.newCustomer(t, "lone")
	a.newTicket(t, "Where is my order?")
	before := a.lastEventID(t)

	wantCode(t, s.DeleteCustomer(ctx, b.account.ID, lone.ID), valet.ENOTFOUND)
	wantCode(t, s.DeleteCustomer(ctx, a.account.ID, a.customer.ID), valet.ECONFLICT)
	must(t, s.DeleteCustomer(ctx, a.account.ID, lone.ID))
	_, err := s.FindCustomer(ctx, a.account.ID, lone.ID)
	wantCode(t, err, valet.ENOTFOUND)
	wantCode(t, s.DeleteCustomer(ctx, a.account.ID, lone.ID), valet.ENOTFOUND)

	evs := a.eventsAfter(t, before)
	wantEqual(t, eventTypes(evs), []string{"customer-deleted:Customer"})
	if evs[0].ObjectID != lone.ID {
		t.Fatalf("event = %s", dump(evs[0]))
	}
	// Ids are not reused: a new customer gets a new one.
	again := a.newCustomer(t, "lone")
	if again.ID <= lone.ID {
		t.Fatalf("new customer id %d <= deleted %d", again.ID, lone.ID)
	}
}

func testCustomerList(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	b.newCustomer(t, "betaonly")
	want := []int64{a.customer.ID}
	for _, n := range []string{"c1", "c2", "c3", "c4"} {
		want = append(want, a.newCustomer(t, n).ID)
	}
	ext := &valet.Customer{AccountID: a.account.ID, Name: "External", ExternalID: "shop-42"}
	must(t, s.CreateCustomer(ctx, ext))
	want = append(want, ext.ID)

	collect := func(f valet.CustomerFilter) []int64 {
		t.Helper()
		var ids []int64
		for {
			p, err := s.ListCustomers(ctx, a.account.ID, f)
			must(t, err)
			for _, c := range p.Data {
				ids = append(ids, c.ID)
			}
			if p.NextCursor == "" {
				return ids
			}
			f.Cursor = p.NextCursor
		}
	}
	reversed := func(ids []int64) []int64 {
		out := make([]int64, len(ids))
		for i, id := range ids {
			out[len(ids)-1-i] = id
		}
		return out
	}
	wantEqual(t, collect(valet.CustomerFilter{ListOptions: valet.ListOptions{Limit: 4}}), reversed(want))
	wantEqual(t, collect(valet.CustomerFilter{ListOptions: valet.ListOptions{Limit: 4, OrderBy: "created_datetime:asc"}}), want)
	wantEqual(t, collect(valet.CustomerFilter{ListOptions: valet.ListOptions{Limit: 2, OrderBy: "updated_datetime"}}), want)

	wantEqual(t, collect(valet.CustomerFilter{Email: "C2@customer.test"}), []int64{want[2]})
	wantEqual(t, collect(valet.CustomerFilter{ExternalID: "shop-42"}), []int64{ext.ID})
	if ids := collect(valet.CustomerFilter{Email: "betaonly@customer.test"}); len(ids) != 0 {
		t.Fatalf("alpha lists beta's customer: %v", ids)
	}

	_, err := s.ListCustomers(ctx, a.account.ID, valet.CustomerFilter{ListOptions: valet.ListOptions{OrderBy: "email"}})
	wantField(t, err, "order_by")
	_, err = s.ListCustomers(ctx, a.account.ID, valet.CustomerFilter{ListOptions: valet.ListOptions{Limit: 101}})
	wantField(t, err, "limit")
}
