package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"html"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valethq/valet"
)

// A ticket is read with its customer and assignee joined in, so that the
// ticket JSON carries their current email and name. The unary + on
// t.customer_id keeps SQLite's planner (once ANALYZE has run) from driving the
// join from customers and sorting the whole account; it is a no-op on
// PostgreSQL.
const ticketSelect = `SELECT t.id, t.account_id, t.subject, t.status, t.priority, t.channel, t.via,
	c.id, c.email, c.name, u.id, u.email, u.name, t.tags, t.excerpt, t.messages_count,
	t.created_at, t.updated_at, t.opened_at, t.closed_at
	FROM tickets t
	JOIN customers c ON c.id = +t.customer_id
	LEFT JOIN users u ON u.id = t.assignee_user_id`

func scanTicket(row scanner, t *valet.Ticket) error {
	var (
		status               string
		assigneeID           sql.NullInt64
		assigneeEmail, aName sql.NullString
		tags                 string
		created, updated     int64
		openedAt, closedAt   sql.NullInt64
	)
	err := row.Scan(&t.ID, &t.AccountID, &t.Subject, &status, &t.Priority, &t.Channel, &t.Via,
		&t.Customer.ID, &t.Customer.Email, &t.Customer.Name, &assigneeID, &assigneeEmail, &aName,
		&tags, &t.Excerpt, &t.MessagesCount, &created, &updated, &openedAt, &closedAt)
	if err != nil {
		return err
	}
	t.Status = valet.TicketStatus(status)
	t.AssigneeUser = nil
	if assigneeID.Valid {
		t.AssigneeUser = &valet.PersonRef{ID: assigneeID.Int64, Email: assigneeEmail.String, Name: aName.String}
	}
	t.Tags = []valet.Tag{}
	if err := json.Unmarshal([]byte(tags), &t.Tags); err != nil {
		return err
	}
	t.CreatedDatetime, t.UpdatedDatetime = fromMicros(created), fromMicros(updated)
	t.OpenedDatetime, t.ClosedDatetime = fromNullMicros(openedAt), fromNullMicros(closedAt)
	return nil
}

const msgTicketNotFound = "Ticket not found."

const findTicketQuery = ticketSelect + ` WHERE t.account_id = $1 AND t.id = $2`

