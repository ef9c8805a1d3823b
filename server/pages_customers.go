package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/valethq/valet"
	"github.com/valethq/valet/webui"
)

const (
	customersPerPage        = 30
	customerTicketsPerPage  = 20
	maxCustomerDataShownLen = 16 << 10
)

// customersPage lists customers, newest first, or looks one up by email:
// GET /customers?email=&cursor=.
func (s *Server) customersPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	q := r.URL.Query()
	query := strings.TrimSpace(q.Get("email"))
	p := &webui.CustomersPage{Layout: s.layout(w, r, ps, "Customers", "customers"), Query: query}
	f := valet.CustomerFilter{Email: valet.NormalizeEmail(query),
		ListOptions: valet.ListOptions{Cursor: q.Get("cursor"), Limit: customersPerPage, OrderBy: "created_datetime:desc"}}
	page, err := s.store.ListCustomers(r.Context(), ps.account.ID, f)
	if err != nil {
		return err
	}
	p.Customers = page.Data
	link := func(cursor string) string {
		v := url.Values{}
		if query != "" {
			v.Set("email", query)
		}
		v.Set("cursor", cursor)
		return "/customers?" + v.Encode()
	}
	if page.PrevCursor != "" {
		p.PrevURL = link(page.PrevCursor)
	}
	if page.NextCursor != "" {
		p.NextURL = link(page.NextCursor)
	}
	return s.pages.ui.Customers(w, http.StatusOK, p)
}

// customerPage is a customer's profile and tickets: GET /customers/{id}.
func (s *Server) customerPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	c, err := s.store.FindCustomer(ctx, ps.account.ID, id)
	if err != nil {
		return err
	}
	title := c.Name
	if title == "" {
		title = c.Email
	}
	p := &webui.CustomerPage{Layout: s.layout(w, r, ps, title, "customers"), Customer: c}
	if len(c.Data) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, c.Data, "", "  ") == nil && buf.Len() <= maxCustomerDataShownLen && buf.String() != "{}" {
			p.Data = buf.String()
		}
	}
	page, err := s.store.ListTickets(ctx, ps.account.ID, valet.TicketFilter{CustomerID: c.ID,
		ListOptions: valet.ListOptions{Cursor: r.URL.Query().Get("cursor"), Limit: customerTicketsPerPage, OrderBy: "updated_datetime:desc"}})
	if err != nil {
		return err
	}
	p.Tickets = page.Data
	base := "/customers/" + strconv.FormatInt(c.ID, 10) + "?cursor="
	if page.PrevCursor != "" {
		p.PrevURL = base + url.QueryEscape(page.PrevCursor)
	}
	if page.NextCursor != "" {
		p.NextURL = base + url.QueryEscape(page.NextCursor)
	}
	return s.pages.ui.Customer(w, http.StatusOK, p)
}
