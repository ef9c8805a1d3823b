package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"

	"github.com/valethq/valet"
)

const customerColumns = `c.id, c.account_id, c.email, c.name, c.firstname, c.lastname, c.external_id,
	c.language, c.timezone, c.note, c.data, c.created_at, c.updated_at`

func scanCustomer(row scanner, c *valet.Customer) error {
	var data sql.NullString
	var created, updated int64
	err := row.Scan(&c.ID, &c.AccountID, &c.Email, &c.Name, &c.Firstname, &c.Lastname, &c.ExternalID,
		&c.Language, &c.Timezone, &c.Note, &data, &created, &updated)
	if err != nil {
		return err
	}
	c.Data = nil
	if data.Valid {
		c.Data = json.RawMessage(data.String)
	}
	c.CreatedDatetime, c.UpdatedDatetime = fromMicros(created), fromMicros(updated)
	return nil
}

const msgCustomerNotFound = "Customer not found."

func findCustomer(ctx context.Context, q querier, accountID, id int64, lock string) (*valet.Customer, error) {
	var c valet.Customer
	err := scanCustomer(q.QueryRowContext(ctx, `SELECT `+customerColumns+` FROM customers c
		WHERE c.account_id = $1 AND c.id = $2`+lock, accountID, id), &c)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// insertCustomer stores a validated customer and queues customer-created.
func (tx *tx) insertCustomer(ctx context.Context, c *valet.Customer) error {
	data, err := compactJSON(c.Data)
	if err != nil {
		return err
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO customers (account_id, email, name, firstname, lastname,
		external_id, language, timezone, note, data, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id`,
		c.AccountID, c.Email, c.Name, c.Firstname, c.Lastname, c.ExternalID, c.Language, c.Timezone,
		c.Note, data, micros(tx.now)).Scan(&c.ID)
	if err != nil {
		return err
	}
	if data.Valid {
		c.Data = json.RawMessage(data.String)
	}
	c.CreatedDatetime, c.UpdatedDatetime = tx.now, tx.now
	return tx.event(c.AccountID, valet.EventCustomerCreated, "Customer", c.ID, c)
}

func (s *Store) customerConflict(op string, err error) error {
	if s.d.isUnique(err) {
		return errorf(op, valet.ECONFLICT, "A customer with this email already exists.", err)
	}
	if s.d.isForeignKey(err) {
		return errorf(op, valet.ENOTFOUND, "Account not found.", err)
	}
	return s.fail(op, err, msgCustomerNotFound)
}

// CreateCustomer implements valet.CustomerService.
func (s *Store) CreateCustomer(ctx context.Context, c *valet.Customer) error {
	const op = "sqlstore.CreateCustomer"
	if err := c.Validate(); err != nil {
		return s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	if err := tx.insertCustomer(ctx, c); err != nil {
		return s.customerConflict(op, err)
	}
	return s.fail(op, tx.commit(ctx), "")
}

// FindCustomer implements valet.CustomerService.
func (s *Store) FindCustomer(ctx context.Context, accountID, id int64) (*valet.Customer, error) {
	c, err := findCustomer(ctx, s.r, accountID, id, "")
	if err != nil {
		return nil, s.fail("sqlstore.FindCustomer", err, msgCustomerNotFound)
	}
	return c, nil
}

// sortColumn maps a list's order field to its column.
func sortColumn(alias, field string) string {
	if field == "updated_datetime" {
		return alias + ".updated_at"
	}
	return alias + ".created_at"
}

func sortKey(field string, created, updated int64) int64 {
	if field == "updated_datetime" {
		return updated
	}
	return created
}

var defaultOrder = valet.Order{Field: "created_datetime", Desc: true}

// ListCustomers implements valet.CustomerService.
func (s *Store) ListCustomers(ctx context.Context, accountID int64, f valet.CustomerFilter) (*valet.Page[valet.Customer], error) {
	const op = "sqlstore.ListCustomers"
	q, err := f.Resolve(defaultOrder, "created_datetime", "updated_datetime")
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	where, args := `c.account_id = $1`, []any{accountID}
	if f.Email != "" {
		args = append(args, valet.NormalizeEmail(f.Email))
		where += ` AND c.email = $` + itoa(len(args))
	}
	if f.ExternalID != "" {
		args = append(args, f.ExternalID)
		where += ` AND c.external_id = $` + itoa(len(args))
	}
	cond, order, args := keyset(q, sortColumn("c", q.Order.Field), "c.id", args)
	args = append(args, q.Limit+1)
	rows, err := s.r.QueryContext(ctx, `SELECT `+customerColumns+` FROM customers c WHERE `+
		where+cond+order+` LIMIT $`+itoa(len(args)), args...)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	var list []valet.Customer
	for rows.Next() {
		var c valet.Customer
		if err := scanCustomer(rows, &c); err != nil {
			return nil, s.fail(op, err, "")
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err, "")
	}
	return valet.NewPage(list, q, func(c *valet.Customer) (int64, int64) {
		return sortKey(q.Order.Field, micros(c.CreatedDatetime), micros(c.UpdatedDatetime)), c.ID
	}), nil
}

// UpdateCustomer implements valet.CustomerService.
func (s *Store) UpdateCustomer(ctx context.Context, accountID, id int64, update func(*valet.Customer) error) (*valet.Customer, error) {
	const op = "sqlstore.UpdateCustomer"
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer tx.rollback()
	old, err := findCustomer(ctx, tx, accountID, id, s.d.forUpdate("c"))
	if err != nil {
		return nil, s.fail(op, err, msgCustomerNotFound)
	}
	c := *old
	c.Data = bytes.Clone(old.Data)
	if err := update(&c); err != nil {
		return nil, err
	}
	// Only the editable fields are taken from the closure.
	c.ID, c.AccountID, c.CreatedDatetime, c.UpdatedDatetime = old.ID, old.AccountID, old.CreatedDatetime, old.UpdatedDatetime
	if err := c.Validate(); err != nil {
		return nil, s.fail(op, err, "")
	}
	data, err := compactJSON(c.Data)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	if data.Valid {
		c.Data = json.RawMessage(data.String)
	}
	if sameCustomer(old, &c) {
		return old, nil
	}
	c.UpdatedDatetime = tx.now
	_, err = tx.ExecContext(ctx, `UPDATE customers SET email = $1, name = $2, firstname = $3, lastname = $4,
		external_id = $5, language = $6, timezone = $7, note = $8, data = $9, updated_at = $10
		WHERE id = $11`,
		c.Email, c.Name, c.Firstname, c.Lastname, c.ExternalID, c.Language, c.Timezone, c.Note, data,
		micros(c.UpdatedDatetime), c.ID)
	if err != nil {
		return nil, s.customerConflict(op, err)
	}
	if err := tx.event(accountID, valet.EventCustomerUpdated, "Customer", c.ID, &c); err != nil {
		return nil, s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return nil, s.fail(op, err, "")
	}
	return &c, nil
}

// sameCustomer reports whether an update changed nothing, in which case
// nothing is written and no event appended.
func sameCustomer(a, b *valet.Customer) bool {
	return a.Email == b.Email && a.Name == b.Name && a.Firstname == b.Firstname && a.Lastname == b.Lastname &&
		a.ExternalID == b.ExternalID && a.Language == b.Language && a.Timezone == b.Timezone &&
		a.Note == b.Note && bytes.Equal(a.Data, b.Data)
}

// DeleteCustomer implements valet.CustomerService.
func (s *Store) DeleteCustomer(ctx context.Context, accountID, id int64) error {
	const op = "sqlstore.DeleteCustomer"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	c, err := findCustomer(ctx, tx, accountID, id, s.d.forUpdate("c"))
	if err != nil {
		return s.fail(op, err, msgCustomerNotFound)
	}
	conflict := errorf(op, valet.ECONFLICT, "This customer has tickets; delete them first.", nil)
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM tickets WHERE customer_id = $1 LIMIT 1`, id).Scan(&one)
	if err == nil {
		return conflict
	}
	if err != sql.ErrNoRows {
		return s.fail(op, err, "")
	}
	// A ticket created for the customer since the check above (another
	// PostgreSQL transaction) makes the foreign key refuse the delete.
	if _, err := tx.ExecContext(ctx, `DELETE FROM customers WHERE id = $1`, id); err != nil {
		if s.d.isForeignKey(err) {
			return conflict
		}
		return s.fail(op, err, "")
	}
	if err := tx.event(accountID, valet.EventCustomerDeleted, "Customer", id, c); err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}
