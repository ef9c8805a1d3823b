package storetest

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// walk pages through ListTickets with f until the last page, calling
// between (if not nil) after each page, and returns the ids in the order
// seen and the last page.
func walk(t *testing.T, s valet.Store, accountID int64, f valet.TicketFilter, between func()) ([]int64, *valet.Page[valet.Ticket]) {
	t.Helper()
	var ids []int64
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		p, err := s.ListTickets(ctx, accountID, f)
		must(t, err)
		if len(p.Data) > f.Limit && f.Limit > 0 {
			t.Fatalf("page of %d rows, limit %d", len(p.Data), f.Limit)
		}
		for _, tk := range p.Data {
			ids = append(ids, tk.ID)
		}
		if p.NextCursor == "" {
			return ids, p
		}
		if between != nil {
			between()
		}
		f.Cursor = p.NextCursor
	}
}

func testTicketList(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	other := a.newCustomer(t, "other")
	t1 := a.newTicket(t, "one")
	t2 := a.newTicket(t, "two", func(t *valet.Ticket) { t.Customer = valet.PersonRef{ID: other.ID} })
	t3 := a.newTicket(t, "three", func(t *valet.Ticket) { t.AssigneeUser = &valet.PersonRef{ID: a.agent.ID} })
	t4 := a.newTicket(t, "four", func(t *valet.Ticket) { t.Status = valet.StatusClosed })
	b.newTicket(t, "beta's")
	time.Sleep(2 * time.Millisecond)
	since := time.Now()
	time.Sleep(2 * time.Millisecond)
	_, err := s.UpdateTicket(ctx, a.account.ID, t1.ID, func(t *valet.Ticket) error { t.Priority = "urgent"; return nil })
	must(t, err)

	tests := []struct {
		name   string
		filter valet.TicketFilter
		want   []int64
	}{
		{"all, newest first", valet.TicketFilter{}, []int64{t4.ID, t3.ID, t2.ID, t1.ID}},
		{"oldest first", valet.TicketFilter{ListOptions: valet.ListOptions{OrderBy: "created_datetime:asc"}}, []int64{t1.ID, t2.ID, t3.ID, t4.ID}},
		{"recently updated first", valet.TicketFilter{ListOptions: valet.ListOptions{OrderBy: "updated_datetime:desc"}}, []int64{t1.ID, t4.ID, t3.ID, t2.ID}},
		{"open", valet.TicketFilter{Status: valet.StatusOpen}, []int64{t3.ID, t2.ID, t1.ID}},
		{"closed", valet.TicketFilter{Status: valet.StatusClosed}, []int64{t4.ID}},
		{"customer", valet.TicketFilter{CustomerID: other.ID}, []int64{t2.ID}},
		{"customer of another account", valet.TicketFilter{CustomerID: b.customer.ID}, nil},
		{"assignee", valet.TicketFilter{AssigneeUserID: a.agent.ID}, []int64{t3.ID}},
		{"unassigned", valet.TicketFilter{Unassigned: true}, []int64{t4.ID, t2.ID, t1.ID}},
		{"updated since", valet.TicketFilter{UpdatedSince: since}, []int64{t1.ID}},
		{"open for a customer", valet.TicketFilter{Status: valet.StatusOpen, CustomerID: a.customer.ID}, []int64{t3.ID, t1.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.filter.Limit = 2
			got, _ := walk(t, s, a.account.ID, tt.filter, nil)
			wantEqual(t, got, tt.want)
		})
	}
	// Listed tickets are the same as found ones.
	p, err := s.ListTickets(ctx, a.account.ID, valet.TicketFilter{})
	must(t, err)
	found, err := s.FindTicket(ctx, a.account.ID, t3.ID)
	must(t, err)
	wantEqual(t, p.Data[1], *found)

	bad := []struct {
		name   string
		filter valet.TicketFilter
		field  string
	}{
		{"status", valet.TicketFilter{Status: "pending"}, "status"},
		{"order", valet.TicketFilter{ListOptions: valet.ListOptions{OrderBy: "subject"}}, "order_by"},
		{"limit", valet.TicketFilter{ListOptions: valet.ListOptions{Limit: 500}}, "limit"},
		{"cursor", valet.TicketFilter{ListOptions: valet.ListOptions{Cursor: "garbage"}}, "cursor"},
		{"cursor of another order", valet.TicketFilter{ListOptions: valet.ListOptions{Cursor: p.NextCursor + "x", OrderBy: "updated_datetime"}}, "cursor"},
	}
	for _, tt := range bad {
		t.Run("invalid "+tt.name, func(t *testing.T) {
			_, err := s.ListTickets(ctx, a.account.ID, tt.filter)
			wantField(t, err, tt.field)
		})
	}
}

