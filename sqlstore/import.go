package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/valethq/valet"
)

// ImportTickets bulk-loads tickets into an account, for seeding and for
// benchmark data sets (a million tickets in calls of 5,000-10,000). Each
// call is one transaction of multi-row INSERTs.
//
// It is not CreateTicket in bulk: it appends no events and stores no
// messages (MessagesCount is 0; Excerpt is kept as given, so lists look
// real). Each ticket names an existing customer of the account by
// Customer.ID; an AssigneeUser must be a member; tags are named and created
// as needed. Datetimes that are set are kept (seed data spans months),
// others become now, and opened/closed follow the status when unset. It sets
// each ticket's ID and fills its customer, assignee and tags as stored.
// Errors: EINVALID (a ticket is invalid, or names an unknown customer,
// assignee or tag), and nothing is stored then.
func (s *Store) ImportTickets(ctx context.Context, accountID int64, tickets []*valet.Ticket) error {
	const op = "sqlstore.ImportTickets"
	if len(tickets) == 0 {
		return nil
	}
	tagSet := map[string]bool{}
	for i, t := range tickets {
		t.AccountID = accountID
		if err := t.Validate(); err != nil {
			return s.fail(op, fmt.Errorf("ticket %d: %w", i, err), "")
		}
		if t.Customer.ID == 0 {
			return invalid(op, "customer", fmt.Sprintf("ticket %d: an import names its customer by id", i))
		}
		for _, g := range t.Tags {
			tagSet[strings.TrimSpace(g.Name)] = true
		}
	}
	names := mapKeys(tagSet)
	for chunk := range slices.Chunk(names, valet.MaxLimit) {
		if _, err := tagNames(chunk); err != nil {
			return s.fail(op, err, "")
		}
	}

	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()

	customers, err := tx.importCustomers(ctx, accountID, tickets)
	if err != nil {
		return s.fail(op, err, "")
	}
	assignees := map[int64]*valet.PersonRef{}
	for _, t := range tickets {
		if t.AssigneeUser == nil || t.AssigneeUser.ID == 0 {
			t.AssigneeUser = nil
			continue
		}
		id := t.AssigneeUser.ID
		if _, ok := assignees[id]; !ok {
			ref, err := tx.resolveAssignee(ctx, accountID, t.AssigneeUser)
			if err != nil {
				return s.fail(op, err, "")
			}
			assignees[id] = ref
		}
		t.AssigneeUser = assignees[id]
	}
	tagIDs := map[string]int64{}
	for chunk := range slices.Chunk(names, valet.MaxLimit) {
		tags, err := tx.ensureTags(ctx, accountID, chunk)
		if err != nil {
			return s.fail(op, err, "")
		}
		for _, g := range tags {
			tagIDs[g.Name] = g.ID
		}
	}

	ids, err := s.d.reserveIDs(ctx, tx.Tx, "tickets", len(tickets))
	if err != nil {
		return s.fail(op, err, "")
	}
	if len(ids) != len(tickets) {
		return s.fail(op, errors.New("reserved fewer ids than tickets"), "")
	}
	var links [][2]int64 // (ticket, tag)
	for i, t := range tickets {
		t.ID = ids[i]
		t.Customer = customers[t.Customer.ID]
		t.MessagesCount = 0
		tags := []valet.Tag{}
		for _, g := range t.Tags {
			name := strings.TrimSpace(g.Name)
			if !slices.ContainsFunc(tags, func(x valet.Tag) bool { return x.Name == name }) {
				tags = append(tags, valet.Tag{ID: tagIDs[name], Name: name})
				links = append(links, [2]int64{t.ID, tagIDs[name]})
			}
		}
		slices.SortFunc(tags, func(a, b valet.Tag) int { return strings.Compare(a.Name, b.Name) })
		t.Tags = tags
		importDatetimes(t, tx.now)
	}

	// Rows go in statements of s.d.bulkMaxParams parameters; the full ones
	// are prepared once and run again and again.
	batches := newBatcher(tx)
	defer batches.close()
	rows := s.d.bulkMaxParams / importTicketColumns
	for chunk := range slices.Chunk(tickets, rows) {
		query, args, err := importTicketsInsert(s.d, chunk)
		if err == nil {
			err = batches.exec(ctx, len(chunk) == rows, query, args)
		}
		if err != nil {
			return s.fail(op, err, "")
		}
	}
	for chunk := range slices.Chunk(links, s.d.bulkMaxParams/2) {
		values := make([]string, len(chunk))
		args := make([]any, 0, 2*len(chunk))
		for i, l := range chunk {
			values[i] = "(" + s.d.bulkParams(2*i+1, 2) + ")"
			args = append(args, l[0], l[1])
		}
		err := batches.exec(ctx, len(chunk) == s.d.bulkMaxParams/2,
			`INSERT INTO ticket_tags (ticket_id, tag_id) VALUES `+strings.Join(values, ", "), args)
		if err != nil {
			return s.fail(op, err, "")
		}
	}
	if err := tx.commit(ctx); err != nil {
		return s.fail(op, err, "")
	}
	return s.analyzeImports(ctx, len(tickets))
}

