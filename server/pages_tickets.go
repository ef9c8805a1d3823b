package server

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/valethq/valet"
	"github.com/valethq/valet/webui"
)

// Inbox list sizes.
const (
	ticketsPerPage     = 25
	customerTicketsMax = 5
	// maxMessagePages bounds how many pages of 100 messages a ticket page
	// reads; a longer conversation shows its first 1,000 messages.
	maxMessagePages = 10
)

// ticketQuery is the inbox filter as read from the URL.
type ticketQuery struct {
	status   string // open, closed, all
	assignee string // mine, unassigned, any
	customer string // an id or an email, as typed
	cursor   string
}

func readTicketQuery(q url.Values) ticketQuery {
	tq := ticketQuery{status: q.Get("status"), assignee: q.Get("assignee"),
		customer: strings.TrimSpace(q.Get("customer")), cursor: q.Get("cursor")}
	if !slices.Contains([]string{"open", "closed", "all"}, tq.status) {
		tq.status = "open"
	}
	if !slices.Contains([]string{"mine", "unassigned", "any"}, tq.assignee) {
		tq.assignee = "any"
	}
	return tq
}

// url is the list with this filter at cursor, leaving defaults out.
func (tq ticketQuery) url(cursor string) string {
	v := url.Values{}
	if tq.status != "open" {
		v.Set("status", tq.status)
	}
	if tq.assignee != "any" {
		v.Set("assignee", tq.assignee)
	}
	if tq.customer != "" {
		v.Set("customer", tq.customer)
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if len(v) == 0 {
		return "/tickets"
	}
	return "/tickets?" + v.Encode()
}

// ticketTabs are the quick views above the list.
func ticketTabs(cur ticketQuery) []webui.Tab {
	views := []struct {
		label            string
		status, assignee string
	}{
		{"Open", "open", "any"}, {"Mine", "open", "mine"}, {"Unassigned", "open", "unassigned"},
		{"Closed", "closed", "any"}, {"All", "all", "any"},
	}
	tabs := make([]webui.Tab, len(views))
	for i, v := range views {
		q := ticketQuery{status: v.status, assignee: v.assignee}
		tabs[i] = webui.Tab{Label: v.label, URL: q.url(""),
			Active: cur.customer == "" && cur.status == v.status && cur.assignee == v.assignee}
	}
	return tabs
}

// ticketsPage is the inbox: GET /tickets?status=&assignee=&customer=&cursor=.
func (s *Server) ticketsPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	tq := readTicketQuery(r.URL.Query())
	p := &webui.TicketsPage{Layout: s.layout(w, r, ps, "Tickets", "tickets"),
		Filter: webui.TicketFilter{Status: tq.status, Assignee: tq.assignee, Customer: tq.customer},
		Tabs:   ticketTabs(tq)}
	f := valet.TicketFilter{ListOptions: valet.ListOptions{Cursor: tq.cursor, Limit: ticketsPerPage, OrderBy: "updated_datetime:desc"}}
	if tq.status != "all" {
		f.Status = valet.TicketStatus(tq.status)
	}
	switch tq.assignee {
	case "mine":
		f.AssigneeUserID = ps.user.ID
	case "unassigned":
		f.Unassigned = true
	}
	if tq.customer != "" {
		c, err := s.findCustomerByRef(ctx, ps.account.ID, tq.customer)
		if err != nil {
			return err
		}
		if c == nil {
			p.Notice = "No customer matches “" + tq.customer + "”"
			return s.pages.ui.Tickets(w, http.StatusOK, p)
		}
		f.CustomerID = c.ID
		p.Filter.CustomerRef = c
		p.Filter.ClearCustomerURL = ticketQuery{status: tq.status, assignee: tq.assignee}.url("")
	}
	page, err := s.store.ListTickets(ctx, ps.account.ID, f)
	if err != nil {
		return err
	}
	p.Tickets = page.Data
	if page.PrevCursor != "" {
		p.PrevURL = tq.url(page.PrevCursor)
	}
	if page.NextCursor != "" {
		p.NextURL = tq.url(page.NextCursor)
	}
	return s.pages.ui.Tickets(w, http.StatusOK, p)
}