// testTicketPagination walks every order forwards while tickets are being
// created between pages, then backwards, and checks that each row present
// at the start is seen exactly once, in order.
func testTicketPagination(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	type row struct {
		id               int64
		created, updated int64
	}
	var rows []row
	for i := range 23 {
		tk := a.newTicket(t, fmt.Sprint("ticket ", i))
		rows = append(rows, row{tk.ID, tk.CreatedDatetime.UnixMicro(), tk.UpdatedDatetime.UnixMicro()})
		if i%5 == 0 {
			b.newTicket(t, "noise")
		}
	}
	// Touch a few so that updated order differs from created order.
	for _, i := range []int{3, 17, 0} {
		tk, err := s.UpdateTicket(ctx, a.account.ID, rows[i].id, func(t *valet.Ticket) error { t.Priority = "low"; return nil })
		must(t, err)
		rows[i].updated = tk.UpdatedDatetime.UnixMicro()
	}

	for _, order := range []string{"created_datetime:desc", "created_datetime:asc", "updated_datetime:desc", "updated_datetime:asc"} {
		t.Run(order, func(t *testing.T) {
			field, dir, _ := cutOrder(order)
			key := func(r row) int64 {
				if field == "updated_datetime" {
					return r.updated
				}
				return r.created
			}
			want := slices.Clone(rows)
			slices.SortFunc(want, func(x, y row) int {
				c := cmp.Or(cmp.Compare(key(x), key(y)), cmp.Compare(x.id, y.id))
				if dir == "desc" {
					return -c
				}
				return c
			})
			wantIDs := make([]int64, len(want))
			for i, r := range want {
				wantIDs[i] = r.id
			}
			existing := map[int64]bool{}
			for _, id := range wantIDs {
				existing[id] = true
			}

			f := valet.TicketFilter{ListOptions: valet.ListOptions{Limit: 4, OrderBy: order}}
			n := 0
			got, last := walk(t, s, a.account.ID, f, func() {
				n++
				a.newTicket(t, fmt.Sprint("inserted while paging ", n))
			})
			// Rows inserted while paging may appear (at the end of an
			// ascending walk) but every row that existed appears once.
			seen := map[int64]int{}
			var old []int64
			for _, id := range got {
				seen[id]++
				if seen[id] > 1 {
					t.Fatalf("ticket %d listed twice: %v", id, got)
				}
				if existing[id] {
					old = append(old, id)
				}
			}
			wantEqual(t, old, wantIDs)

			// Back from the last page with prev cursors: the same rows, in
			// reverse page order.
			var back [][]int64
			p := last
			for p.PrevCursor != "" {
				f.Cursor = p.PrevCursor
				var err error
				p, err = s.ListTickets(ctx, a.account.ID, f)
				must(t, err)
				if len(p.Data) != 4 && p.PrevCursor != "" {
					t.Fatalf("prev page of %d rows before the first", len(p.Data))
				}
				var ids []int64
				for _, tk := range p.Data {
					ids = append(ids, tk.ID)
				}
				back = append(back, ids)
			}
			var backIDs []int64
			for i := len(back) - 1; i >= 0; i-- {
				backIDs = append(backIDs, back[i]...)
			}
			lastIDs := make([]int64, len(last.Data))
			for i, tk := range last.Data {
				lastIDs[i] = tk.ID
			}
			backIDs = append(backIDs, lastIDs...)
			// Walking back covers everything walked forward, plus what was
			// inserted since at the head of the list.
			if !slices.Equal(backIDs[len(backIDs)-len(got):], got) {
				t.Fatalf("backwards %v\nforwards %v", backIDs, got)
			}
			if first := p.Data[0].ID; first != backIDs[0] || p.PrevCursor != "" {
				t.Fatalf("first page %v", p.Data)
			}
		})
	}

	// A cursor carries no account: used in beta it pages beta's rows.
	p, err := s.ListTickets(ctx, a.account.ID, valet.TicketFilter{ListOptions: valet.ListOptions{Limit: 2}})
	must(t, err)
	bp, err := s.ListTickets(ctx, b.account.ID, valet.TicketFilter{ListOptions: valet.ListOptions{Cursor: p.NextCursor}})
	must(t, err)
	for _, tk := range bp.Data {
		if tk.AccountID != b.account.ID {
			t.Fatalf("beta paged into alpha's ticket %d", tk.ID)
		}
	}
}

func cutOrder(s string) (field, dir string, ok bool) {
	for i := range s {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "asc", false
}
