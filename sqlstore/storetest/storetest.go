// Package storetest is the conformance suite of valet.Store: every backend
// runs the same cases with Run, so SQLite and PostgreSQL behave alike down to
// error codes, ordering and event ids.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// Run runs every case against stores made by open. open returns a fresh,
// empty store for each case and closes it when tb ends.
func Run(t *testing.T, open func(testing.TB) valet.Store) {
	cases := []struct {
		name string
		fn   func(*testing.T, valet.Store)
	}{
		{"Ping", testPing},
		{"Accounts", testAccounts},
		{"Users", testUsers},
		{"Members", testMembers},
		{"Customers", testCustomers},
		{"CustomerUpdate", testCustomerUpdate},
		{"CustomerDelete", testCustomerDelete},
		{"CustomerList", testCustomerList},
		{"TicketCreate", testTicketCreate},
		{"TicketUpdate", testTicketUpdate},
		{"TicketDelete", testTicketDelete},
		{"TicketList", testTicketList},
		{"TicketPagination", testTicketPagination},
		{"Messages", testMessages},
		{"Tags", testTags},
		{"Events", testEvents},
		{"EventsAtomic", testEventsAtomic},
		{"APIKeys", testAPIKeys},
		{"AccessTokens", testAccessTokens},
		{"RemovedMember", testRemovedMember},
		{"Sessions", testSessions},
		{"Integrations", testIntegrations},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentUpdates", testConcurrentUpdates},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, open(t))
		})
	}
}

var ctx = context.Background()

// fixture is an account with an owner, an agent and a customer: the cast of
// most cases. Two fixtures in one store give cross-account checks.
type fixture struct {
	s        valet.Store
	account  *valet.Account
	owner    *valet.User
	agent    *valet.User
	customer *valet.Customer
}

func newFixture(t *testing.T, s valet.Store, name string) *fixture {
	t.Helper()
	f := &fixture{s: s, account: &valet.Account{Name: name, DisplayName: strings.ToUpper(name)}}
	must(t, s.CreateAccount(ctx, f.account))
	f.owner = &valet.User{Email: "owner@" + name + ".test", Name: "Owner of " + name, PasswordHash: "hash"}
	must(t, s.CreateUser(ctx, f.owner))
	must(t, s.AddMember(ctx, f.account.ID, f.owner.ID, valet.RoleOwner))
	f.agent = &valet.User{Email: "agent@" + name + ".test", Name: "Agent of " + name}
	must(t, s.CreateUser(ctx, f.agent))
	must(t, s.AddMember(ctx, f.account.ID, f.agent.ID, valet.RoleAgent))
	f.customer = f.newCustomer(t, "first")
	return f
}

func (f *fixture) newCustomer(t *testing.T, name string) *valet.Customer {
	t.Helper()
	c := &valet.Customer{AccountID: f.account.ID, Email: name + "@customer.test", Name: name}
	must(t, f.s.CreateCustomer(ctx, c))
	return c
}

func (f *fixture) newTicket(t *testing.T, subject string, mod ...func(*valet.Ticket)) *valet.Ticket {
	t.Helper()
	tk := &valet.Ticket{AccountID: f.account.ID, Subject: subject, Customer: valet.PersonRef{ID: f.customer.ID}}
	for _, m := range mod {
		m(tk)
	}
	must(t, f.s.CreateTicket(ctx, tk, []*valet.Message{{Public: true, BodyText: "Hello about " + subject}}))
	return tk
}

// lastEventID returns the id of the account's newest event (0 if none), so a
// case can look at the events its next step appends.
func (f *fixture) lastEventID(t *testing.T) int64 {
	t.Helper()
	var last int64
	for {
		evs, err := f.s.ListEvents(ctx, f.account.ID, valet.EventFilter{After: last, Limit: valet.MaxLimit})
		must(t, err)
		if len(evs) == 0 {
			return last
		}
		last = evs[len(evs)-1].ID
	}
}

// eventsAfter returns the account's events after id (at most 100).
func (f *fixture) eventsAfter(t *testing.T, after int64) []valet.Event {
	t.Helper()
	evs, err := f.s.ListEvents(ctx, f.account.ID, valet.EventFilter{After: after, Limit: valet.MaxLimit})
	must(t, err)
	return evs
}

// eventTypes lists the types of evs, for compact comparisons.
func eventTypes(evs []valet.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type + ":" + e.ObjectType
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// wantCode fails unless err carries the valet error code want.
func wantCode(t testing.TB, err error, want string) {
	t.Helper()
	if got := valet.ErrorCode(err); got != want {
		t.Fatalf("error = %v (code %q), want code %q", err, got, want)
	}
}

// wantField fails unless err is EINVALID with a problem on field.
func wantField(t testing.TB, err error, field string) {
	t.Helper()
	wantCode(t, err, valet.EINVALID)
	if len(valet.ErrorFields(err)[field]) == 0 {
		t.Fatalf("error %v has no problem on %q: %v", err, field, valet.ErrorFields(err))
	}
}

func wantEqual[T any](t testing.TB, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("\n got: %s\nwant: %s", dump(got), dump(want))
	}
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

// wantTime checks that a stored time is in UTC, whole microseconds, and
// recent (the store's clock is the system clock in this suite).
func wantTime(t testing.TB, what string, got time.Time) {
	t.Helper()
	if got.Location() != time.UTC || got.Truncate(time.Microsecond) != got {
		t.Fatalf("%s = %v: want UTC truncated to microseconds", what, got)
	}
	if d := time.Since(got); d < -time.Second || d > time.Minute {
		t.Fatalf("%s = %v: not the time of the change", what, got)
	}
}

func testPing(t *testing.T, s valet.Store) {
	must(t, s.Ping(ctx))
}