// batcher runs the INSERTs of a bulk load: the full batches of a query
// through one statement prepared in the transaction, the last, shorter one
// directly.
type batcher struct {
	tx    *tx
	stmts map[string]*sql.Stmt
}

func newBatcher(tx *tx) *batcher { return &batcher{tx: tx, stmts: map[string]*sql.Stmt{}} }

func (b *batcher) exec(ctx context.Context, full bool, query string, args []any) error {
	if !full {
		_, err := b.tx.ExecContext(ctx, query, args...)
		return err
	}
	st, ok := b.stmts[query]
	if !ok {
		var err error
		if st, err = b.tx.PrepareContext(ctx, query); err != nil {
			return err
		}
		b.stmts[query] = st
	}
	_, err := st.ExecContext(ctx, args...)
	return err
}

func (b *batcher) close() {
	for _, st := range b.stmts {
		st.Close()
	}
}

// analyzeImports analyzes the ticket tables whenever the tickets imported
// through s double (from 10,000): a handful of ANALYZEs for a million
// tickets, so that the planner knows the data a benchmark will list.
func (s *Store) analyzeImports(ctx context.Context, n int) error {
	s.importMu.Lock()
	s.imported += n
	due := s.imported >= max(s.nextAnalysis, 10000)
	if due {
		s.nextAnalysis = 2 * s.imported
	}
	s.importMu.Unlock()
	if !due {
		return nil
	}
	return s.analyze(ctx, "tickets", "ticket_tags", "tags")
}

// importCustomers loads the customers the tickets name, and fails with
// EINVALID if one is not the account's.
func (tx *tx) importCustomers(ctx context.Context, accountID int64, tickets []*valet.Ticket) (map[int64]valet.PersonRef, error) {
	seen := map[int64]bool{}
	var want []int64
	for _, t := range tickets {
		if !seen[t.Customer.ID] {
			seen[t.Customer.ID] = true
			want = append(want, t.Customer.ID)
		}
	}
	found := make(map[int64]valet.PersonRef, len(want))
	for chunk := range slices.Chunk(want, 1000) {
		rows, err := tx.QueryContext(ctx, `SELECT id, email, name FROM customers WHERE account_id = `+
			tx.s.d.placeholder(1)+` AND id IN (`+tx.s.d.bulkParams(2, len(chunk))+`)`,
			append([]any{accountID}, anySlice(chunk)...)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var c valet.PersonRef
			if err := rows.Scan(&c.ID, &c.Email, &c.Name); err != nil {
				rows.Close()
				return nil, err
			}
			found[c.ID] = c
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for _, id := range want {
		if _, ok := found[id]; !ok {
			return nil, valet.Invalid(map[string][]string{"customer": {fmt.Sprintf("customer %d does not exist in this account", id)}})
		}
	}
	return found, nil
}

// importDatetimes keeps the datetimes a seed set and fills the rest.
func importDatetimes(t *valet.Ticket, now time.Time) {
	norm := func(v time.Time) time.Time { return v.UTC().Truncate(time.Microsecond) }
	if t.CreatedDatetime.IsZero() {
		t.CreatedDatetime = now
	}
	t.CreatedDatetime = norm(t.CreatedDatetime)
	if t.UpdatedDatetime.IsZero() {
		t.UpdatedDatetime = t.CreatedDatetime
	}
	t.UpdatedDatetime = norm(t.UpdatedDatetime)
	if t.OpenedDatetime == nil && t.Status == valet.StatusOpen {
		t.OpenedDatetime = &t.CreatedDatetime
	}
	if t.ClosedDatetime == nil && t.Status == valet.StatusClosed {
		t.ClosedDatetime = &t.UpdatedDatetime
	}
	if t.Status == valet.StatusOpen {
		t.ClosedDatetime = nil
	}
	for _, p := range []**time.Time{&t.OpenedDatetime, &t.ClosedDatetime} {
		if *p != nil {
			v := norm(**p)
			*p = &v
		}
	}
}

// importTicketColumns is the number of columns importTicketsInsert sets.
const importTicketColumns = 16

func importTicketsInsert(d *dialect, chunk []*valet.Ticket) (string, []any, error) {
	const cols = importTicketColumns
	var b strings.Builder
	b.WriteString(`INSERT INTO tickets (id, account_id, subject, status, priority, channel, via, customer_id,
		assignee_user_id, tags, excerpt, messages_count, created_at, updated_at, opened_at, closed_at) VALUES `)
	args := make([]any, 0, cols*len(chunk))
	for i, t := range chunk {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + d.bulkParams(i*cols+1, cols) + ")")
		tags, err := json.Marshal(t.Tags)
		if err != nil {
			return "", nil, err
		}
		var assignee int64
		if t.AssigneeUser != nil {
			assignee = t.AssigneeUser.ID
		}
		args = append(args, t.ID, t.AccountID, t.Subject, string(t.Status), t.Priority, t.Channel, t.Via,
			t.Customer.ID, zeroNull(assignee), string(tags), t.Excerpt, 0, micros(t.CreatedDatetime),
			micros(t.UpdatedDatetime), nullMicros(t.OpenedDatetime), nullMicros(t.ClosedDatetime))
	}
	return b.String(), args, nil
}

func mapKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func anySlice[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}
