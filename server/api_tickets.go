package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"time"

	"github.com/valethq/valet"
)

// ticketJSON is a ticket as the API shows it.
type ticketJSON struct {
	*valet.Ticket
	URI string `json:"uri"`
}

func ticketURI(id int64) string { return "/api/tickets/" + strconv.FormatInt(id, 10) + "/" }

func ticketView(t *valet.Ticket) ticketJSON {
	if t.Tags == nil {
		t.Tags = []valet.Tag{} // a list, never null, so clients can range over it
	}
	return ticketJSON{Ticket: t, URI: ticketURI(t.ID)}
}

// personRef names a customer or user in a request: by id, or a customer by
// email (with a name used if the customer has to be created).
type personRef struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// idRef names a user by id.
type idRef struct {
	ID int64 `json:"id"`
}

// optionalIDRef tells an absent field from an explicit null (which unassigns).
type optionalIDRef struct {
	Set bool
	Ref *idRef
}

func (o *optionalIDRef) UnmarshalJSON(b []byte) error {
	o.Set = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		o.Ref = nil
		return nil
	}
	var ref idRef
	if err := strictUnmarshal(b, &ref); err != nil {
		return err
	}
	o.Ref = &ref
	return nil
}

// tagNames accepts tags as Gorgias clients send them: ["a", "b"] or
// [{"name": "a"}, {"name": "b"}].
type tagNames []string

func (t *tagNames) UnmarshalJSON(b []byte) error {
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeFor[[]string]()}
	}
	names := make(tagNames, 0, len(items))
	for _, item := range items {
		var name string
		if json.Unmarshal(item, &name) == nil {
			names = append(names, name)
			continue
		}
		var obj struct {
			Name string `json:"name"`
		}
		if err := strictUnmarshal(item, &obj); err != nil {
			return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeFor[[]string]()}
		}
		names = append(names, obj.Name)
	}
	*t = names
	return nil
}

// strictUnmarshal decodes b refusing unknown fields, for the nested values
// that custom UnmarshalJSON methods decode themselves.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// messageBody is a message in POST /api/tickets or /api/tickets/{id}/messages.
type messageBody struct {
	Public    *bool      `json:"public"`     // default true; false is an internal note
	FromAgent *bool      `json:"from_agent"` // default depends on the endpoint
	Channel   string     `json:"channel"`
	Via       string     `json:"via"`
	Sender    *personRef `json:"sender"`
	Subject   string     `json:"subject"`
	BodyText  string     `json:"body_text"`
	BodyHTML  string     `json:"body_html"`
}

// message builds the domain message; fromAgent is the default when the body
// does not say.
func (b *messageBody) message(accountID, ticketID int64, fromAgent bool) *valet.Message {
	m := &valet.Message{AccountID: accountID, TicketID: ticketID, Public: true, FromAgent: fromAgent,
		Channel: b.Channel, Via: b.Via, Subject: b.Subject, BodyText: b.BodyText, BodyHTML: b.BodyHTML}
	if b.Public != nil {
		m.Public = *b.Public
	}
	if b.FromAgent != nil {
		m.FromAgent = *b.FromAgent
	}
	if !m.Public {
		m.FromAgent = true // an internal note is written by an agent
	}
	if b.Sender != nil {
		m.Sender = valet.PersonRef{ID: b.Sender.ID, Email: b.Sender.Email, Name: b.Sender.Name}
	}
	return m
}

// ticketCreate is the body of POST /api/tickets.
type ticketCreate struct {
	Subject      string        `json:"subject"`
	Customer     *personRef    `json:"customer"`
	Messages     []messageBody `json:"messages"`
	Tags         tagNames      `json:"tags"`
	Status       string        `json:"status"`
	Channel      string        `json:"channel"`
	Via          string        `json:"via"`
	Priority     string        `json:"priority"`
	AssigneeUser *idRef        `json:"assignee_user"`
}

// maxCreateMessages bounds the messages of one POST /api/tickets (the body
// size bounds it too; this keeps one request from being a thousand inserts).
const maxCreateMessages = 100

