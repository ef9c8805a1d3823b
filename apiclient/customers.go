package apiclient

import (
	"context"
	"encoding/json"
	"iter"
	"net/url"

	"github.com/valethq/valet"
)

// CustomerListOptions filter and page GET /api/customers.
type CustomerListOptions struct {
	Email      string // exact match
	ExternalID string
	// OrderBy is created_datetime (the default, newest first) or
	// updated_datetime, optionally with :asc or :desc.
	OrderBy  string
	PageSize int    // rows per request, 1-100; 0 means 100
	Cursor   string // start at a page's NextCursor
}

func (o CustomerListOptions) query(cursor string) url.Values {
	q := listQuery(cursor, o.PageSize, o.OrderBy)
	if o.Email != "" {
		q.Set("email", o.Email)
	}
	if o.ExternalID != "" {
		q.Set("external_id", o.ExternalID)
	}
	return q
}

// Customers iterates the customers opts selects (customers:read).
func (c *Client) Customers(ctx context.Context, opts CustomerListOptions) iter.Seq2[valet.Customer, error] {
	return walk(opts.Cursor, func(cursor string) (*Page[valet.Customer], error) {
		return getPage[valet.Customer](ctx, c, "/api/customers", opts.query(cursor))
	})
}

// CustomersPage returns the one page of customers at opts.Cursor
// (customers:read).
func (c *Client) CustomersPage(ctx context.Context, opts CustomerListOptions) (*Page[valet.Customer], error) {
	return getPage[valet.Customer](ctx, c, "/api/customers", opts.query(opts.Cursor))
}

// Customer returns one customer (customers:read).
func (c *Client) Customer(ctx context.Context, id int64) (*valet.Customer, error) {
	var out valet.Customer
	if err := c.get(ctx, idPath("/api/customers", id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// NewCustomer is the body of CreateCustomer. A Name or an Email is
// required; Name defaults to "Firstname Lastname".
type NewCustomer struct {
	Email      string          `json:"email,omitempty"`
	Name       string          `json:"name,omitempty"`
	Firstname  string          `json:"firstname,omitempty"`
	Lastname   string          `json:"lastname,omitempty"`
	ExternalID string          `json:"external_id,omitempty"`
	Language   string          `json:"language,omitempty"`
	Timezone   string          `json:"timezone,omitempty"`
	Note       string          `json:"note,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"` // a JSON object
}

// CreateCustomer creates a customer; an email already taken in the account
// is a 409 (IsConflict) (customers:write).
func (c *Client) CreateCustomer(ctx context.Context, nc NewCustomer) (*valet.Customer, error) {
	var out valet.Customer
	if err := c.post(ctx, "/api/customers", nc, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CustomerUpdate changes a customer; nil fields stay as they are. Set them
// with new(value): CustomerUpdate{Note: new("Prefers chat.")}.
type CustomerUpdate struct {
	Email      *string `json:"email,omitempty"`
	Name       *string `json:"name,omitempty"`
	Firstname  *string `json:"firstname,omitempty"`
	Lastname   *string `json:"lastname,omitempty"`
	ExternalID *string `json:"external_id,omitempty"`
	Language   *string `json:"language,omitempty"`
	Timezone   *string `json:"timezone,omitempty"`
	Note       *string `json:"note,omitempty"`
	// Data replaces the customer's data when set; json.RawMessage("null")
	// clears it.
	Data json.RawMessage `json:"data,omitempty"`
	// IfMatch, when set (see ETag), makes the update fail with 412
	// (IsPreconditionFailed) if the customer changed since that version.
	IfMatch string `json:"-"`
}

// UpdateCustomer changes customer id and returns it as stored
// (customers:write).
func (c *Client) UpdateCustomer(ctx context.Context, id int64, u CustomerUpdate) (*valet.Customer, error) {
	var out valet.Customer
	if err := c.put(ctx, idPath("/api/customers", id), u.IfMatch, u, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteCustomer deletes a customer; one who still has tickets is a 409
// (IsConflict) (customers:write).
func (c *Client) DeleteCustomer(ctx context.Context, id int64) error {
	return c.del(ctx, idPath("/api/customers", id), nil)
}