// findCustomerByRef finds a customer of the account by id or email; nil
// when none matches.
func (s *Server) findCustomerByRef(ctx context.Context, accountID int64, ref string) (*valet.Customer, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil && id > 0 {
		c, err := s.store.FindCustomer(ctx, accountID, id)
		if valet.ErrorCode(err) == valet.ENOTFOUND {
			return nil, nil
		}
		return c, err
	}
	if !strings.Contains(ref, "@") {
		return nil, nil
	}
	page, err := s.store.ListCustomers(ctx, accountID, valet.CustomerFilter{Email: valet.NormalizeEmail(ref), ListOptions: valet.ListOptions{Limit: 1}})
	if err != nil || len(page.Data) == 0 {
		return nil, err
	}
	return &page.Data[0], nil
}

// loadTicketPage reads everything a ticket page shows. A ticket of another
// account is ENOTFOUND, which the page shows as 404.
func (s *Server) loadTicketPage(w http.ResponseWriter, r *http.Request, ps *pageSession, id int64) (*webui.TicketPage, error) {
	ctx := r.Context()
	t, err := s.store.FindTicket(ctx, ps.account.ID, id)
	if err != nil {
		return nil, err
	}
	p := &webui.TicketPage{Layout: s.layout(w, r, ps, t.Subject, "tickets"), Ticket: t}
	if p.Title == "" {
		p.Title = "Ticket #" + strconv.FormatInt(t.ID, 10)
	}
	opt := valet.ListOptions{Limit: valet.MaxLimit}
	for range maxMessagePages {
		page, err := s.store.ListMessages(ctx, ps.account.ID, id, opt)
		if err != nil {
			return nil, err
		}
		p.Messages = append(p.Messages, page.Data...)
		if page.NextCursor == "" {
			break
		}
		opt.Cursor = page.NextCursor
	}
	if t.Customer.ID != 0 {
		c, err := s.store.FindCustomer(ctx, ps.account.ID, t.Customer.ID)
		if err != nil && valet.ErrorCode(err) != valet.ENOTFOUND {
			return nil, err
		}
		p.Customer = c
		others, err := s.store.ListTickets(ctx, ps.account.ID, valet.TicketFilter{CustomerID: t.Customer.ID,
			ListOptions: valet.ListOptions{Limit: customerTicketsMax + 1, OrderBy: "updated_datetime:desc"}})
		if err != nil {
			return nil, err
		}
		for _, o := range others.Data {
			if o.ID != t.ID && len(p.CustomerTickets) < customerTicketsMax {
				p.CustomerTickets = append(p.CustomerTickets, o)
			}
		}
	}
	return p, nil
}

// ticketPage shows one conversation: GET /tickets/{id}.
func (s *Server) ticketPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	p, err := s.loadTicketPage(w, r, ps, id)
	if err != nil {
		return err
	}
	return s.pages.ui.Ticket(w, http.StatusOK, p)
}

// ticketFormError shows the ticket page again with a refused form's input
// and problems (400), so nothing typed is lost.
func (s *Server) ticketFormError(w http.ResponseWriter, r *http.Request, ps *pageSession, id int64, set func(*webui.TicketPage)) error {
	p, err := s.loadTicketPage(w, r, ps, id)
	if err != nil {
		return err
	}
	set(p)
	return s.pages.ui.Ticket(w, http.StatusBadRequest, p)
}

func ticketURL(id int64) string { return "/tickets/" + strconv.FormatInt(id, 10) }

// replyChannel is the channel an agent's public reply goes out on: the
// ticket's own, unless that is not one a customer can be answered on.
func replyChannel(t *valet.Ticket) string {
	switch t.Channel {
	case "", "api", "internal-note", "contact_form":
		return "email"
	}
	return t.Channel
}

var messageFields = map[string]formField{
	"body_text": {"body", "The message"},
	"body_html": {"body", "The message"},
}

