package apiclient

import (
	"context"
	"encoding/json"
	"iter"
	"net/url"
	"strconv"
	"time"

	"github.com/valethq/valet"
)

// ETag returns the version tag of a ticket or customer last updated at
// updated, as the API documents it (W/"<updated_datetime in
// microseconds>"), for TicketUpdate.IfMatch and CustomerUpdate.IfMatch.
func ETag(updated time.Time) string {
	return `W/"` + strconv.FormatInt(updated.UnixMicro(), 10) + `"`
}

// TicketListOptions filter and page GET /api/tickets. Zero fields do not
// filter.
type TicketListOptions struct {
	Status         valet.TicketStatus
	CustomerID     int64
	AssigneeUserID int64
	UpdatedSince   time.Time
	// OrderBy is created_datetime (the default, newest first) or
	// updated_datetime, optionally with :asc or :desc.
	OrderBy string
	// PageSize is the rows per request, 1-100; 0 means 100.
	PageSize int
	// Cursor starts at a page's NextCursor instead of the first page; it
	// must have been made with the same OrderBy.
	Cursor string
}

func (o TicketListOptions) query(cursor string) url.Values {
	q := listQuery(cursor, o.PageSize, o.OrderBy)
	if o.Status != "" {
		q.Set("status", string(o.Status))
	}
	if o.CustomerID != 0 {
		q.Set("customer_id", strconv.FormatInt(o.CustomerID, 10))
	}
	if o.AssigneeUserID != 0 {
		q.Set("assignee_user_id", strconv.FormatInt(o.AssigneeUserID, 10))
	}
	if !o.UpdatedSince.IsZero() {
		q.Set("updated_since", o.UpdatedSince.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// Tickets iterates the tickets opts selects, fetching pages as the loop
// asks for them (tickets:read). An error ends the iteration as its last
// element.
//
//	for t, err := range c.Tickets(ctx, apiclient.TicketListOptions{Status: valet.StatusOpen}) {
//		if err != nil {
//			return err
//		}
//		...
//	}
func (c *Client) Tickets(ctx context.Context, opts TicketListOptions) iter.Seq2[valet.Ticket, error] {
	return walk(opts.Cursor, func(cursor string) (*Page[valet.Ticket], error) {
		return getPage[valet.Ticket](ctx, c, "/api/tickets", opts.query(cursor))
	})
}

// TicketsPage returns the one page of tickets at opts.Cursor (tickets:read),
// for callers that keep the cursor between runs.
func (c *Client) TicketsPage(ctx context.Context, opts TicketListOptions) (*Page[valet.Ticket], error) {
	return getPage[valet.Ticket](ctx, c, "/api/tickets", opts.query(opts.Cursor))
}

// Ticket returns one ticket (tickets:read).
func (c *Client) Ticket(ctx context.Context, id int64) (*valet.Ticket, error) {
	var t valet.Ticket
	if err := c.get(ctx, idPath("/api/tickets", id), nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Ref names a customer or user in a request: by ID, or a customer by Email
// (found, or created with Name).
type Ref struct {
	ID    int64  `json:"id,omitempty"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
}

// NewTicket is the body of CreateTicket. Empty fields take the server's
// defaults (status open, priority normal, channel and via api).
type NewTicket struct {
	Customer Ref                `json:"customer"` // required: an ID, or an Email
	Subject  string             `json:"subject,omitempty"`
	Status   valet.TicketStatus `json:"status,omitempty"`
	Priority string             `json:"priority,omitempty"`
	Channel  string             `json:"channel,omitempty"`
	Via      string             `json:"via,omitempty"`
	// AssigneeUserID assigns the ticket to a member; 0 leaves it unassigned.
	AssigneeUserID int64        `json:"-"`
	Tags           []string     `json:"tags,omitempty"` // created as needed
	Messages       []NewMessage `json:"messages,omitempty"`
}

// MarshalJSON names the assignee as the API expects, {"id": N}.
func (t NewTicket) MarshalJSON() ([]byte, error) {
	type plain NewTicket // without this method
	body := struct {
		plain
		Assignee *Ref `json:"assignee_user,omitempty"`
	}{plain: plain(t)}
	if t.AssigneeUserID != 0 {
		body.Assignee = &Ref{ID: t.AssigneeUserID}
	}
	return json.Marshal(body)
}

// NewMessage is a message to add to a ticket. Through CreateTicket a
// message is the customer writing in unless FromAgent says otherwise;
// through CreateMessage it is an agent's reply, sent by the credential's
// user, unless FromAgent or Sender say otherwise.
type NewMessage struct {
	BodyText string `json:"body_text,omitempty"`
	BodyHTML string `json:"body_html,omitempty"`
	// Public is true when nil; false makes an internal note.
	Public    *bool  `json:"public,omitempty"`
	FromAgent *bool  `json:"from_agent,omitempty"`
	Channel   string `json:"channel,omitempty"`
	Via       string `json:"via,omitempty"`
	Sender    *Ref   `json:"sender,omitempty"`
	Subject   string `json:"subject,omitempty"`
}

// CreateTicket creates a ticket with its first messages and tags in one
// transaction (tickets:write).
func (c *Client) CreateTicket(ctx context.Context, t NewTicket) (*valet.Ticket, error) {
	var out valet.Ticket
	if err := c.post(ctx, "/api/tickets", t, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TicketUpdate changes a ticket; nil and zero fields stay as they are.
// Set them with new(value): TicketUpdate{Status: new(valet.StatusClosed)}.
type TicketUpdate struct {
	Subject    *string
	Status     *valet.TicketStatus
	Priority   *string
	Channel    *string
	CustomerID int64
	// AssigneeUserID assigns the ticket; Unassign removes its assignee.
	AssigneeUserID int64
	Unassign       bool
	// IfMatch, when set (see ETag), makes the update fail with 412
	// (IsPreconditionFailed) if the ticket changed since that version.
	IfMatch string
}

// MarshalJSON sends only the fields to change, and assignee_user null to
// unassign: the API tells an absent field from a null one.
func (u TicketUpdate) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if u.Subject != nil {
		m["subject"] = *u.Subject
	}
	if u.Status != nil {
		m["status"] = *u.Status
	}
	if u.Priority != nil {
		m["priority"] = *u.Priority
	}
	if u.Channel != nil {
		m["channel"] = *u.Channel
	}
	if u.CustomerID != 0 {
		m["customer"] = Ref{ID: u.CustomerID}
	}
	switch {
	case u.Unassign:
		m["assignee_user"] = nil
	case u.AssigneeUserID != 0:
		m["assignee_user"] = Ref{ID: u.AssigneeUserID}
	}
	return json.Marshal(m)
}

// UpdateTicket changes ticket id and returns it as stored (tickets:write).
func (c *Client) UpdateTicket(ctx context.Context, id int64, u TicketUpdate) (*valet.Ticket, error) {
	var out valet.Ticket
	if err := c.put(ctx, idPath("/api/tickets", id), u.IfMatch, u, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteTicket deletes a ticket with its messages (tickets:write).
func (c *Client) DeleteTicket(ctx context.Context, id int64) error {
	return c.del(ctx, idPath("/api/tickets", id), nil)
}

// Messages iterates a ticket's messages, oldest first (tickets:read).
func (c *Client) Messages(ctx context.Context, ticketID int64) iter.Seq2[valet.Message, error] {
	path := idPath("/api/tickets", ticketID) + "/messages"
	return walk("", func(cursor string) (*Page[valet.Message], error) {
		return getPage[valet.Message](ctx, c, path, listQuery(cursor, 0, ""))
	})
}

// CreateMessage adds a reply or an internal note to a ticket; it updates
// the ticket's messages_count, excerpt and updated_datetime (tickets:write).
func (c *Client) CreateMessage(ctx context.Context, ticketID int64, m NewMessage) (*valet.Message, error) {
	var out valet.Message
	if err := c.post(ctx, idPath("/api/tickets", ticketID)+"/messages", m, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// tagsBody is the body of the tag routes.
type tagsBody struct {
	Names []string `json:"names"`
}

// TicketTags returns a ticket's tags (tickets:read).
func (c *Client) TicketTags(ctx context.Context, ticketID int64) ([]valet.Tag, error) {
	p, err := getPage[valet.Tag](ctx, c, idPath("/api/tickets", ticketID)+"/tags", nil)
	if err != nil {
		return nil, err
	}
	return p.Data, nil
}

// AddTicketTags adds tags (created as needed) to a ticket and returns its
// tags (tickets:write).
func (c *Client) AddTicketTags(ctx context.Context, ticketID int64, names ...string) ([]valet.Tag, error) {
	var out listBody[valet.Tag]
	if err := c.post(ctx, idPath("/api/tickets", ticketID)+"/tags", tagsBody{Names: nonNil(names)}, &out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// SetTicketTags replaces a ticket's tags and returns them (tickets:write).
func (c *Client) SetTicketTags(ctx context.Context, ticketID int64, names ...string) ([]valet.Tag, error) {
	var out listBody[valet.Tag]
	if err := c.put(ctx, idPath("/api/tickets", ticketID)+"/tags", "", tagsBody{Names: nonNil(names)}, &out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// RemoveTicketTags removes tags from a ticket (tickets:write).
func (c *Client) RemoveTicketTags(ctx context.Context, ticketID int64, names ...string) error {
	return c.del(ctx, idPath("/api/tickets", ticketID)+"/tags", tagsBody{Names: nonNil(names)})
}

// nonNil sends an empty list as [] rather than null, which the API refuses.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
