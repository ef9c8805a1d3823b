package valet

import (
	"context"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// TicketStatus is open or closed.
type TicketStatus string

const (
	StatusOpen   TicketStatus = "open"
	StatusClosed TicketStatus = "closed"
)

// Priorities a ticket may have.
var Priorities = []string{"low", "normal", "high", "urgent"}

// Channels a ticket or message may come through.
var Channels = []string{"email", "chat", "phone", "sms", "api", "internal-note", "contact_form", "facebook", "instagram"}

// PersonRef is the short form of a customer or user embedded in other objects.
type PersonRef struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// Tag labels tickets; names are unique per account.
type Tag struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Ticket is one conversation with a customer.
type Ticket struct {
	ID              int64        `json:"id"`
	AccountID       int64        `json:"-"`
	Subject         string       `json:"subject"`
	Status          TicketStatus `json:"status"`
	Priority        string       `json:"priority"`
	Channel         string       `json:"channel"`
	Via             string       `json:"via"`
	Customer        PersonRef    `json:"customer"`
	AssigneeUser    *PersonRef   `json:"assignee_user"`
	Tags            []Tag        `json:"tags"`
	Excerpt         string       `json:"excerpt"`
	MessagesCount   int          `json:"messages_count"`
	CreatedDatetime time.Time    `json:"created_datetime"`
	UpdatedDatetime time.Time    `json:"updated_datetime"`
	OpenedDatetime  *time.Time   `json:"opened_datetime"`
	ClosedDatetime  *time.Time   `json:"closed_datetime"`
}

// Validate fills defaults and reports EINVALID for a malformed ticket.
func (t *Ticket) Validate() error {
	p := Problems{}
	t.Subject = strings.TrimSpace(t.Subject)
	if utf8.RuneCountInString(t.Subject) > 998 {
		p.Add("subject", "must be at most 998 characters")
	}
	if t.Status == "" {
		t.Status = StatusOpen
	}
	if t.Status != StatusOpen && t.Status != StatusClosed {
		p.Add("status", "must be open or closed")
	}
	if t.Priority == "" {
		t.Priority = "normal"
	}
	if !slices.Contains(Priorities, t.Priority) {
		p.Add("priority", "must be one of "+strings.Join(Priorities, ", "))
	}
	if t.Channel == "" {
		t.Channel = "api"
	}
	if !slices.Contains(Channels, t.Channel) {
		p.Add("channel", "must be one of "+strings.Join(Channels, ", "))
	}
	if t.Via == "" {
		t.Via = "api"
	}
	if t.Customer.ID == 0 && t.Customer.Email == "" {
		p.Add("customer", "an id or an email is required")
	}
	return p.Err()
}

// Message is one message of a ticket: public (sent to or from the customer)
// or an internal note between agents.
type Message struct {
	ID              int64      `json:"id"`
	AccountID       int64      `json:"-"`
	TicketID        int64      `json:"ticket_id"`
	Public          bool       `json:"public"`
	Channel         string     `json:"channel"`
	Via             string     `json:"via"`
	Sender          PersonRef  `json:"sender"`
	FromAgent       bool       `json:"from_agent"`
	Subject         string     `json:"subject"`
	BodyText        string     `json:"body_text"`
	BodyHTML        string     `json:"body_html"`
	CreatedDatetime time.Time  `json:"created_datetime"`
	SentDatetime    *time.Time `json:"sent_datetime"`
}

// MaxBodyLen bounds a message body (each of text and HTML).
const MaxBodyLen = 512 << 10

// Validate fills defaults and reports EINVALID for a malformed message.
func (m *Message) Validate() error {
	p := Problems{}
	if strings.TrimSpace(m.BodyText) == "" && strings.TrimSpace(m.BodyHTML) == "" {
		p.Add("body_text", "a body_text or body_html is required")
	}
	if len(m.BodyText) > MaxBodyLen {
		p.Add("body_text", "is too long")
	}
	if len(m.BodyHTML) > MaxBodyLen {
		p.Add("body_html", "is too long")
	}
	if m.Channel == "" {
		m.Channel = "email"
		if !m.Public {
			m.Channel = "internal-note"
		}
	}
	if !slices.Contains(Channels, m.Channel) {
		p.Add("channel", "must be one of "+strings.Join(Channels, ", "))
	}
	if m.Via == "" {
		m.Via = "api"
	}
	return p.Err()
}

// Excerpt is the start of a message body as shown in ticket lists.
func Excerpt(body string) string {
	body = strings.Join(strings.Fields(body), " ")
	if utf8.RuneCountInString(body) <= 140 {
		return body
	}
	r := []rune(body)
	return string(r[:139]) + "…"
}

// TicketFilter selects tickets for ListTickets. Zero fields do not filter.
type TicketFilter struct {
	ListOptions
	Status         TicketStatus
	CustomerID     int64
	AssigneeUserID int64
	// Unassigned selects only tickets without an assignee (the inbox's
	// "unassigned" view); it is not combined with AssigneeUserID.
	Unassigned   bool
	UpdatedSince time.Time
}

// TagOp says how SetTicketTags changes a ticket's tags.
type TagOp int

const (
	TagsAdd TagOp = iota
	TagsReplace
	TagsRemove
)

// TicketService manages tickets, their messages and tags, scoped to one
// account; a ticket of another account is ENOTFOUND.
type TicketService interface {
	// CreateTicket stores t with its first messages in one transaction.
	// t.Customer names the customer by ID (must exist in the account) or by
	// email (found, or created with customer-created). Sets IDs, datetimes,
	// excerpt and counts; appends ticket-created and ticket-message-created.
	// Errors: EINVALID (also for an unknown customer or assignee id).
	CreateTicket(ctx context.Context, t *Ticket, messages []*Message) error
	// FindTicket errors: ENOTFOUND.
	FindTicket(ctx context.Context, accountID, id int64) (*Ticket, error)
	// ListTickets pages tickets. Orders: created_datetime, updated_datetime
	// (asc or desc). Errors: EINVALID.
	ListTickets(ctx context.Context, accountID int64, f TicketFilter) (*Page[Ticket], error)
	// UpdateTicket loads the ticket and calls update in one transaction; it
	// may change subject, status, priority, channel, customer (by ID) and
	// assignee (by ID, nil to unassign). Opened/closed datetimes follow
	// status. Appends ticket-updated.
	// Errors: ENOTFOUND, EINVALID, whatever update returns.
	UpdateTicket(ctx context.Context, accountID, id int64, update func(*Ticket) error) (*Ticket, error)
	// DeleteTicket deletes the ticket with its messages; appends
	// ticket-deleted. Errors: ENOTFOUND.
	DeleteTicket(ctx context.Context, accountID, id int64) error

	// CreateMessage adds m to ticket m.TicketID. For an agent message the
	// sender is the member m.Sender.ID, or else the member with
	// m.Sender.Email, or else the actor of ctx; for a customer message the
	// customer m.Sender.ID or m.Sender.Email, or else the ticket's
	// customer. An email beside an id must be that person's; the stored
	// name is always the person's own (EINVALID on sender otherwise).
	// Updates the ticket's count, excerpt and updated datetime; appends
	// ticket-message-created. Errors: ENOTFOUND (ticket), EINVALID.
	CreateMessage(ctx context.Context, m *Message) error
	// ListMessages pages a ticket's messages, oldest first by default.
	// Errors: ENOTFOUND (ticket), EINVALID.
	ListMessages(ctx context.Context, accountID, ticketID int64, opt ListOptions) (*Page[Message], error)

	// ListTicketTags errors: ENOTFOUND.
	ListTicketTags(ctx context.Context, accountID, ticketID int64) ([]Tag, error)
	// SetTicketTags adds, replaces or removes tags by name (creating account
	// tags as needed), returns the ticket's tags and appends ticket-updated
	// when they changed. Errors: ENOTFOUND, EINVALID (empty or over-long name).
	SetTicketTags(ctx context.Context, accountID, ticketID int64, op TagOp, names []string) ([]Tag, error)
}