// build validates the body into a ticket and its first messages, naming the
// fields of messages as messages[i].field.
func (b *ticketCreate) build(accountID int64) (*valet.Ticket, []*valet.Message, error) {
	t := &valet.Ticket{AccountID: accountID, Subject: b.Subject, Status: valet.TicketStatus(b.Status),
		Channel: b.Channel, Via: b.Via, Priority: b.Priority}
	if b.Customer != nil {
		t.Customer = valet.PersonRef{ID: b.Customer.ID, Email: valet.NormalizeEmail(b.Customer.Email), Name: b.Customer.Name}
	}
	if b.AssigneeUser != nil {
		t.AssigneeUser = &valet.PersonRef{ID: b.AssigneeUser.ID}
	}
	for _, name := range b.Tags {
		t.Tags = append(t.Tags, valet.Tag{Name: name})
	}
	p := valet.Problems{}
	if err := t.Validate(); err != nil {
		for f, probs := range valet.ErrorFields(err) {
			p[f] = append(p[f], probs...)
		}
	}
	if len(b.Messages) > maxCreateMessages {
		p.Add("messages", "must hold at most "+strconv.Itoa(maxCreateMessages)+" messages")
	}
	msgs := make([]*valet.Message, 0, len(b.Messages))
	for i := range b.Messages {
		// A message sent with a new ticket is the customer writing in
		// unless it says otherwise.
		m := b.Messages[i].message(accountID, 0, false)
		if err := m.Validate(); err != nil {
			for f, probs := range valet.ErrorFields(err) {
				key := "messages[" + strconv.Itoa(i) + "]." + f
				p[key] = append(p[key], probs...)
			}
		}
		msgs = append(msgs, m)
	}
	return t, msgs, p.Err()
}

// ticketUpdate is the body of PUT /api/tickets/{id}. Absent fields stay.
type ticketUpdate struct {
	Subject      *string       `json:"subject"`
	Status       *string       `json:"status"`
	Priority     *string       `json:"priority"`
	Channel      *string       `json:"channel"`
	Customer     *idRef        `json:"customer"`
	AssigneeUser optionalIDRef `json:"assignee_user"`
	// UpdatedDatetime, when sent, must be the stored one (else 412).
	UpdatedDatetime *apiTime `json:"updated_datetime"`
}

func (b *ticketUpdate) apply(t *valet.Ticket) {
	if b.Subject != nil {
		t.Subject = *b.Subject
	}
	if b.Status != nil {
		t.Status = valet.TicketStatus(*b.Status)
	}
	if b.Priority != nil {
		t.Priority = *b.Priority
	}
	if b.Channel != nil {
		t.Channel = *b.Channel
	}
	if b.Customer != nil {
		t.Customer = valet.PersonRef{ID: b.Customer.ID}
	}
	if b.AssigneeUser.Set {
		t.AssigneeUser = nil
		if b.AssigneeUser.Ref != nil {
			t.AssigneeUser = &valet.PersonRef{ID: b.AssigneeUser.Ref.ID}
		}
	}
}

// tagsBody is the body of POST/PUT/DELETE /api/tickets/{id}/tags.
type tagsBody struct {
	Names *tagNames `json:"names"`
}

// ticketFilter reads the list filters of GET /api/tickets.
func ticketFilter(q url.Values, p valet.Problems) valet.TicketFilter {
	v := q.Get
	f := valet.TicketFilter{ListOptions: listOptions(q, p)}
	switch st := valet.TicketStatus(v("status")); st {
	case "":
	case valet.StatusOpen, valet.StatusClosed:
		f.Status = st
	default:
		p.Add("status", "must be open or closed")
	}
	f.CustomerID = queryID(q, "customer_id", p)
	f.AssigneeUserID = queryID(q, "assignee_user_id", p)
	if since := v("updated_since"); since != "" {
		ts, err := time.Parse(time.RFC3339Nano, since)
		if err != nil {
			p.Add("updated_since", "must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z")
		} else {
			f.UpdatedSince = ts.UTC()
		}
	}
	return f
}

// listTickets serves GET /api/tickets.
func (s *Server) listTickets(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	p := valet.Problems{}
	f := ticketFilter(q, p)
	if err := p.Err(); err != nil {
		return err
	}
	page, err := s.store.ListTickets(r.Context(), cred.AccountID, f)
	if err != nil {
		return err
	}
	writeList(s, w, r, page, ticketView)
	return nil
}

// createTicket serves POST /api/tickets: the ticket, its first messages and
// tags in one store call.
func (s *Server) createTicket(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	var body ticketCreate
	if err := s.decode(w, r, &body); err != nil {
		return err
	}
	t, msgs, err := body.build(cred.AccountID)
	if err != nil {
		return err
	}
	// A customer given by email is found or created: creating customers
	// is customers:write's, whatever the ticket scopes allow.
	if t.Customer.ID == 0 && t.Customer.Email != "" && !cred.Scopes.Has(valet.ScopeCustomersWrite) {
		return insufficientScope(w, valet.ScopeCustomersWrite,
			"A ticket's customer given by email may create that customer, which takes the customers:write scope; give the customer's id instead.")
	}
	if err := s.store.CreateTicket(r.Context(), t, msgs); err != nil {
		return err
	}
	w.Header().Set("ETag", etag(t.UpdatedDatetime))
	s.created(w, r, ticketURI(t.ID), ticketView(t))
	return nil
}