// postMessage adds a public reply or an internal note from the signed-in
// agent; then=close on a reply also closes the ticket.
func (s *Server) postMessage(w http.ResponseWriter, r *http.Request, ps *pageSession, public bool) error {
	ctx := r.Context()
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	body := r.PostFormValue("body")
	composer, form := "reply", func(p *webui.TicketPage) *webui.Form { return &p.Reply }
	if !public {
		composer, form = "note", func(p *webui.TicketPage) *webui.Form { return &p.Note }
	}
	refuse := func(errs map[string][]string) error {
		return s.ticketFormError(w, r, ps, id, func(p *webui.TicketPage) {
			*form(p) = webui.Form{Values: map[string]string{"body": body}, Errors: errs}
			p.Composer = composer
		})
	}
	if strings.TrimSpace(body) == "" {
		what := "a reply"
		if !public {
			what = "a note"
		}
		return refuse(map[string][]string{"body": {"Write " + what + " before sending."}})
	}
	t, err := s.store.FindTicket(ctx, ps.account.ID, id)
	if err != nil {
		return err
	}
	m := &valet.Message{AccountID: ps.account.ID, TicketID: id, Public: public, FromAgent: true,
		Via: "helpdesk", Sender: valet.PersonRef{ID: ps.user.ID}, BodyText: body}
	if public {
		m.Channel = replyChannel(t)
		if t.Subject != "" && !strings.HasPrefix(strings.ToLower(t.Subject), "re:") {
			m.Subject = "Re: " + t.Subject
		} else {
			m.Subject = t.Subject
		}
	} else {
		m.Channel = "internal-note"
	}
	if err := s.store.CreateMessage(ctx, m); err != nil {
		if errs, ok := fieldErrors(err, messageFields); ok {
			return refuse(errs)
		}
		return err
	}
	flash := composer
	if public && r.PostFormValue("then") == "close" && t.Status == valet.StatusOpen {
		if _, err := s.store.UpdateTicket(ctx, ps.account.ID, id, func(t *valet.Ticket) error {
			t.Status = valet.StatusClosed
			return nil
		}); err != nil {
			return err
		}
		flash = "reply-closed"
	}
	s.redirectWithFlash(w, r, ticketURL(id)+"#message-"+strconv.FormatInt(m.ID, 10), flash)
	return nil
}

func (s *Server) postReply(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	return s.postMessage(w, r, ps, true)
}

func (s *Server) postNote(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	return s.postMessage(w, r, ps, false)
}

// postStatus closes or reopens a ticket: status=closed|open.
func (s *Server) postStatus(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	status := valet.TicketStatus(r.PostFormValue("status"))
	if status != valet.StatusOpen && status != valet.StatusClosed {
		return valet.Invalid(map[string][]string{"status": {"must be open or closed"}})
	}
	if _, err := s.store.UpdateTicket(r.Context(), ps.account.ID, id, func(t *valet.Ticket) error {
		t.Status = status
		return nil
	}); err != nil {
		return err
	}
	flash := "closed"
	if status == valet.StatusOpen {
		flash = "reopened"
	}
	s.redirectWithFlash(w, r, ticketURL(id), flash)
	return nil
}

// postAssign assigns the ticket to the signed-in agent (assignee=me) or
// to nobody (assignee=none).
func (s *Server) postAssign(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	var to *valet.PersonRef
	switch r.PostFormValue("assignee") {
	case "me":
		to = &valet.PersonRef{ID: ps.user.ID, Email: ps.user.Email, Name: ps.user.Name}
	case "none":
	default:
		return valet.Invalid(map[string][]string{"assignee": {"must be me or none"}})
	}
	if _, err := s.store.UpdateTicket(r.Context(), ps.account.ID, id, func(t *valet.Ticket) error {
		t.AssigneeUser = to
		return nil
	}); err != nil {
		return err
	}
	flash := "assigned"
	if to == nil {
		flash = "unassigned"
	}
	s.redirectWithFlash(w, r, ticketURL(id), flash)
	return nil
}

// postAddTags adds comma-separated tags to a ticket.
func (s *Server) postAddTags(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	typed := r.PostFormValue("tags")
	var names []string
	for n := range strings.SplitSeq(typed, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	refuse := func(errs map[string][]string) error {
		return s.ticketFormError(w, r, ps, id, func(p *webui.TicketPage) {
			p.Tags = webui.Form{Values: map[string]string{"tags": typed}, Errors: errs}
		})
	}
	if len(names) == 0 {
		return refuse(map[string][]string{"tags": {"Type a tag to add; separate several with commas."}})
	}
	if _, err := s.store.SetTicketTags(r.Context(), ps.account.ID, id, valet.TagsAdd, names); err != nil {
		if errs, ok := fieldErrors(err, map[string]formField{"tags": {"tags", "A tag"}, "name": {"tags", "A tag"}}); ok {
			return refuse(errs)
		}
		return err
	}
	s.redirectWithFlash(w, r, ticketURL(id), "tags")
	return nil
}

// postRemoveTag removes one tag from a ticket.
func (s *Server) postRemoveTag(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	name := strings.TrimSpace(r.PostFormValue("tag"))
	if name == "" {
		return valet.Invalid(map[string][]string{"tag": {"is required"}})
	}
	if _, err := s.store.SetTicketTags(r.Context(), ps.account.ID, id, valet.TagsRemove, []string{name}); err != nil {
		return err
	}
	s.redirectWithFlash(w, r, ticketURL(id), "tags")
	return nil
}
