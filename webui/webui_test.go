package webui

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/valethq/valet"
)

func mustUI(t *testing.T) *UI {
	t.Helper()
	u, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// sample returns a layout with a signed-in user, so pages render their full
// frame.
func sample() Layout {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	acme := valet.Account{ID: 1, Name: "acme", DisplayName: "Acme <Outfitters>", CreatedDatetime: now.Add(-90 * 24 * time.Hour)}
	globex := valet.Account{ID: 2, Name: "globex", DisplayName: "Globex"}
	return Layout{
		Title: "Test", Section: "tickets", Now: now,
		User:        &valet.User{ID: 7, Email: "ada@example.com", Name: "Ada Lovelace", Role: valet.RoleOwner},
		Account:     &acme,
		Memberships: []valet.Membership{{Account: acme, Role: valet.RoleOwner}, {Account: globex, Role: valet.RoleAgent}},
		CSRF:        "csrf-token-value",
		Flash:       "Saved.",
	}
}

func sampleTickets(now time.Time) []valet.Ticket {
	closed := now.Add(-time.Hour)
	return []valet.Ticket{
		{ID: 1, Subject: "Where is my order?", Status: valet.StatusOpen, Priority: "high", Channel: "email",
			Customer: valet.PersonRef{ID: 3, Name: "Grace Hopper", Email: "grace@example.com"},
			Tags:     []valet.Tag{{ID: 1, Name: "shipping"}}, Excerpt: "It has been two weeks", MessagesCount: 2,
			CreatedDatetime: now.Add(-48 * time.Hour), UpdatedDatetime: now.Add(-5 * time.Minute)},
		{ID: 2, Subject: "", Status: valet.StatusClosed, Priority: "normal", Channel: "chat",
			Customer:     valet.PersonRef{ID: 4, Email: "anon@example.com"},
			AssigneeUser: &valet.PersonRef{ID: 7, Name: "Ada Lovelace"}, MessagesCount: 1,
			CreatedDatetime: now.Add(-400 * 24 * time.Hour), UpdatedDatetime: now.Add(-300 * 24 * time.Hour), ClosedDatetime: &closed},
	}
}

func TestRenderEveryPage(t *testing.T) {
	u := mustUI(t)
	l := sample()
	now := l.Now
	tickets := sampleTickets(now)
	customer := &valet.Customer{ID: 3, Name: "Grace Hopper", Email: "grace@example.com", ExternalID: "shop-42",
		Language: "en", Timezone: "Europe/Paris", Note: "VIP", CreatedDatetime: now.Add(-24 * time.Hour)}
	used := now.Add(-time.Minute)
	signedOut := Layout{Title: "Sign in", Now: now, CSRF: "x"}

	cases := []struct {
		name   string
		render func(w http.ResponseWriter) error
		want   []string
	}{
		{"signin", func(w http.ResponseWriter) error {
			return u.SignIn(w, 401, &SignInPage{Layout: signedOut, Email: "a@b.c", Next: "/tickets/1", Error: "Wrong email or password."})
		}, []string{`name="csrf" value="x"`, `value="/tickets/1"`, "Wrong email or password."}},
		{"accounts", func(w http.ResponseWriter) error {
			bare := l
			bare.Account = nil
			return u.Accounts(w, 200, &AccountsPage{Layout: bare})
		}, []string{"Choose a helpdesk", "Globex"}},
		{"tickets", func(w http.ResponseWriter) error {
			return u.Tickets(w, 200, &TicketsPage{Layout: l, Tickets: tickets, NextURL: "/tickets?cursor=abc",
				Filter: TicketFilter{Status: "open", Assignee: "any", CustomerRef: customer, ClearCustomerURL: "/tickets"},
				Tabs:   []Tab{{Label: "Open", URL: "/tickets", Active: true}}})
		}, []string{"Where is my order?", "(no subject)", "5m ago", "pill-open", "shipping", "Unassigned", "Acme &lt;Outfitters&gt;", "Globex"}},
		{"tickets empty", func(w http.ResponseWriter) error {
			return u.Tickets(w, 200, &TicketsPage{Layout: l, Filter: TicketFilter{Status: "open"}, Notice: "No customer with that email"})
		}, []string{"No customer with that email"}},
		{"ticket", func(w http.ResponseWriter) error {
			return u.Ticket(w, 400, &TicketPage{Layout: l, Ticket: &tickets[0], Customer: customer,
				Messages: []valet.Message{
					{ID: 1, Public: true, Sender: valet.PersonRef{Name: "Grace Hopper"}, BodyText: "Hello\n<b>there</b>", CreatedDatetime: now},
					{ID: 2, Public: true, FromAgent: true, Sender: valet.PersonRef{Name: "Ada Lovelace"}, BodyHTML: "<p>Hi <b>Grace</b></p><p>Done&amp;dusted</p>", CreatedDatetime: now},
					{ID: 3, Public: false, FromAgent: true, Sender: valet.PersonRef{Name: "Ada Lovelace"}, BodyText: "note to self", CreatedDatetime: now},
				},
				CustomerTickets: tickets[1:],
				Reply:           Form{Values: map[string]string{"body": "kept <input>"}, Errors: map[string][]string{"body": {"is required"}}},
				Composer:        "note"})
		}, []string{"msg-customer", "msg-agent", "msg-note", "Internal note", "Hello\n&lt;b&gt;there&lt;/b&gt;", "Hi Grace\n\nDone&amp;dusted",
			"kept &lt;input&gt;", "is required", `id="tab-note" class="tab-radio sr-only" checked`, "Close ticket", "Assign to me"}},
		{"ticket without customer", func(w http.ResponseWriter) error {
			return u.Ticket(w, 200, &TicketPage{Layout: l, Ticket: &tickets[1]})
		}, []string{"Reopen", "Unassign", "the customer"}},
		{"customers", func(w http.ResponseWriter) error {
			return u.Customers(w, 200, &CustomersPage{Layout: l, Customers: []valet.Customer{*customer}, PrevURL: "/customers?cursor=x"})
		}, []string{"Grace Hopper", "grace@example.com", "Newer"}},
		{"customer", func(w http.ResponseWriter) error {
			return u.Customer(w, 200, &CustomerPage{Layout: l, Customer: customer, Tickets: tickets, Data: "{\n  \"plan\": \"gold\"\n}"})
		}, []string{"shop-42", "Europe/Paris", "&#34;plan&#34;", "Where is my order?"}},
		{"settings manage", func(w http.ResponseWriter) error {
			return u.Settings(w, 400, &SettingsPage{Layout: l, CanManage: true,
				Members: []valet.User{*l.User},
				APIKeys: []APIKeyRow{{APIKey: valet.APIKey{ID: 9, Name: "Sync", Hint: "…abcd", Scopes: valet.ScopeSet{valet.ScopeTicketsRead}, CreatedDatetime: now, LastUsedDatetime: &used}, Owner: "Ada"}},
				Scopes:  []ScopeOption{{ScopeInfo: valet.Scopes[6], Checked: true}},
				Roles:   []valet.Role{valet.RoleAgent, valet.RoleAdmin},
				Member:  Form{Values: map[string]string{"email": "new@example.com", "role": "admin"}, Errors: map[string][]string{"name": {"is required"}}},
			})
		}, []string{"Add member", "Create key", "new@example.com", `value="admin" selected`, "Read tickets, their messages and content", "1m ago", "Delete"}},
		{"settings read-only", func(w http.ResponseWriter) error {
			agent := l
			agent.User = &valet.User{ID: 8, Name: "Bob", Email: "bob@example.com", Role: valet.RoleAgent}
			return u.Settings(w, 200, &SettingsPage{Layout: agent, Members: []valet.User{*agent.User},
				APIKeys: []APIKeyRow{{APIKey: valet.APIKey{ID: 9, Name: "Sync", CreatedDatetime: now}}}})
		}, []string{"read-only", "never"}},
		{"apikey", func(w http.ResponseWriter) error {
			return u.APIKeyCreated(w, 200, &APIKeyCreatedPage{Layout: l, Key: valet.APIKey{Name: "Sync", Scopes: valet.APIScopes()},
				Secret: "vak_secret", Email: "ada@example.com", BaseURL: "http://127.0.0.1:8080"})
		}, []string{"vak_secret", "ada@example.com:vak_secret", "only time"}},
		{"consent", func(w http.ResponseWriter) error {
			read, _ := valet.LookupScope(valet.ScopeTicketsRead)
			hooks, _ := valet.LookupScope(valet.ScopeIntegrationsWrite)
			return u.Consent(w, 200, &ConsentPage{Layout: l, ID: "req-1", App: &valet.App{Name: "Hub", DeveloperName: "Hub Inc"},
				Account: &valet.Account{Name: "acme", DisplayName: "Acme"}, New: []valet.ScopeInfo{read, hooks}})
		}, []string{"Hub Inc", "Read tickets, their messages and content</li>",
			"Set up webhooks that notify the app of changes <span class=\"muted small\">(only while you are an owner or admin of the account)</span>"}},
		{"error signed in", func(w http.ResponseWriter) error {
			return u.Error(w, 404, &ErrorPage{Layout: l, Status: 404, Heading: "Not found", Message: "No such ticket."})
		}, []string{"No such ticket.", "sidenav"}},
		{"error signed out", func(w http.ResponseWriter) error {
			return u.Error(w, 403, &ErrorPage{Layout: signedOut, Status: 403, Heading: "Forbidden", Message: "Bad token."})
		}, []string{"Bad token.", "Go to sign in"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := tc.render(rec); err != nil {
				t.Fatal(err)
			}
			body := rec.Body.String()
			for _, want := range tc.want {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if strings.Contains(body, " style=") || strings.Contains(body, "<style") || strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") {
				t.Error("page has inline style or script, which the CSP forbids")
			}
		})
	}
}

// errWriter fails the test if anything is written: a failed render must not
// write half a page.
type errWriter struct {
	t      *testing.T
	header http.Header
}

func (w *errWriter) Header() http.Header { return w.header }
func (w *errWriter) Write([]byte) (int, error) {
	w.t.Error("wrote a body after a template error")
	return 0, errors.New("no")
}
func (w *errWriter) WriteHeader(int) { w.t.Error("wrote a status after a template error") }

func TestRenderErrorWritesNothing(t *testing.T) {
	u := mustUI(t)
	// A ticket page without a ticket fails in the template.
	err := u.Ticket(&errWriter{t: t, header: http.Header{}}, 200, &TicketPage{Layout: sample()})
	if err == nil {
		t.Fatal("rendering a ticket page without a ticket succeeded")
	}
}

func TestNewFailsOnMissingPage(t *testing.T) {
	fsys := fstest.MapFS{
		"templates/layout.html": {Data: []byte(`{{define "app"}}{{end}}`)},
		"static/app.css":        {Data: []byte(`body{}`)},
	}
	for _, name := range pageNames[:len(pageNames)-1] {
		fsys["templates/"+name+".html"] = &fstest.MapFile{Data: []byte(`{{define "page"}}x{{end}}{{define "content"}}{{end}}`)}
	}
	if _, err := newUI(fsys); err == nil || !strings.Contains(err.Error(), pageNames[len(pageNames)-1]) {
		t.Fatalf("newUI with a missing page: err = %v", err)
	}
	fsys["templates/"+pageNames[len(pageNames)-1]+".html"] = &fstest.MapFile{Data: []byte(`{{define "page"}}x{{end}}`)}
	if _, err := newUI(fsys); err == nil || !strings.Contains(err.Error(), `"content"`) {
		t.Fatalf("newUI with a page lacking content: err = %v", err)
	}
}

func TestStatic(t *testing.T) {
	u := mustUI(t)
	h := u.Static()
	get := func(path string) *http.Response {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Result()
	}
	css := u.Asset("app.css")
	if !strings.HasPrefix(css, "/static/") || !strings.HasSuffix(css, "/app.css") {
		t.Fatalf("Asset = %q", css)
	}
	res := get(css)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Cache-Control"), "immutable") ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") || len(body) == 0 {
		t.Fatalf("GET %s: %d %v", css, res.StatusCode, res.Header)
	}
	if res := get("/static/old/app.css"); res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("old version: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	for _, p := range []string{"/static/x/missing.css", "/static/x/", "/static/x", "/static/x/../webui.go"} {
		if res := get(p); res.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", p, res.StatusCode)
		}
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<p>Hello</p><p>World</p>", "Hello\n\nWorld"},
		{"a<br>b<br/>c", "a\nb\nc"},
		{"<style>p{}</style><script>alert(1)</script>x &amp; y", "x & y"},
		{"<ul><li>one</li><li>two</li></ul>", "• one\n• two"},
		{"<p>a</p>\n\n\n\n<p>b</p>", "a\n\nb"},
	}
	for _, tt := range tests {
		if got := htmlToText(tt.in); got != tt.want {
			t.Errorf("htmlToText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		at   any
		want string
	}{
		{now.Add(-10 * time.Second), "just now"},
		{now.Add(-5 * time.Minute), "5m ago"},
		{now.Add(-3 * time.Hour), "3h ago"},
		{now.Add(-50 * time.Hour), "2d ago"},
		{time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), "Mar 1"},
		{time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), "Mar 1, 2024"},
		{(*time.Time)(nil), ""},
		{time.Time{}, ""},
	}
	for _, tt := range tests {
		if got := ago(now, tt.at); got != tt.want {
			t.Errorf("ago(%v) = %q, want %q", tt.at, got, tt.want)
		}
	}
	if initials("ada  lovelace byron") != "AL" || initials("") != "?" {
		t.Error("initials")
	}
}