// getTicket serves GET /api/tickets/{id} with an ETag for If-Match.
func (s *Server) getTicket(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	t, err := s.store.FindTicket(r.Context(), cred.AccountID, id)
	if err != nil {
		return err
	}
	tag := etag(t.UpdatedDatetime)
	if notModified(w, r, tag) {
		return nil
	}
	w.Header().Set("ETag", tag)
	s.writeJSON(w, r, http.StatusOK, ticketView(t))
	return nil
}

// updateTicket serves PUT /api/tickets/{id}; a stale If-Match or
// updated_datetime is 412, checked inside the store's transaction.
func (s *Server) updateTicket(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var body ticketUpdate
	if err := s.decode(w, r, &body); err != nil {
		return err
	}
	ifMatch := r.Header.Get("If-Match")
	t, err := s.store.UpdateTicket(r.Context(), cred.AccountID, id, func(t *valet.Ticket) error {
		if err := checkPrecondition(ifMatch, body.UpdatedDatetime, t.UpdatedDatetime); err != nil {
			return err
		}
		body.apply(t)
		return nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(t.UpdatedDatetime))
	s.writeJSON(w, r, http.StatusOK, ticketView(t))
	return nil
}

// deleteTicket serves DELETE /api/tickets/{id}.
func (s *Server) deleteTicket(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteTicket(r.Context(), cred.AccountID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listMessages serves GET /api/tickets/{id}/messages, oldest first.
func (s *Server) listMessages(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	opt, err := plainListOptions(r)
	if err != nil {
		return err
	}
	page, err := s.store.ListMessages(r.Context(), cred.AccountID, id, opt)
	if err != nil {
		return err
	}
	writeList(s, w, r, page, func(m *valet.Message) *valet.Message { return m })
	return nil
}

// createMessage serves POST /api/tickets/{id}/messages. A message added
// through the API is an agent's reply unless from_agent says otherwise; the
// sender defaults to the credential's user.
func (s *Server) createMessage(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var body messageBody
	if err := s.decode(w, r, &body); err != nil {
		return err
	}
	m := body.message(cred.AccountID, id, true)
	if err := m.Validate(); err != nil {
		return err
	}
	if err := s.store.CreateMessage(r.Context(), m); err != nil {
		return err
	}
	// Messages have no URI of their own: they are read through their ticket.
	s.created(w, r, "", m)
	return nil
}

// tagList answers a ticket's tags in the list envelope (tags are few, so
// there is a single page).
func (s *Server) tagList(w http.ResponseWriter, r *http.Request, tags []valet.Tag) {
	if tags == nil {
		tags = []valet.Tag{}
	}
	s.writeJSON(w, r, http.StatusOK, listBody[valet.Tag]{Data: tags, Object: "list", URI: r.URL.RequestURI()})
}

// listTicketTags serves GET /api/tickets/{id}/tags.
func (s *Server) listTicketTags(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	tags, err := s.store.ListTicketTags(r.Context(), cred.AccountID, id)
	if err != nil {
		return err
	}
	s.tagList(w, r, tags)
	return nil
}

// setTicketTags is POST (add), PUT (replace) and DELETE (remove) on
// /api/tickets/{id}/tags with {"names": [...]}.
func (s *Server) setTicketTags(w http.ResponseWriter, r *http.Request, cred *valet.Credential, op valet.TagOp) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var body tagsBody
	if err := s.decode(w, r, &body); err != nil {
		return err
	}
	if body.Names == nil {
		return valet.Invalid(map[string][]string{"names": {"is required (a list of tag names)"}})
	}
	tags, err := s.store.SetTicketTags(r.Context(), cred.AccountID, id, op, *body.Names)
	if err != nil {
		return err
	}
	if op == valet.TagsRemove {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	s.tagList(w, r, tags)
	return nil
}

func (s *Server) addTicketTags(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	return s.setTicketTags(w, r, cred, valet.TagsAdd)
}

func (s *Server) replaceTicketTags(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	return s.setTicketTags(w, r, cred, valet.TagsReplace)
}

func (s *Server) removeTicketTags(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	return s.setTicketTags(w, r, cred, valet.TagsRemove)
}
