package valet

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"
)

// Customer is a person the support team talks to. Email is unique per account
// when set.
type Customer struct {
	ID              int64           `json:"id"`
	AccountID       int64           `json:"-"`
	Email           string          `json:"email"`
	Name            string          `json:"name"`
	Firstname       string          `json:"firstname"`
	Lastname        string          `json:"lastname"`
	ExternalID      string          `json:"external_id"`
	Language        string          `json:"language"`
	Timezone        string          `json:"timezone"`
	Note            string          `json:"note"`
	Data            json.RawMessage `json:"data"` // a JSON object or null
	CreatedDatetime time.Time       `json:"created_datetime"`
	UpdatedDatetime time.Time       `json:"updated_datetime"`
}

// Validate normalises c and reports EINVALID for a malformed customer.
func (c *Customer) Validate() error {
	p := Problems{}
	c.Email = NormalizeEmail(c.Email)
	if c.Email != "" && !validEmail(c.Email) {
		p.Add("email", "must be a valid email address")
	}
	c.Name = strings.TrimSpace(c.Name)
	if c.Name == "" {
		c.Name = strings.TrimSpace(c.Firstname + " " + c.Lastname)
	}
	if c.Name == "" && c.Email == "" {
		p.Add("name", "a name or an email is required")
	}
	for field, v := range map[string]string{"name": c.Name, "firstname": c.Firstname, "lastname": c.Lastname,
		"external_id": c.ExternalID, "language": c.Language, "timezone": c.Timezone} {
		if len(v) > 255 {
			p.Add(field, "must be at most 255 characters")
		}
	}
	if len(c.Note) > 10000 {
		p.Add("note", "must be at most 10000 characters")
	}
	if len(c.Data) > 0 && !bytes.Equal(bytes.TrimSpace(c.Data), []byte("null")) {
		var obj map[string]any
		if json.Unmarshal(c.Data, &obj) != nil {
			p.Add("data", "must be a JSON object")
		}
	}
	if len(bytes.TrimSpace(c.Data)) == 0 || bytes.Equal(bytes.TrimSpace(c.Data), []byte("null")) {
		c.Data = nil
	}
	return p.Err()
}

// Ref returns the short form of c embedded in tickets.
func (c *Customer) Ref() PersonRef { return PersonRef{ID: c.ID, Email: c.Email, Name: c.Name} }

// CustomerFilter selects customers for ListCustomers.
type CustomerFilter struct {
	ListOptions
	Email      string // exact, normalised
	ExternalID string
}

// CustomerService manages customers. Every method is scoped to one account;
// a customer of another account is ENOTFOUND.
type CustomerService interface {
	// CreateCustomer stores c (c.AccountID set by the caller), sets ID and
	// datetimes and appends a customer-created event.
	// Errors: EINVALID, ECONFLICT (email taken in the account).
	CreateCustomer(ctx context.Context, c *Customer) error
	// FindCustomer errors: ENOTFOUND.
	FindCustomer(ctx context.Context, accountID, id int64) (*Customer, error)
	// ListCustomers pages customers. Orders: created_datetime, updated_datetime
	// (asc or desc). Errors: EINVALID (bad cursor, order or limit).
	ListCustomers(ctx context.Context, accountID int64, f CustomerFilter) (*Page[Customer], error)
	// UpdateCustomer loads the customer, calls update on it within one
	// transaction (update may return an error, e.g. EPRECONDITION, to abort),
	// validates and saves it and appends customer-updated.
	// Errors: ENOTFOUND, EINVALID, ECONFLICT, whatever update returns.
	UpdateCustomer(ctx context.Context, accountID, id int64, update func(*Customer) error) (*Customer, error)
	// DeleteCustomer deletes a customer without tickets and appends
	// customer-deleted. Errors: ENOTFOUND, ECONFLICT (the customer has tickets).
	DeleteCustomer(ctx context.Context, accountID, id int64) error
}
