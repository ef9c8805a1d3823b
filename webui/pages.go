package webui

import (
	"net/http"
	"strings"
	"time"

	"github.com/valethq/valet"
)

// Layout is what every page shows around its content. Page types embed it.
type Layout struct {
	Title   string
	Section string    // the nav item to highlight: tickets, customers, settings
	Now     time.Time // for relative times ("5m ago")
	// User and Account are nil on signed-out pages; with both set a page
	// gets the full app frame (nav, top bar).
	User        *valet.User
	Account     *valet.Account
	Memberships []valet.Membership // for the account switcher
	CSRF        string             // the token every form carries
	Flash       string             // a one-line confirmation ("Reply sent.")
	RequestID   string
}

// OtherAccounts lists the memberships other than the current account, for
// the switcher in the top bar.
func (l *Layout) OtherAccounts() []valet.Membership {
	var out []valet.Membership
	for _, m := range l.Memberships {
		if l.Account == nil || m.Account.ID != l.Account.ID {
			out = append(out, m)
		}
	}
	return out
}

// Form is a submitted form: the values to show again and the problems per
// field, so a refused form comes back with nothing lost.
type Form struct {
	Values map[string]string
	Errors map[string][]string
}

// Get returns the submitted value of a field.
func (f Form) Get(name string) string { return f.Values[name] }

// Err returns the problems with a field, joined, or "".
func (f Form) Err(name string) string { return strings.Join(f.Errors[name], "; ") }

// HasErrors reports whether any field has a problem.
func (f Form) HasErrors() bool { return len(f.Errors) > 0 }

// SignInPage is the sign-in form.
type SignInPage struct {
	Layout
	Email string
	Next  string // a local path to go to after signing in
	Error string
	// Again asks a signed-in person for the password again (an app's
	// max_age or prompt=login); OtherUser, to sign in as the user an app
	// asked for (its id_token_hint).
	Again, OtherUser bool
}

// AccountsPage lets a member of several accounts pick one.
type AccountsPage struct {
	Layout
	Next string
}

// TicketFilter is the ticket list's filter as the form shows it.
type TicketFilter struct {
	Status   string // open, closed, all
	Assignee string // mine, unassigned, any
	Customer string // as typed: an id or an email
	// CustomerRef is the customer the filter resolved to, if any.
	CustomerRef *valet.Customer
	// ClearCustomerURL is the list with the same filter but no customer.
	ClearCustomerURL string
}

// Tab is one of the quick views above the ticket list.
type Tab struct {
	Label  string
	URL    string
	Active bool
}

// TicketsPage is the inbox: one page of tickets and the filter.
type TicketsPage struct {
	Layout
	Filter  TicketFilter
	Tabs    []Tab
	Tickets []valet.Ticket
	PrevURL string
	NextURL string
	Notice  string // why the list is empty, when it is for a reason
}

// TicketPage is one conversation with its customer and actions.
type TicketPage struct {
	Layout
	Ticket          *valet.Ticket
	Messages        []valet.Message
	Customer        *valet.Customer
	CustomerTickets []valet.Ticket // the customer's other recent tickets
	Reply           Form           // body
	Note            Form           // body
	Tags            Form           // tags
	// Composer is the tab the composer opens on: "reply" or "note".
	Composer string
}

// AssignedToMe reports whether the signed-in user is the assignee.
func (p *TicketPage) AssignedToMe() bool {
	return p.Ticket != nil && p.Ticket.AssigneeUser != nil && p.User != nil && p.Ticket.AssigneeUser.ID == p.User.ID
}

// CustomersPage lists the account's customers.
type CustomersPage struct {
	Layout
	Query     string // an email to look up
	Customers []valet.Customer
	PrevURL   string
	NextURL   string
}

// CustomerPage is a customer's profile and tickets.
type CustomerPage struct {
	Layout
	Customer *valet.Customer
	Data     string // the customer's data, pretty-printed JSON, or ""
	Tickets  []valet.Ticket
	PrevURL  string
	NextURL  string
}

// ScopeOption is one checkbox of the API key form.
type ScopeOption struct {
	valet.ScopeInfo
	Checked bool
}

// APIKeyRow is an API key as the settings list shows it.
type APIKeyRow struct {
	valet.APIKey
	Owner string // the name of the user the key acts as
}

// SettingsPage is the account's settings: members and API keys.
type SettingsPage struct {
	Layout
	CanManage bool // owners and admins; others see the page read-only
	Members   []valet.User
	APIKeys   []APIKeyRow
	Scopes    []ScopeOption
	Roles     []valet.Role // the roles the user may give a new member
	Member    Form         // email, name, role (never the password)
	Key       Form         // name
}

// APIKeyCreatedPage shows a new API key's secret, the only time it exists
// outside the request that created it.
type APIKeyCreatedPage struct {
	Layout
	Key     valet.APIKey
	Secret  string
	Email   string // the user the key belongs to, for the Basic header
	BaseURL string // the server's public URL, for the example call
}

// ErrorPage explains what went wrong.
type ErrorPage struct {
	Layout
	Status  int
	Heading string
	Message string
}

// SignIn renders the sign-in page.
func (u *UI) SignIn(w http.ResponseWriter, status int, p *SignInPage) error {
	return u.render(w, status, pageSignIn, p)
}

// Accounts renders the account switcher.
func (u *UI) Accounts(w http.ResponseWriter, status int, p *AccountsPage) error {
	return u.render(w, status, pageAccounts, p)
}

// Tickets renders the ticket list.
func (u *UI) Tickets(w http.ResponseWriter, status int, p *TicketsPage) error {
	return u.render(w, status, pageTickets, p)
}

// Ticket renders a ticket's page.
func (u *UI) Ticket(w http.ResponseWriter, status int, p *TicketPage) error {
	return u.render(w, status, pageTicket, p)
}

// Customers renders the customer list.
func (u *UI) Customers(w http.ResponseWriter, status int, p *CustomersPage) error {
	return u.render(w, status, pageCustomers, p)
}

// Customer renders a customer's page.
func (u *UI) Customer(w http.ResponseWriter, status int, p *CustomerPage) error {
	return u.render(w, status, pageCustomer, p)
}

// Settings renders the account settings.
func (u *UI) Settings(w http.ResponseWriter, status int, p *SettingsPage) error {
	return u.render(w, status, pageSettings, p)
}

// APIKeyCreated renders the page showing a new key's secret once.
func (u *UI) APIKeyCreated(w http.ResponseWriter, status int, p *APIKeyCreatedPage) error {
	return u.render(w, status, pageAPIKeyCreated, p)
}

// Error renders an error page.
func (u *UI) Error(w http.ResponseWriter, status int, p *ErrorPage) error {
	return u.render(w, status, pageError, p)
}
