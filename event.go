package valet

import (
	"context"
	"encoding/json"
	"time"
)

// Event types. Every change to helpdesk data appends one, in the same
// transaction as the change.
const (
	EventTicketCreated        = "ticket-created"
	EventTicketUpdated        = "ticket-updated"
	EventTicketDeleted        = "ticket-deleted"
	EventTicketMessageCreated = "ticket-message-created"
	EventCustomerCreated      = "customer-created"
	EventCustomerUpdated      = "customer-updated"
	EventCustomerDeleted      = "customer-deleted"
)

// EventReadScope is the scope that reads the object an event of type t
// carries (its Data): a credential without it learns that the event
// happened, not what the object holds.
func EventReadScope(t string) Scope {
	switch t {
	case EventCustomerCreated, EventCustomerUpdated, EventCustomerDeleted:
		return ScopeCustomersRead
	}
	return ScopeTicketsRead
}

// EventTypes lists every event type, for validating filters.
var EventTypes = []string{EventTicketCreated, EventTicketUpdated, EventTicketDeleted,
	EventTicketMessageCreated, EventCustomerCreated, EventCustomerUpdated, EventCustomerDeleted}

// Event records one change. IDs increase across the whole store, so
// "after=ID" never misses an event of the account.
type Event struct {
	ID              int64           `json:"id"`
	AccountID       int64           `json:"-"`
	Type            string          `json:"type"`
	ObjectType      string          `json:"object_type"` // Ticket, TicketMessage, Customer
	ObjectID        int64           `json:"object_id"`
	UserID          *int64          `json:"user_id"` // who acted, if a person did
	AppID           *int64          `json:"app_id"`  // the OAuth app that acted, if any
	Data            json.RawMessage `json:"data"`    // the object after the change
	CreatedDatetime time.Time       `json:"created_datetime"`
}

// EventFilter selects events for ListEvents.
type EventFilter struct {
	After int64    // only events with a greater ID
	Types []string // empty: all types
	Limit int      // 1-100; 0 means DefaultLimit
}

// EventService reads the activity feed.
type EventService interface {
	// ListEvents returns the account's events after f.After in ID order.
	// Errors: EINVALID (unknown type, bad limit).
	ListEvents(ctx context.Context, accountID int64, f EventFilter) ([]Event, error)
}