func findTicket(ctx context.Context, q querier, accountID, id int64, lock string) (*valet.Ticket, error) {
	var t valet.Ticket
	err := scanTicket(q.QueryRowContext(ctx, findTicketQuery+lock,
		accountID, id), &t)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// resolveCustomer points ref at an existing customer of the account: by id,
// or by email, creating the customer (and queueing customer-created) when
// the email is new.
func (tx *tx) resolveCustomer(ctx context.Context, accountID int64, ref *valet.PersonRef) error {
	if ref.ID != 0 {
		c, err := findCustomer(ctx, tx, accountID, ref.ID, "")
		if errors.Is(err, sql.ErrNoRows) {
			return valet.Invalid(map[string][]string{"customer": {"does not exist in this account"}})
		}
		if err != nil {
			return err
		}
		*ref = c.Ref()
		return nil
	}
	c := &valet.Customer{AccountID: accountID, Email: ref.Email, Name: ref.Name}
	if err := c.Validate(); err != nil {
		return valet.Invalid(map[string][]string{"customer": {"must have a valid email address"}})
	}
	// ON CONFLICT makes find-or-create safe against a concurrent ticket for
	// the same new address on PostgreSQL: the loser finds the winner's row.
	err := tx.QueryRowContext(ctx, `INSERT INTO customers (account_id, email, name, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (account_id, email) WHERE email <> '' DO NOTHING RETURNING id`,
		accountID, c.Email, c.Name, micros(tx.now)).Scan(&c.ID)
	switch {
	case err == nil:
		c.CreatedDatetime, c.UpdatedDatetime = tx.now, tx.now
		*ref = c.Ref()
		return tx.event(accountID, valet.EventCustomerCreated, "Customer", c.ID, c)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	err = tx.QueryRowContext(ctx, `SELECT id, email, name FROM customers WHERE account_id = $1 AND email = $2`,
		accountID, c.Email).Scan(&ref.ID, &ref.Email, &ref.Name)
	return err
}

// resolveAssignee checks that the assignee is a member of the account and
// fills in their email and name; nil or id 0 means unassigned.
func (tx *tx) resolveAssignee(ctx context.Context, accountID int64, ref *valet.PersonRef) (*valet.PersonRef, error) {
	if ref == nil || ref.ID == 0 {
		return nil, nil
	}
	u, err := findMember(ctx, tx, accountID, ref.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, valet.Invalid(map[string][]string{"assignee_user": {"is not a member of this account"}})
	}
	if err != nil {
		return nil, err
	}
	return &valet.PersonRef{ID: u.ID, Email: u.Email, Name: u.Name}, nil
}

// resolveSender sets m.Sender: an agent (a member, by id, by email or the
// acting user) or a customer of the account (by id or email; by default
// the ticket's). The name stored is always the person's own. An email that
// names nobody is refused rather than dropped, and one sent beside an id
// must be that person's.
func (tx *tx) resolveSender(ctx context.Context, accountID int64, customer valet.PersonRef, m *valet.Message) error {
	want := valet.PersonRef{ID: m.Sender.ID, Email: valet.NormalizeEmail(m.Sender.Email)}
	invalid := func(problem string) error { return valet.Invalid(map[string][]string{"sender": {problem}}) }
	var found valet.PersonRef
	var err error
	switch {
	case m.FromAgent:
		if want.ID == 0 && want.Email == "" {
			want.ID = tx.actor.UserID
		}
		if want.ID == 0 && want.Email == "" {
			return invalid("an agent message needs a sending user")
		}
		found, err = tx.memberRef(ctx, accountID, want)
		if errors.Is(err, sql.ErrNoRows) {
			return invalid("is not a member of this account")
		}
	case want.ID == 0 && (want.Email == "" || want.Email == customer.Email), want.ID == customer.ID:
		found = customer
	default:
		found, err = tx.customerRef(ctx, accountID, want)
		if errors.Is(err, sql.ErrNoRows) {
			return invalid("is not a customer of this account")
		}
	}
	if err != nil {
		return err
	}
	if want.Email != "" && want.Email != found.Email {
		return invalid("email " + want.Email + " is not the email of the sender with id " + strconv.FormatInt(found.ID, 10))
	}
	m.Sender = found
	return nil
}

// memberRef finds a member of the account by ref's id, or else its email.
func (tx *tx) memberRef(ctx context.Context, accountID int64, ref valet.PersonRef) (valet.PersonRef, error) {
	var u valet.PersonRef
	err := tx.QueryRowContext(ctx, `SELECT u.id, u.email, u.name FROM members m JOIN users u ON u.id = m.user_id
		WHERE m.account_id = $1 AND (u.id = $2 OR ($2 = 0 AND u.email = $3))`, accountID, ref.ID, ref.Email).
		Scan(&u.ID, &u.Email, &u.Name)
	return u, err
}

// customerRef finds a customer of the account by ref's id, or else its
// email.
func (tx *tx) customerRef(ctx context.Context, accountID int64, ref valet.PersonRef) (valet.PersonRef, error) {
	var c valet.PersonRef
	err := tx.QueryRowContext(ctx, `SELECT id, email, name FROM customers
		WHERE account_id = $1 AND (id = $2 OR ($2 = 0 AND email = $3 AND email <> ''))`, accountID, ref.ID, ref.Email).
		Scan(&c.ID, &c.Email, &c.Name)
	return c, err
}

// inMessage names the field problems of a new ticket's i-th message as the
// API names them in the request, messages[i].field; other errors pass.
func inMessage(i int, err error) error {
	fields := valet.ErrorFields(err)
	if len(fields) == 0 {
		return err
	}
	nested := make(map[string][]string, len(fields))
	for f, problems := range fields {
		nested["messages["+strconv.Itoa(i)+"]."+f] = problems
	}
	return valet.Invalid(nested)
}

// insertMessage stores a message whose ticket and sender are resolved.
func (tx *tx) insertMessage(ctx context.Context, m *valet.Message) error {
	m.CreatedDatetime = tx.now
	if m.SentDatetime != nil {
		sent := m.SentDatetime.UTC().Truncate(time.Microsecond)
		m.SentDatetime = &sent
	} else if m.Public {
		sent := tx.now
		m.SentDatetime = &sent
	}
	return tx.QueryRowContext(ctx, `INSERT INTO messages (account_id, ticket_id, public, channel, via,
		from_agent, sender_id, sender_email, sender_name, subject, body_text, body_html, created_at, sent_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id`,
		m.AccountID, m.TicketID, m.Public, m.Channel, m.Via, m.FromAgent, m.Sender.ID, m.Sender.Email,
		m.Sender.Name, m.Subject, m.BodyText, m.BodyHTML, micros(m.CreatedDatetime), nullMicros(m.SentDatetime),
	).Scan(&m.ID)
}

// nextExcerpt is the ticket's excerpt after message m: lists show the
// latest public message; an internal note only fills an empty excerpt.
func nextExcerpt(current string, m *valet.Message) string {
	if !m.Public && current != "" {
		return current
	}
	body := m.BodyText
	if strings.TrimSpace(body) == "" {
		body = stripTags(m.BodyHTML)
	}
	return valet.Excerpt(body)
}

// stripTags reduces HTML to its text, enough for an excerpt.
func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
			b.WriteByte(' ')
		case r == '>' && in:
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return html.UnescapeString(b.String())
}

// maxTagLen bounds a tag name, in characters.
const maxTagLen = 100

// tagNames trims, checks and de-duplicates tag names, keeping their order.
func tagNames(names []string) ([]string, error) {
	if len(names) > valet.MaxLimit {
		return nil, valet.Invalid(map[string][]string{"tags": {"at most 100 tags at once"}})
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			return nil, valet.Invalid(map[string][]string{"tags": {"a tag name cannot be empty"}})
		}
		if utf8.RuneCountInString(n) > maxTagLen {
			return nil, valet.Invalid(map[string][]string{"tags": {"a tag name must be at most 100 characters"}})
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// ensureTags creates the account's missing tags among names and returns all
// of them.
func (tx *tx) ensureTags(ctx context.Context, accountID int64, names []string) ([]valet.Tag, error) {
	if len(names) == 0 {
		return nil, nil
	}
	args := []any{accountID, micros(tx.now)}
	values := make([]string, len(names))
	for i, n := range names {
		args = append(args, n)
		values[i] = "($1, $" + itoa(len(args)) + ", $2)"
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO tags (account_id, name, created_at) VALUES `+
		strings.Join(values, ", ")+` ON CONFLICT (account_id, name) DO NOTHING`, args...)
	if err != nil {
		return nil, err
	}
	return tx.findTags(ctx, accountID, names)
}

// findTags returns the account's tags among names.
func (tx *tx) findTags(ctx context.Context, accountID int64, names []string) ([]valet.Tag, error) {
	if len(names) == 0 {
		return nil, nil
	}
	args := []any{accountID}
	for _, n := range names {
		args = append(args, n)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, name FROM tags WHERE account_id = $1 AND name IN (`+
		params(2, len(names))+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var tags []valet.Tag
	for rows.Next() {
		var g valet.Tag
		if err := rows.Scan(&g.ID, &g.Name); err != nil {
			return nil, err
		}
		tags = append(tags, g)
	}
	return tags, rows.Err()
}

func tagIDs(tags []valet.Tag) []int64 {
	ids := make([]int64, len(tags))
	for i, g := range tags {
		ids[i] = g.ID
	}
	return ids
}

func (tx *tx) addTicketTags(ctx context.Context, ticketID int64, tagIDs []int64) error {
	if len(tagIDs) == 0 {
		return nil
	}
	args := []any{ticketID}
	values := make([]string, len(tagIDs))
	for i, id := range tagIDs {
		args = append(args, id)
		values[i] = "($1, $" + itoa(len(args)) + ")"
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO ticket_tags (ticket_id, tag_id) VALUES `+
		strings.Join(values, ", ")+` ON CONFLICT DO NOTHING`, args...)
	return err
}

// syncTags reads the ticket's tags from ticket_tags and writes their JSON
// copy on the ticket row. It reports whether the copy changed.
func (tx *tx) syncTags(ctx context.Context, t *valet.Ticket) (changed bool, err error) {
	rows, err := tx.QueryContext(ctx, `SELECT g.id, g.name FROM ticket_tags tt JOIN tags g ON g.id = tt.tag_id
		WHERE tt.ticket_id = $1 ORDER BY g.name, g.id`, t.ID)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	tags := []valet.Tag{}
	for rows.Next() {
		var g valet.Tag
		if err := rows.Scan(&g.ID, &g.Name); err != nil {
			return false, err
		}
		tags = append(tags, g)
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	if slices.Equal(tags, t.Tags) {
		return false, nil
	}
	t.Tags = tags
	b, err := json.Marshal(tags)
	if err != nil {
		return false, err
	}
	_, err = tx.ExecContext(ctx, `UPDATE tickets SET tags = $1 WHERE id = $2`, string(b), t.ID)
	return true, err
}

// CreateTicket implements valet.TicketService.
func (s *Store) CreateTicket(ctx context.Context, t *valet.Ticket, messages []*valet.Message) error {
	const op = "sqlstore.CreateTicket"
	if err := t.Validate(); err != nil {
		return s.fail(op, err, "")
	}
	for i, m := range messages {
		if err := m.Validate(); err != nil {
			return s.fail(op, inMessage(i, err), "")
		}
	}
	names := make([]string, len(t.Tags))
	for i, g := range t.Tags {
		names[i] = g.Name
	}
	names, err := tagNames(names)
	if err != nil {
		return s.fail(op, err, "")
	}

	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	if err := tx.resolveCustomer(ctx, t.AccountID, &t.Customer); err != nil {
		return s.fail(op, err, "")
	}
	if t.AssigneeUser, err = tx.resolveAssignee(ctx, t.AccountID, t.AssigneeUser); err != nil {
		return s.fail(op, err, "")
	}
	t.Excerpt, t.MessagesCount = "", len(messages)
	for i, m := range messages {
		m.AccountID = t.AccountID
		if err := tx.resolveSender(ctx, t.AccountID, t.Customer, m); err != nil {
			return s.fail(op, inMessage(i, err), "")
		}
		t.Excerpt = nextExcerpt(t.Excerpt, m)
	}
	now := tx.now
	t.CreatedDatetime, t.UpdatedDatetime, t.OpenedDatetime, t.ClosedDatetime = now, now, nil, nil
	if t.Status == valet.StatusClosed {
		t.ClosedDatetime = &now
	} else {
		t.OpenedDatetime = &now
	}
	t.Tags = []valet.Tag{}
	var assignee int64
	if t.AssigneeUser != nil {
		assignee = t.AssigneeUser.ID
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO tickets (account_id, subject, status, priority, channel, via,
		customer_id, assignee_user_id, excerpt, messages_count, created_at, updated_at, opened_at, closed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13) RETURNING id`,
		t.AccountID, t.Subject, string(t.Status), t.Priority, t.Channel, t.Via, t.Customer.ID,
		zeroNull(assignee), t.Excerpt, t.MessagesCount, micros(now), nullMicros(t.OpenedDatetime),
		nullMicros(t.ClosedDatetime)).Scan(&t.ID)
	if err != nil {
		return s.fail(op, err, "")
	}
	for _, m := range messages {
		m.TicketID = t.ID
		if err := tx.insertMessage(ctx, m); err != nil {
			return s.fail(op, err, "")
		}
	}
	tags, err := tx.ensureTags(ctx, t.AccountID, names)
	if err == nil {
		err = tx.addTicketTags(ctx, t.ID, tagIDs(tags))
	}
	if err == nil {
		_, err = tx.syncTags(ctx, t)
	}
	if err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.event(t.AccountID, valet.EventTicketCreated, "Ticket", t.ID, t); err != nil {
		return s.fail(op, err, "")
	}
	for _, m := range messages {
		if err := tx.event(t.AccountID, valet.EventTicketMessageCreated, "TicketMessage", m.ID, m); err != nil {
			return s.fail(op, err, "")
		}
	}
	return s.fail(op, tx.commit(ctx), "")
}

// FindTicket implements valet.TicketService.
func (s *Store) FindTicket(ctx context.Context, accountID, id int64) (*valet.Ticket, error) {
	var t valet.Ticket
	if err := scanTicket(s.queryRow(ctx, findTicketQuery, accountID, id), &t); err != nil {
		return nil, s.fail("sqlstore.FindTicket", err, msgTicketNotFound)
	}
	return &t, nil
}

// ListTickets implements valet.TicketService.
func (s *Store) ListTickets(ctx context.Context, accountID int64, f valet.TicketFilter) (*valet.Page[valet.Ticket], error) {
	const op = "sqlstore.ListTickets"
	query, args, q, err := listTicketsQuery(accountID, f)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	// The query's text is one of a few hundred (filters, order, direction,
	// cursor or not): bounded, so it is prepared and kept.
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	list := make([]valet.Ticket, 0, q.Limit+1)
	for rows.Next() {
		var t valet.Ticket
		if err := scanTicket(rows, &t); err != nil {
			return nil, s.fail(op, err, "")
		}
		list = append(list, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err, "")
	}
	return valet.NewPage(list, q, func(t *valet.Ticket) (int64, int64) {
		return sortKey(q.Order.Field, micros(t.CreatedDatetime), micros(t.UpdatedDatetime)), t.ID
	}), nil
}

// listTicketsQuery returns the SQL and arguments of one page of
// ListTickets, and the resolved list query.
func listTicketsQuery(accountID int64, f valet.TicketFilter) (string, []any, valet.ListQuery, error) {
	const op = "sqlstore.ListTickets"
	q, err := f.Resolve(defaultOrder, "created_datetime", "updated_datetime")
	if err != nil {
		return "", nil, q, err
	}
	where, args := ` WHERE t.account_id = $1`, []any{accountID}
	if f.Status != "" {
		if f.Status != valet.StatusOpen && f.Status != valet.StatusClosed {
			return "", nil, q, invalid(op, "status", "must be open or closed")
		}
		args = append(args, string(f.Status))
		where += ` AND t.status = $` + itoa(len(args))
	}
	if f.CustomerID != 0 {
		args = append(args, f.CustomerID)
		where += ` AND t.customer_id = $` + itoa(len(args))
	}
	if f.AssigneeUserID != 0 {
		args = append(args, f.AssigneeUserID)
		where += ` AND t.assignee_user_id = $` + itoa(len(args))
	}
	if f.Unassigned {
		where += ` AND t.assignee_user_id IS NULL`
	}
	if !f.UpdatedSince.IsZero() {
		args = append(args, micros(f.UpdatedSince))
		where += ` AND t.updated_at >= $` + itoa(len(args))
	}
	cond, order, args := keyset(q, sortColumn("t", q.Order.Field), "t.id", args)
	args = append(args, q.Limit+1)
	return ticketSelect + where + cond + order + ` LIMIT $` + itoa(len(args)), args, q, nil
}

// UpdateTicket implements valet.TicketService.
func (s *Store) UpdateTicket(ctx context.Context, accountID, id int64, update func(*valet.Ticket) error) (*valet.Ticket, error) {
	const op = "sqlstore.UpdateTicket"
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer tx.rollback()
	old, err := findTicket(ctx, tx, accountID, id, s.d.forUpdate("t"))
	if err != nil {
		return nil, s.fail(op, err, msgTicketNotFound)
	}
	t := *old
	t.Tags = slices.Clone(old.Tags)
	if old.AssigneeUser != nil {
		a := *old.AssigneeUser
		t.AssigneeUser = &a
	}
	if err := update(&t); err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, s.fail(op, err, "")
	}
	if t.Customer.ID != old.Customer.ID {
		if t.Customer.ID == 0 {
			return nil, invalid(op, "customer", "an id is required")
		}
		if err := tx.resolveCustomer(ctx, accountID, &t.Customer); err != nil {
			return nil, s.fail(op, err, "")
		}
	}
	var oldAssignee, assignee int64
	if old.AssigneeUser != nil {
		oldAssignee = old.AssigneeUser.ID
	}
	if t.AssigneeUser != nil {
		assignee = t.AssigneeUser.ID
	}
	if assignee != oldAssignee {
		if _, err := tx.resolveAssignee(ctx, accountID, t.AssigneeUser); err != nil {
			return nil, s.fail(op, err, "")
		}
	}
	opened, closed := old.OpenedDatetime, old.ClosedDatetime
	if t.Status != old.Status {
		now := tx.now
		if t.Status == valet.StatusClosed {
			closed = &now
		} else {
			opened, closed = &now, nil
		}
	}
	if t.Subject == old.Subject && t.Status == old.Status && t.Priority == old.Priority &&
		t.Channel == old.Channel && t.Customer.ID == old.Customer.ID && assignee == oldAssignee {
		return old, nil
	}
	_, err = tx.ExecContext(ctx, `UPDATE tickets SET subject = $1, status = $2, priority = $3, channel = $4,
		customer_id = $5, assignee_user_id = $6, opened_at = $7, closed_at = $8, updated_at = $9
		WHERE id = $10`,
		t.Subject, string(t.Status), t.Priority, t.Channel, t.Customer.ID, zeroNull(assignee),
		nullMicros(opened), nullMicros(closed), micros(tx.now), id)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	// Read back rather than patch t: the closure may have touched fields
	// that are not its to change.
	saved, err := findTicket(ctx, tx, accountID, id, "")
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	if err := tx.event(accountID, valet.EventTicketUpdated, "Ticket", id, saved); err != nil {
		return nil, s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return nil, s.fail(op, err, "")
	}
	return saved, nil
}

// DeleteTicket implements valet.TicketService.
func (s *Store) DeleteTicket(ctx context.Context, accountID, id int64) error {
	const op = "sqlstore.DeleteTicket"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	t, err := findTicket(ctx, tx, accountID, id, s.d.forUpdate("t"))
	if err != nil {
		return s.fail(op, err, msgTicketNotFound)
	}
	// Messages and tag links go with it (ON DELETE CASCADE).
	if _, err := tx.ExecContext(ctx, `DELETE FROM tickets WHERE id = $1`, id); err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.event(accountID, valet.EventTicketDeleted, "Ticket", id, t); err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

// CreateMessage implements valet.TicketService.
func (s *Store) CreateMessage(ctx context.Context, m *valet.Message) error {
	const op = "sqlstore.CreateMessage"
	if err := m.Validate(); err != nil {
		return s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	t, err := findTicket(ctx, tx, m.AccountID, m.TicketID, s.d.forUpdate("t"))
	if err != nil {
		return s.fail(op, err, msgTicketNotFound)
	}
	if err := tx.resolveSender(ctx, t.AccountID, t.Customer, m); err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.insertMessage(ctx, m); err != nil {
		return s.fail(op, err, "")
	}
	_, err = tx.ExecContext(ctx, `UPDATE tickets SET messages_count = messages_count + 1, excerpt = $1,
		updated_at = $2 WHERE id = $3`, nextExcerpt(t.Excerpt, m), micros(tx.now), t.ID)
	if err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.event(t.AccountID, valet.EventTicketMessageCreated, "TicketMessage", m.ID, m); err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

const messageColumns = `m.id, m.account_id, m.ticket_id, m.public, m.channel, m.via, m.from_agent,
	m.sender_id, m.sender_email, m.sender_name, m.subject, m.body_text, m.body_html, m.created_at, m.sent_at`

func scanMessage(row scanner, m *valet.Message) error {
	var created int64
	var sent sql.NullInt64
	err := row.Scan(&m.ID, &m.AccountID, &m.TicketID, &m.Public, &m.Channel, &m.Via, &m.FromAgent,
		&m.Sender.ID, &m.Sender.Email, &m.Sender.Name, &m.Subject, &m.BodyText, &m.BodyHTML, &created, &sent)
	if err != nil {
		return err
	}
	m.CreatedDatetime, m.SentDatetime = fromMicros(created), fromNullMicros(sent)
	return nil
}

// ListMessages implements valet.TicketService.
func (s *Store) ListMessages(ctx context.Context, accountID, ticketID int64, opt valet.ListOptions) (*valet.Page[valet.Message], error) {
	const op = "sqlstore.ListMessages"
	q, err := opt.Resolve(valet.Order{Field: "created_datetime"}, "created_datetime")
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	tx, err := s.read(ctx)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer tx.rollback()
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM tickets WHERE account_id = $1 AND id = $2`, accountID, ticketID).Scan(&one)
	if err != nil {
		return nil, s.fail(op, err, msgTicketNotFound)
	}
	cond, order, args := keyset(q, "m.created_at", "m.id", []any{ticketID})
	args = append(args, q.Limit+1)
	rows, err := tx.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages m WHERE m.ticket_id = $1`+
		cond+order+` LIMIT $`+itoa(len(args)), args...)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	var list []valet.Message
	for rows.Next() {
		var m valet.Message
		if err := scanMessage(rows, &m); err != nil {
			return nil, s.fail(op, err, "")
		}
		list = append(list, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err, "")
	}
	return valet.NewPage(list, q, func(m *valet.Message) (int64, int64) { return micros(m.CreatedDatetime), m.ID }), nil
}

// ListTicketTags implements valet.TicketService. It reads the ticket's JSON
// copy of its tags: one indexed row.
func (s *Store) ListTicketTags(ctx context.Context, accountID, ticketID int64) ([]valet.Tag, error) {
	const op = "sqlstore.ListTicketTags"
	var raw string
	err := s.r.QueryRowContext(ctx, `SELECT tags FROM tickets WHERE account_id = $1 AND id = $2`,
		accountID, ticketID).Scan(&raw)
	if err != nil {
		return nil, s.fail(op, err, msgTicketNotFound)
	}
	tags := []valet.Tag{}
	return tags, s.fail(op, json.Unmarshal([]byte(raw), &tags), "")
}

// SetTicketTags implements valet.TicketService.
func (s *Store) SetTicketTags(ctx context.Context, accountID, ticketID int64, tagOp valet.TagOp, names []string) ([]valet.Tag, error) {
	const op = "sqlstore.SetTicketTags"
	names, err := tagNames(names)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	if tagOp != valet.TagsAdd && tagOp != valet.TagsReplace && tagOp != valet.TagsRemove {
		return nil, invalid(op, "op", "must be add, replace or remove")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer tx.rollback()
	t, err := findTicket(ctx, tx, accountID, ticketID, s.d.forUpdate("t"))
	if err != nil {
		return nil, s.fail(op, err, msgTicketNotFound)
	}
	var tags []valet.Tag
	if tagOp == valet.TagsRemove {
		tags, err = tx.findTags(ctx, accountID, names)
	} else {
		tags, err = tx.ensureTags(ctx, accountID, names)
	}
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	ids := tagIDs(tags)
	switch tagOp {
	case valet.TagsRemove:
		if len(ids) > 0 {
			args := []any{ticketID}
			for _, id := range ids {
				args = append(args, id)
			}
			_, err = tx.ExecContext(ctx, `DELETE FROM ticket_tags WHERE ticket_id = $1 AND tag_id IN (`+
				params(2, len(ids))+`)`, args...)
		}
	case valet.TagsReplace:
		args := []any{ticketID}
		keep := ""
		if len(ids) > 0 {
			for _, id := range ids {
				args = append(args, id)
			}
			keep = ` AND tag_id NOT IN (` + params(2, len(ids)) + `)`
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM ticket_tags WHERE ticket_id = $1`+keep, args...)
		if err == nil {
			err = tx.addTicketTags(ctx, ticketID, ids)
		}
	default:
		err = tx.addTicketTags(ctx, ticketID, ids)
	}
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	changed, err := tx.syncTags(ctx, t)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	if !changed {
		return t.Tags, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tickets SET updated_at = $1 WHERE id = $2`, micros(tx.now), ticketID); err != nil {
		return nil, s.fail(op, err, "")
	}
	t.UpdatedDatetime = tx.now
	if err := tx.event(accountID, valet.EventTicketUpdated, "Ticket", ticketID, t); err != nil {
		return nil, s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return nil, s.fail(op, err, "")
	}
	return t.Tags, nil
}
