package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

var backends = []struct {
	name string
	open func(testing.TB) *sqlstore.Store
}{
	{"sqlite", func(tb testing.TB) *sqlstore.Store { return sqltest.SQLite(tb) }},
	{"postgres", func(tb testing.TB) *sqlstore.Store { return sqltest.Postgres(tb) }},
}

// seedAccount makes an account with an agent and n customers.
func seedAccount(t testing.TB, s *sqlstore.Store, name string, n int) (*valet.Account, *valet.User, []*valet.Customer) {
	t.Helper()
	ctx := context.Background()
	a := &valet.Account{Name: name}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	u := &valet.User{Email: "agent@" + name + ".test", Name: "Agent"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, a.ID, u.ID, valet.RoleAgent); err != nil {
		t.Fatal(err)
	}
	var cs []*valet.Customer
	for i := range n {
		c := &valet.Customer{AccountID: a.ID, Email: fmt.Sprintf("c%d@%s.test", i, name), Name: fmt.Sprint("Customer ", i)}
		if err := s.CreateCustomer(ctx, c); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return a, u, cs
}

func TestImportTickets(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t)
			a, agent, cs := seedAccount(t, s, "acme", 7)
			other, _, otherCs := seedAccount(t, s, "other", 1)
			evs, err := s.ListEvents(ctx, a.ID, valet.EventFilter{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			lastEvent := evs[len(evs)-1].ID

			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var tickets []*valet.Ticket
			for i := range 1203 {
				tk := &valet.Ticket{Subject: fmt.Sprint("Imported ", i), Customer: valet.PersonRef{ID: cs[i%len(cs)].ID},
					Excerpt: "Where is my parcel?", CreatedDatetime: base.Add(time.Duration(i) * time.Minute)}
				if i%3 == 0 {
					tk.Status = valet.StatusClosed
				}
				if i%4 == 0 {
					tk.AssigneeUser = &valet.PersonRef{ID: agent.ID}
				}
				if i%5 == 0 {
					tk.Tags = []valet.Tag{{Name: "vip"}, {Name: "imported"}}
				}
				tickets = append(tickets, tk)
			}
			if err := s.ImportTickets(ctx, a.ID, tickets); err != nil {
				t.Fatal(err)
			}
			for i, tk := range tickets {
				if tk.ID == 0 || (i > 0 && tk.ID <= tickets[i-1].ID) {
					t.Fatalf("ticket %d has id %d", i, tk.ID)
				}
			}
			for _, i := range []int{0, 1, 499, 500, 1202} {
				got, err := s.FindTicket(ctx, a.ID, tickets[i].ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Customer.Email == "" || got.CreatedDatetime != tickets[i].CreatedDatetime ||
					len(got.Tags) != len(tickets[i].Tags) || (i%5 == 0 && got.Tags[0].Name != "imported") {
					t.Fatalf("ticket %d: stored %+v, imported %+v", i, got, tickets[i])
				}
				if !reflect.DeepEqual(got, tickets[i]) {
					t.Fatalf("ticket %d:\nstored   %+v\nimported %+v", i, got, tickets[i])
				}
			}
			// All of them page out, newest first.
			var ids []int64
			f := valet.TicketFilter{ListOptions: valet.ListOptions{Limit: 100}}
			for {
				p, err := s.ListTickets(ctx, a.ID, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, tk := range p.Data {
					ids = append(ids, tk.ID)
				}
				if p.NextCursor == "" {
					break
				}
				f.Cursor = p.NextCursor
			}
			if len(ids) != len(tickets) || ids[0] != tickets[len(tickets)-1].ID {
				t.Fatalf("listed %d tickets", len(ids))
			}
			p, err := s.ListTickets(ctx, a.ID, valet.TicketFilter{Status: valet.StatusClosed, AssigneeUserID: agent.ID,
				ListOptions: valet.ListOptions{Limit: 100}})
			if err != nil || len(p.Data) != 100 {
				t.Fatalf("filtered: %d, %v", len(p.Data), err)
			}

			if err := s.Analyze(ctx); err != nil {
				t.Fatal(err)
			}
			// No events; and a ticket created later gets a higher id.
			evs, err = s.ListEvents(ctx, a.ID, valet.EventFilter{After: lastEvent})
			if err != nil || len(evs) != 0 {
				t.Fatalf("import appended %d events (%v)", len(evs), err)
			}
			later := &valet.Ticket{AccountID: a.ID, Subject: "Later", Customer: valet.PersonRef{ID: cs[0].ID}}
			if err := s.CreateTicket(ctx, later, nil); err != nil {
				t.Fatal(err)
			}
			if later.ID <= tickets[len(tickets)-1].ID {
				t.Fatalf("id %d reused", later.ID)
			}

			// A customer of another account fails the whole call.
			bad := []*valet.Ticket{
				{Subject: "ok", Customer: valet.PersonRef{ID: cs[0].ID}},
				{Subject: "not ours", Customer: valet.PersonRef{ID: otherCs[0].ID}},
			}
			if err := s.ImportTickets(ctx, a.ID, bad); valet.ErrorCode(err) != valet.EINVALID {
				t.Fatalf("err = %v", err)
			}
			bad = []*valet.Ticket{{Subject: "by email", Customer: valet.PersonRef{Email: "x@y.test"}}}
			if err := s.ImportTickets(ctx, a.ID, bad); valet.ErrorCode(err) != valet.EINVALID {
				t.Fatalf("err = %v", err)
			}
			bad = []*valet.Ticket{{Subject: "other's agent", Customer: valet.PersonRef{ID: cs[0].ID}, AssigneeUser: &valet.PersonRef{ID: agent.ID + 1}}}
			if err := s.ImportTickets(ctx, a.ID, bad); valet.ErrorCode(err) != valet.EINVALID {
				t.Fatalf("err = %v", err)
			}
			p, err = s.ListTickets(ctx, other.ID, valet.TicketFilter{})
			if err != nil || len(p.Data) != 0 {
				t.Fatalf("other account has %d tickets", len(p.Data))
			}
			if p, _ := s.ListTickets(ctx, a.ID, valet.TicketFilter{ListOptions: valet.ListOptions{Limit: 1}}); p.Data[0].ID != later.ID {
				t.Fatal("a failed import stored tickets")
			}
		})
	}
}

// TestLargeList imports VALET_BENCH_TICKETS tickets (say 1000000) into one
// account and reports the import time and the latency of listing pages of
// 30 with the orders and filters the API offers. It is skipped unless the
// variable is set.
//
//	VALET_BENCH_TICKETS=1000000 go test -run TestLargeList -v -timeout 30m ./sqlstore/
func TestLargeList(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VALET_BENCH_TICKETS"))
	if n <= 0 {
		t.Skip("VALET_BENCH_TICKETS is not set")
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t)
			a, agent, cs := seedAccount(t, s, "acme", 1000)
			start := time.Now()
			base := time.Now().Add(-time.Duration(n) * time.Minute)
			const batch = 10000
			for done := 0; done < n; done += batch {
				var tickets []*valet.Ticket
				for i := done; i < min(n, done+batch); i++ {
					tk := &valet.Ticket{Subject: fmt.Sprint("Order #", 100000+i, " has not arrived"),
						Customer: valet.PersonRef{ID: cs[i*7919%len(cs)].ID}, Excerpt: "Hi, my order has not arrived yet, can you check?",
						CreatedDatetime: base.Add(time.Duration(i) * time.Minute)}
					tk.UpdatedDatetime = tk.CreatedDatetime.Add(time.Duration(i%97) * time.Hour)
					if i%10 != 0 {
						tk.Status = valet.StatusClosed
					}
					if i%3 == 0 {
						tk.AssigneeUser = &valet.PersonRef{ID: agent.ID}
					}
					if i%4 == 0 {
						tk.Tags = []valet.Tag{{Name: "shipping"}}
					}
					tickets = append(tickets, tk)
				}
				if err := s.ImportTickets(ctx, a.ID, tickets); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%s: imported %d tickets in %v", b.name, n, time.Since(start).Round(time.Millisecond))
			start = time.Now()
			if err := s.Analyze(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: analyzed in %v", b.name, time.Since(start).Round(time.Millisecond))

			cases := []struct {
				name string
				f    valet.TicketFilter
			}{
				{"default (created desc)", valet.TicketFilter{}},
				{"created asc", valet.TicketFilter{ListOptions: valet.ListOptions{OrderBy: "created_datetime:asc"}}},
				{"updated desc", valet.TicketFilter{ListOptions: valet.ListOptions{OrderBy: "updated_datetime:desc"}}},
				{"status open", valet.TicketFilter{Status: valet.StatusOpen}},
				{"status closed", valet.TicketFilter{Status: valet.StatusClosed}},
				{"customer", valet.TicketFilter{CustomerID: cs[500].ID}},
				{"customer + open", valet.TicketFilter{CustomerID: cs[500].ID, Status: valet.StatusOpen}},
				{"assignee", valet.TicketFilter{AssigneeUserID: agent.ID}},
				{"unassigned", valet.TicketFilter{Unassigned: true}},
			}
			for _, c := range cases {
				// Walk 20 pages deep, then repeat from the start, timing each page.
				var lat []time.Duration
				for round := 0; round < 10; round++ {
					f := c.f
					for page := 0; page < 20; page++ {
						t0 := time.Now()
						p, err := s.ListTickets(ctx, a.ID, f)
						lat = append(lat, time.Since(t0))
						if err != nil {
							t.Fatal(err)
						}
						if p.NextCursor == "" {
							break
						}
						f.Cursor = p.NextCursor
					}
				}
				slices.Sort(lat)
				t.Logf("%s: %-24s pages %4d  p50 %8v  p99 %8v  max %8v", b.name, c.name, len(lat),
					lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond),
					lat[len(lat)-1].Round(time.Microsecond))
			}
		})
	}
}
