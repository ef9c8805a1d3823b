package server

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

// inboxClock is a settable clock shared by the store and the server, so
// tests can expire sessions and drain the sign-in limiter.
type inboxClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *inboxClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *inboxClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// inboxHash hashes test passwords with small argon2id parameters; Verify
// reads the parameters from the hash, so sign-in stays fast in tests.
func inboxHash(tb testing.TB, password string) string {
	tb.Helper()
	h, err := passwd.Params{MemoryKiB: 512, Time: 1, Threads: 1}.Hash(password)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

const inboxPassword = "correct horse battery"

// inboxEnv is a server on a real SQLite store with two accounts:
// acme (owner Olivia, agent Aaron, customer Carla with a ticket) and globex
// (owner Gus with his own customer and ticket). Mia belongs to both.
type inboxEnv struct {
	store  *sqlstore.Store
	path   string // the SQLite file
	cfg    Config
	srv    *Server
	ts     *httptest.Server
	clock  *inboxClock
	acme   *valet.Account
	globex *valet.Account

	owner, agent, gus, mia *valet.User
	carla, globexCustomer  *valet.Customer
	ticket, globexTicket   *valet.Ticket
}

func newInboxEnv(t *testing.T, tune ...func(*Config)) *inboxEnv {
	t.Helper()
	ctx := context.Background()
	clock := &inboxClock{t: time.Now().UTC().Truncate(time.Microsecond)}
	path := filepath.Join(t.TempDir(), "valet.db")
	e := &inboxEnv{store: sqltest.OpenSQLiteFile(t, path, sqlstore.WithClock(clock)), clock: clock, path: path}
	cfg := DefaultConfig()
	cfg.Issuer = "http://valet.test"
	for _, f := range tune {
		f(&cfg)
	}
	e.cfg = cfg
	srv, err := New(e.store, cfg, WithClock(clock), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		e.ts.Close()
		_ = srv.Close(context.Background())
	})

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	e.acme = &valet.Account{Name: "acme", DisplayName: "Acme Outfitters"}
	e.globex = &valet.Account{Name: "globex", DisplayName: "Globex"}
	must(e.store.CreateAccount(ctx, e.acme))
	must(e.store.CreateAccount(ctx, e.globex))
	user := func(email, name string, memberships map[int64]valet.Role) *valet.User {
		u := &valet.User{Email: email, Name: name, PasswordHash: inboxHash(t, inboxPassword)}
		must(e.store.CreateUser(ctx, u))
		for acc, role := range memberships {
			must(e.store.AddMember(ctx, acc, u.ID, role))
		}
		return u
	}
	e.owner = user("olivia@acme.test", "Olivia Owner", map[int64]valet.Role{e.acme.ID: valet.RoleOwner})
	e.agent = user("aaron@acme.test", "Aaron Agent", map[int64]valet.Role{e.acme.ID: valet.RoleAgent})
	e.gus = user("gus@globex.test", "Gus Globex", map[int64]valet.Role{e.globex.ID: valet.RoleOwner})
	e.mia = user("mia@both.test", "Mia Multi", map[int64]valet.Role{e.acme.ID: valet.RoleAdmin, e.globex.ID: valet.RoleAgent})

	e.carla = &valet.Customer{AccountID: e.acme.ID, Email: "carla@example.com", Name: "Carla Customer"}
	must(e.store.CreateCustomer(ctx, e.carla))
	e.globexCustomer = &valet.Customer{AccountID: e.globex.ID, Email: "gina@example.com", Name: "Gina Globex"}
	must(e.store.CreateCustomer(ctx, e.globexCustomer))
	e.ticket = e.newTicket(t, e.acme.ID, e.carla, "Parcel never arrived", "Hello, my parcel has not arrived.")
	e.globexTicket = e.newTicket(t, e.globex.ID, e.globexCustomer, "Globex secret plans", "Top secret.")
	return e
}

func (e *inboxEnv) newTicket(t *testing.T, accountID int64, c *valet.Customer, subject, body string) *valet.Ticket {
	t.Helper()
	tk := &valet.Ticket{AccountID: accountID, Subject: subject, Channel: "email", Via: "email", Customer: c.Ref()}
	if err := e.store.CreateTicket(context.Background(), tk, []*valet.Message{
		{Public: true, Channel: "email", Via: "email", BodyText: body},
	}); err != nil {
		t.Fatal(err)
	}
	return tk
}

// inboxBrowser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see every Location.
type inboxBrowser struct {
	t    *testing.T
	e    *inboxEnv
	c    *http.Client
	last string // the body of the last page
}

func (e *inboxEnv) browser(t *testing.T) *inboxBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &inboxBrowser{t: t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type inboxAnswer struct {
	status   int
	body     string
	location string
	header   http.Header
	cookies  []*http.Cookie
}

func (b *inboxBrowser) do(req *http.Request) inboxAnswer {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	b.last = string(body)
	return inboxAnswer{status: res.StatusCode, body: string(body), location: res.Header.Get("Location"),
		header: res.Header, cookies: res.Cookies()}
}

func (b *inboxBrowser) get(path string) inboxAnswer {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.e.ts.URL+path, nil)
	return b.do(req)
}

// post submits a form as a inboxBrowser would, with the CSRF token of the last
// page unless the form sets one.
func (b *inboxBrowser) post(path string, form url.Values) inboxAnswer {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", inboxCSRFToken(b.t, b.last))
	}
	req, _ := http.NewRequest("POST", b.e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var inboxCSRFInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func inboxCSRFToken(t *testing.T, page string) string {
	t.Helper()
	m := inboxCSRFInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%.2000s", page)
	}
	return html.UnescapeString(m[1])
}

// signIn signs in through the form and returns the redirect inboxAnswer.
func (b *inboxBrowser) signIn(email, password, next string) inboxAnswer {
	b.t.Helper()
	path := "/signin"
	if next != "" {
		path += "?next=" + url.QueryEscape(next)
	}
	b.get(path)
	form := url.Values{"email": {email}, "password": {password}}
	if next != "" {
		form.Set("next", next)
	}
	return b.post("/signin", form)
}

func (b *inboxBrowser) mustSignIn(u *valet.User) {
	b.t.Helper()
	if a := b.signIn(u.Email, inboxPassword, ""); a.status != http.StatusSeeOther {
		b.t.Fatalf("sign in as %s: %d\n%.1500s", u.Email, a.status, a.body)
	}
}

func inboxStatus(t *testing.T, a inboxAnswer, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status = %d, want %d\n%.3000s", a.status, status, a.body)
	}
}

func inboxBody(t *testing.T, a inboxAnswer, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(a.body, p) {
			t.Errorf("page lacks %q", p)
		}
	}
}

func inboxID(n int64) string { return fmt.Sprint(n) }

func TestInboxSignInAndOut(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	b := e.browser(t)

	a := b.get("/")
	inboxStatus(t, a, http.StatusSeeOther)
	if a.location != "/signin" {
		t.Fatalf("/ redirects to %q", a.location)
	}
	a = b.get("/tickets/" + inboxID(e.ticket.ID))
	if a.status != http.StatusSeeOther || a.location != "/signin?next="+url.QueryEscape("/tickets/"+inboxID(e.ticket.ID)) {
		t.Fatalf("signed-out ticket page: %d %q", a.status, a.location)
	}

	a = b.get("/signin")
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, `name="email"`, `name="password"`, `autocomplete="current-password"`)
	var csrfCookie *http.Cookie
	for _, c := range a.cookies {
		if c.Name == csrfCookieName {
			csrfCookie = c
		}
	}
	if csrfCookie == nil || !csrfCookie.HttpOnly || csrfCookie.SameSite != http.SameSiteLaxMode {
		t.Fatalf("sign-in CSRF cookie = %+v", csrfCookie)
	}

	for _, tc := range []struct{ name, email, password string }{
		{"wrong password", e.owner.Email, "wrong password!"},
		{"unknown email", "nobody@acme.test", inboxPassword},
		{"other case and spaces", "  OLIVIA@acme.test ", "nope nope nope"},
	} {
		a = b.post("/signin", url.Values{"email": {tc.email}, "password": {tc.password}})
		if a.status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d", tc.name, a.status)
		}
		inboxBody(t, a, "Wrong email or password.", `value="`+strings.TrimSpace(tc.email)+`"`)
	}
	a = b.post("/signin", url.Values{"email": {""}, "password": {""}})
	inboxStatus(t, a, http.StatusBadRequest)

	a = b.signIn("Olivia@Acme.test", inboxPassword, "")
	inboxStatus(t, a, http.StatusSeeOther)
	if a.location != "/tickets" {
		t.Fatalf("after sign-in: Location %q", a.location)
	}
	var session *http.Cookie
	for _, c := range a.cookies {
		if c.Name == sessionCookieName {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" ||
		session.Secure || !strings.HasPrefix(session.Value, valet.PrefixSession) {
		t.Fatalf("session cookie = %+v", session)
	}

	a = b.get("/tickets")
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "Parcel never arrived", "Carla Customer", "Acme Outfitters", "Olivia Owner", "Hello, my parcel has not arrived.")
	if strings.Contains(a.body, "Globex secret plans") {
		t.Fatal("acme's inbox shows a globex ticket")
	}
	// Signed in, the sign-in page and / send the inboxBrowser on.
	if a := b.get("/signin"); a.status != http.StatusSeeOther || a.location != "/tickets" {
		t.Fatalf("GET /signin when signed in: %d %q", a.status, a.location)
	}
	if a := b.get("/"); a.location != "/tickets" {
		t.Fatalf("GET / when signed in: %q", a.location)
	}

	b.get("/tickets")
	a = b.post("/signout", nil)
	if a.status != http.StatusSeeOther || a.location != "/signin" {
		t.Fatalf("sign out: %d %q", a.status, a.location)
	}
	// The session is gone from the store, not only from the inboxBrowser.
	if _, err := e.store.FindSession(context.Background(), session.Value); valet.ErrorCode(err) != valet.EUNAUTHORIZED {
		t.Fatalf("session after sign-out: %v", err)
	}
	if a := b.get("/tickets"); a.status != http.StatusSeeOther {
		t.Fatalf("after sign-out /tickets = %d", a.status)
	}
}

func TestInboxSessionExpiry(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t, func(c *Config) { c.SessionTTL = time.Hour })
	b := e.browser(t)
	b.mustSignIn(e.owner)
	inboxStatus(t, b.get("/tickets"), http.StatusOK)
	e.clock.Advance(time.Hour + time.Second)
	a := b.get("/tickets?status=closed")
	if a.status != http.StatusSeeOther || a.location != "/signin?next="+url.QueryEscape("/tickets?status=closed") {
		t.Fatalf("expired session: %d %q", a.status, a.location)
	}

	// An unknown or malformed cookie is the same as none.
	jar := b.c.Jar
	u, _ := url.Parse(e.ts.URL)
	for _, v := range []string{"vss_unknown", "garbage", ""} {
		jar.SetCookies(u, []*http.Cookie{{Name: sessionCookieName, Value: v, Path: "/"}})
		if a := b.get("/settings"); a.status != http.StatusSeeOther || !strings.HasPrefix(a.location, "/signin") {
			t.Fatalf("cookie %q: %d %q", v, a.status, a.location)
		}
	}
}

func TestInboxSignInRateLimit(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t, func(c *Config) { c.SignInLimit = RateLimit{Requests: 3, Per: time.Minute} })

	// Per email: three failures fill the bucket; the next attempt is refused
	// even with the right password, without checking it.
	b := e.browser(t)
	for i := range 3 {
		if a := b.signIn(e.owner.Email, "wrong password "+inboxID(int64(i)), ""); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, a.status)
		}
	}
	a := b.signIn(e.owner.Email, inboxPassword, "")
	inboxStatus(t, a, http.StatusTooManyRequests)
	inboxBody(t, a, "Too many failed sign-ins")
	if a.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// The bucket drains at 3 per minute: after 20 s one attempt fits again.
	e.clock.Advance(21 * time.Second)
	inboxStatus(t, b.signIn(e.owner.Email, inboxPassword, ""), http.StatusSeeOther)

	// Per address: failures on different (even unknown) emails add up.
	e.clock.Advance(time.Hour)
	b2 := e.browser(t)
	for _, email := range []string{"x@acme.test", "y@acme.test", "z@acme.test"} {
		inboxStatus(t, b2.signIn(email, "whatever pass", ""), http.StatusUnauthorized)
	}
	inboxStatus(t, b2.signIn(e.agent.Email, inboxPassword, ""), http.StatusTooManyRequests)

	// Successful sign-ins do not count.
	e.clock.Advance(time.Hour)
	for range 5 {
		inboxStatus(t, e.browser(t).signIn(e.gus.Email, inboxPassword, ""), http.StatusSeeOther)
	}
}

// TestInboxSignInLimitSharedByNodes: a second node on the same database
// counts the failures the first one saw, so a load balancer does not
// multiply the attempts a password guesser gets.
func TestInboxSignInLimitSharedByNodes(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t, func(c *Config) { c.SignInLimit = RateLimit{Requests: 3, Per: time.Minute} })
	srv, err := New(sqltest.OpenSQLiteFile(t, e.path, sqlstore.WithClock(e.clock)), e.cfg, WithClock(e.clock),
		WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	node2 := *e
	node2.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(func() { node2.ts.Close(); _ = srv.Close(context.Background()) })

	for i, node := range []*inboxEnv{e, &node2, e} {
		if a := node.browser(t).signIn(e.owner.Email, "wrong password "+inboxID(int64(i)), ""); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, a.status)
		}
	}
	for _, node := range []*inboxEnv{&node2, e} {
		inboxStatus(t, node.browser(t).signIn(e.owner.Email, inboxPassword, ""), http.StatusTooManyRequests)
	}
	e.clock.Advance(21 * time.Second)
	inboxStatus(t, node2.browser(t).signIn(e.owner.Email, inboxPassword, ""), http.StatusSeeOther)
}

func TestInboxCSRF(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	b := e.browser(t)
	b.mustSignIn(e.owner)
	path := "/tickets/" + inboxID(e.ticket.ID)
	b.get(path)

	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"missing token", url.Values{"body": {"hi"}, "csrf": nil}},
		{"empty token", url.Values{"body": {"hi"}, "csrf": {""}}},
		{"wrong token", url.Values{"body": {"hi"}, "csrf": {"not-the-token"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := tc.form
			if form["csrf"] == nil {
				form = url.Values{"body": {"hi"}}
				req, _ := http.NewRequest("POST", e.ts.URL+path+"/reply", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				a := b.do(req)
				inboxStatus(t, a, http.StatusForbidden)
				return
			}
			a := b.post(path+"/reply", form)
			inboxStatus(t, a, http.StatusForbidden)
			inboxBody(t, a, "This form has expired")
		})
	}
	// A cross-site POST is refused even with the right token.
	b.get(path)
	form := url.Values{"body": {"hi"}, "csrf": {inboxCSRFToken(t, b.last)}}
	req, _ := http.NewRequest("POST", e.ts.URL+path+"/reply", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	inboxStatus(t, b.do(req), http.StatusForbidden)

	msgs, err := e.store.ListMessages(context.Background(), e.acme.ID, e.ticket.ID, valet.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs.Data) != 1 {
		t.Fatalf("a refused form changed the ticket: %d messages", len(msgs.Data))
	}

	// Sign-in form: the token must match the double-submit cookie.
	b2 := e.browser(t)
	b2.get("/signin")
	a := b2.post("/signin", url.Values{"email": {e.owner.Email}, "password": {inboxPassword}, "csrf": {"forged"}})
	inboxStatus(t, a, http.StatusForbidden)
	inboxBody(t, a, "expired", e.owner.Email)
	// Without the cookie (a cross-site form cannot set it) the token alone fails.
	b3 := e.browser(t)
	a = b3.post("/signin", url.Values{"email": {e.owner.Email}, "password": {inboxPassword}, "csrf": {inboxCSRFToken(t, b2.last)}})
	inboxStatus(t, a, http.StatusForbidden)
}

func TestInboxOtherAccountIs404(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	b := e.browser(t)
	b.mustSignIn(e.owner)
	b.get("/tickets")
	gt := "/tickets/" + inboxID(e.globexTicket.ID)
	for _, path := range []string{gt, "/customers/" + inboxID(e.globexCustomer.ID), "/tickets/999999", "/tickets/abc", "/no-such-page"} {
		a := b.get(path)
		inboxStatus(t, a, http.StatusNotFound)
		inboxBody(t, a, "does not exist")
		if strings.Contains(a.body, "Globex secret plans") || strings.Contains(a.body, "Gina") {
			t.Fatalf("%s leaks another account's data", path)
		}
	}
	b.get("/tickets")
	for _, action := range []struct {
		path string
		form url.Values
	}{
		{gt + "/reply", url.Values{"body": {"pwned"}}},
		{gt + "/note", url.Values{"body": {"pwned"}}},
		{gt + "/status", url.Values{"status": {"closed"}}},
		{gt + "/assign", url.Values{"assignee": {"me"}}},
		{gt + "/tags", url.Values{"tags": {"pwned"}}},
	} {
		inboxStatus(t, b.post(action.path, action.form), http.StatusNotFound)
	}
	tk, err := e.store.FindTicket(context.Background(), e.globex.ID, e.globexTicket.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Status != valet.StatusOpen || tk.MessagesCount != 1 || tk.AssigneeUser != nil || len(tk.Tags) != 0 {
		t.Fatalf("globex's ticket changed: %+v", tk)
	}
	// The customer filter cannot reach another account's customer either.
	a := b.get("/tickets?status=all&customer=" + inboxID(e.globexCustomer.ID))
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "No customer matches")
}

func TestInboxTicketActions(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	ctx := context.Background()
	b := e.browser(t)
	b.mustSignIn(e.owner)
	path := "/tickets/" + inboxID(e.ticket.ID)

	a := b.get(path)
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "Parcel never arrived", "Carla Customer", "carla@example.com", "Reply to customer", "Internal note", "Close ticket", "Assign to me")

	a = b.post(path+"/reply", url.Values{"body": {"Sorry Carla, a new parcel is on its way."}})
	inboxStatus(t, a, http.StatusSeeOther)
	if !strings.HasPrefix(a.location, path+"#message-") {
		t.Fatalf("reply redirects to %q", a.location)
	}
	a = b.get(path)
	inboxBody(t, a, "Reply sent.", "Sorry Carla, a new parcel is on its way.", "msg-agent")
	if strings.Contains(b.get(path).body, "Reply sent.") {
		t.Error("the flash message shows twice")
	}
	a = b.post(path+"/note", url.Values{"body": {"Carrier lost it; refund if it happens again."}})
	inboxStatus(t, a, http.StatusSeeOther)
	a = b.get(path)
	inboxBody(t, a, "Internal note added.", "msg-note", "Carrier lost it; refund if it happens again.")

	a = b.post(path+"/assign", url.Values{"assignee": {"me"}})
	inboxStatus(t, a, http.StatusSeeOther)
	b.get(path)
	a = b.post(path+"/tags", url.Values{"tags": {"shipping, refund ,shipping"}})
	inboxStatus(t, a, http.StatusSeeOther)
	b.get(path)
	a = b.post(path+"/status", url.Values{"status": {"closed"}})
	inboxStatus(t, a, http.StatusSeeOther)

	tk, err := e.store.FindTicket(ctx, e.acme.ID, e.ticket.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Status != valet.StatusClosed || tk.ClosedDatetime == nil || tk.AssigneeUser == nil || tk.AssigneeUser.ID != e.owner.ID || len(tk.Tags) != 2 {
		t.Fatalf("after close: %+v", tk)
	}
	msgs, err := e.store.ListMessages(ctx, e.acme.ID, e.ticket.ID, valet.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs.Data) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs.Data))
	}
	reply, note := msgs.Data[1], msgs.Data[2]
	if !reply.Public || !reply.FromAgent || reply.Sender.ID != e.owner.ID || reply.Channel != "email" || reply.Subject != "Re: Parcel never arrived" {
		t.Fatalf("reply = %+v", reply)
	}
	if note.Public || !note.FromAgent || note.Sender.ID != e.owner.ID || note.Channel != "internal-note" {
		t.Fatalf("note = %+v", note)
	}

	a = b.get(path)
	inboxBody(t, a, "Ticket closed.", "pill-closed", "Reopen", "Unassign", "shipping", "refund")
	a = b.post(path+"/status", url.Values{"status": {"open"}})
	inboxStatus(t, a, http.StatusSeeOther)
	b.get(path)
	a = b.post(path+"/tags/remove", url.Values{"tag": {"refund"}})
	inboxStatus(t, a, http.StatusSeeOther)
	b.get(path)
	inboxStatus(t, b.post(path+"/assign", url.Values{"assignee": {"none"}}), http.StatusSeeOther)
	b.get(path)
	inboxStatus(t, b.post(path+"/reply", url.Values{"body": {"Closing this now."}, "then": {"close"}}), http.StatusSeeOther)

	tk, _ = e.store.FindTicket(ctx, e.acme.ID, e.ticket.ID)
	if tk.Status != valet.StatusClosed || tk.AssigneeUser != nil || len(tk.Tags) != 1 || tk.Tags[0].Name != "shipping" || tk.MessagesCount != 4 {
		t.Fatalf("after reopen, untag, unassign, reply and close: %+v", tk)
	}

	// Every change was recorded as made by the signed-in user.
	events, err := e.store.ListEvents(ctx, e.acme.ID, valet.EventFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var byOwner int
	for _, ev := range events {
		if ev.Type == valet.EventTicketCreated || ev.Type == valet.EventCustomerCreated || (ev.Type == valet.EventTicketMessageCreated && ev.ObjectID == msgs.Data[0].ID) {
			continue
		}
		if ev.UserID == nil || *ev.UserID != e.owner.ID {
			t.Errorf("event %s %d has user %v, want %d", ev.Type, ev.ObjectID, ev.UserID, e.owner.ID)
		}
		byOwner++
	}
	if byOwner < 8 {
		t.Errorf("%d events by the owner, want at least 8", byOwner)
	}
}

func TestInboxBadInputIsKept(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	b := e.browser(t)
	b.mustSignIn(e.owner)
	path := "/tickets/" + inboxID(e.ticket.ID)

	b.get(path)
	a := b.post(path+"/reply", url.Values{"body": {"   \n "}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "Write a reply before sending.", `aria-invalid="true"`)

	b.get(path)
	a = b.post(path+"/note", url.Values{"body": {"  "}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "Write a note before sending.", `id="tab-note" class="tab-radio sr-only" checked`)

	long := strings.Repeat("x", valet.MaxBodyLen+1)
	b.get(path)
	a = b.post(path+"/reply", url.Values{"body": {long}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "too long", long)

	b.get(path)
	a = b.post(path+"/tags", url.Values{"tags": {" , "}})
	inboxStatus(t, a, http.StatusBadRequest)

	b.get("/settings")
	a = b.post("/settings/members", url.Values{"email": {"not an email"}, "name": {"Nora New"}, "role": {"agent"}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "Enter a valid email address.", `value="not an email"`, `value="Nora New"`)

	b.get("/settings")
	a = b.post("/settings/members", url.Values{"email": {"nora@acme.test"}, "name": {"Nora New"}, "password": {"short"}, "role": {"admin"}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "Choose a password", `value="nora@acme.test"`, `value="admin" selected`)
	if strings.Contains(a.body, `value="short"`) {
		t.Error("the refused form echoes the password")
	}

	b.get("/settings")
	a = b.post("/settings/apikeys", url.Values{"name": {"Order sync"}, "scopes": {"tickets:read", "openid"}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "Choose scopes from the list.", `value="Order sync"`)
	b.get("/settings")
	a = b.post("/settings/apikeys", url.Values{"name": {"Order sync"}, "scopes": {"tickets:read"}, "csrf": {inboxCSRFToken(t, b.last)}})
	if a.status != http.StatusOK {
		t.Fatalf("valid key: %d", a.status)
	}
	b.get("/settings")
	a = b.post("/settings/apikeys", url.Values{"name": {""}, "scopes": {"tickets:write"}})
	inboxStatus(t, a, http.StatusBadRequest)
	if !regexp.MustCompile(`<input type="checkbox" name="scopes" value="tickets:write" checked>`).MatchString(a.body) {
		t.Error("the refused key form lost its checked scopes")
	}
}

func TestInboxAPIKeys(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	ctx := context.Background()
	b := e.browser(t)
	b.mustSignIn(e.owner)

	a := b.get("/settings")
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "Olivia Owner", "Aaron Agent", "Create key", "Read tickets, their messages and content", "Add member")
	a = b.post("/settings/apikeys", url.Values{"name": {"Order sync"}, "scopes": {"tickets:read", "customers:read"}})
	inboxStatus(t, a, http.StatusOK)
	if cc := a.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("key page Cache-Control = %q", cc)
	}
	m := regexp.MustCompile(`value="(vak_[A-Za-z0-9_-]+)"`).FindStringSubmatch(a.body)
	if m == nil {
		t.Fatalf("no secret on the result page:\n%.2000s", a.body)
	}
	secret := m[1]
	inboxBody(t, a, "only time", e.owner.Email+":"+secret)

	cred, err := e.store.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if cred.AccountID != e.acme.ID || cred.UserID != e.owner.ID ||
		cred.Scopes.String() != "customers:read tickets:read" {
		t.Fatalf("credential = %+v", cred)
	}
	// The key works on the API too.
	req, _ := http.NewRequest("GET", e.ts.URL+"/api/tickets/"+inboxID(e.ticket.ID), nil)
	req.SetBasicAuth(e.owner.Email, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /api/tickets/{id} with the new key: %d", res.StatusCode)
	}

	a = b.get("/settings")
	if strings.Contains(a.body, secret) {
		t.Fatal("the settings page shows the secret again")
	}
	inboxBody(t, a, "Order sync", "vak_"+valet.SecretHint(secret), "never")
	keys, _ := e.store.ListAPIKeys(ctx, e.acme.ID)
	if len(keys) != 1 {
		t.Fatalf("%d keys", len(keys))
	}

	// An agent sees settings read-only and cannot change them.
	ag := e.browser(t)
	ag.mustSignIn(e.agent)
	a = ag.get("/settings")
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "read-only", "Order sync")
	if strings.Contains(a.body, "Create key") || strings.Contains(a.body, "/delete") || strings.Contains(a.body, "Add member") {
		t.Fatal("an agent sees settings forms")
	}
	inboxStatus(t, ag.post("/settings/apikeys", url.Values{"name": {"mine"}, "scopes": {"tickets:read"}}), http.StatusForbidden)
	ag.get("/settings")
	inboxStatus(t, ag.post("/settings/apikeys/"+inboxID(keys[0].ID)+"/delete", nil), http.StatusForbidden)
	ag.get("/settings")
	inboxStatus(t, ag.post("/settings/members", url.Values{"email": {"x@acme.test"}, "role": {"agent"}}), http.StatusForbidden)

	// Another account's owner cannot delete it.
	g := e.browser(t)
	g.mustSignIn(e.gus)
	g.get("/settings")
	inboxStatus(t, g.post("/settings/apikeys/"+inboxID(keys[0].ID)+"/delete", nil), http.StatusNotFound)

	b.get("/settings")
	a = b.post("/settings/apikeys/"+inboxID(keys[0].ID)+"/delete", nil)
	inboxStatus(t, a, http.StatusSeeOther)
	if _, err := e.store.Authenticate(ctx, secret); valet.ErrorCode(err) != valet.EUNAUTHORIZED {
		t.Fatalf("deleted key still authenticates: %v", err)
	}
	inboxBody(t, b.get("/settings"), "API key deleted.", "No API keys yet.")
}

func TestInboxAddMember(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	b := e.browser(t)
	b.mustSignIn(e.owner)

	// A new user, created with a name and password.
	b.get("/settings")
	a := b.post("/settings/members", url.Values{"email": {"Nora@Acme.test"}, "name": {"Nora New"}, "password": {"nora's password"}, "role": {"agent"}})
	inboxStatus(t, a, http.StatusSeeOther)
	inboxBody(t, b.get("/settings"), "Member added.", "Nora New", "nora@acme.test")
	nb := e.browser(t)
	if a := nb.signIn("nora@acme.test", "nora's password", ""); a.status != http.StatusSeeOther || a.location != "/tickets" {
		t.Fatalf("new member signs in: %d %q", a.status, a.location)
	}

	// An existing user (of another account) joins with their own password.
	a = b.post("/settings/members", url.Values{"email": {e.gus.Email}, "role": {"admin"}})
	inboxStatus(t, a, http.StatusSeeOther)
	u, err := e.store.FindMember(context.Background(), e.acme.ID, e.gus.ID)
	if err != nil || u.Role != valet.RoleAdmin {
		t.Fatalf("gus in acme: %v %v", u, err)
	}
	// Twice is a kept form with a message.
	b.get("/settings")
	a = b.post("/settings/members", url.Values{"email": {e.gus.Email}, "role": {"agent"}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "already a member")

	// An admin cannot make owners.
	mb := e.browser(t)
	mb.signIn(e.mia.Email, inboxPassword, "")
	mb.get("/accounts")
	mb.post("/accounts", url.Values{"account_id": {inboxID(e.acme.ID)}})
	a = mb.get("/settings")
	inboxStatus(t, a, http.StatusOK)
	if strings.Contains(a.body, `<option value="owner"`) {
		t.Error("an admin is offered the owner role")
	}
	a = mb.post("/settings/members", url.Values{"email": {"owner2@acme.test"}, "name": {"Second"}, "password": {"long enough pw"}, "role": {"owner"}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "You cannot make someone owner.")
}

func TestInboxAccountSwitcher(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	b := e.browser(t)
	a := b.signIn(e.mia.Email, inboxPassword, "/tickets?status=all")
	inboxStatus(t, a, http.StatusSeeOther)
	if a.location != "/accounts?next="+url.QueryEscape("/tickets?status=all") {
		t.Fatalf("multi-account sign-in goes to %q", a.location)
	}
	// Pages that need an account send the inboxBrowser to the switcher.
	if a := b.get("/tickets"); a.location != "/accounts?next=%2Ftickets" {
		t.Fatalf("no account chosen: %q", a.location)
	}
	a = b.get("/accounts?next=" + url.QueryEscape("/tickets?status=all"))
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "Choose a helpdesk", "Acme Outfitters", "Globex")
	a = b.post("/accounts", url.Values{"account_id": {inboxID(e.globex.ID)}, "next": {"/tickets?status=all"}})
	if a.status != http.StatusSeeOther || a.location != "/tickets?status=all" {
		t.Fatalf("switch: %d %q", a.status, a.location)
	}
	a = b.get("/tickets?status=all")
	inboxBody(t, a, "Globex secret plans", "Switch account")
	if strings.Contains(a.body, "Parcel never arrived") {
		t.Fatal("globex inbox shows acme's ticket")
	}
	// Switch from the top bar menu.
	a = b.post("/accounts", url.Values{"account_id": {inboxID(e.acme.ID)}})
	if a.location != "/tickets" {
		t.Fatalf("switch back: %q", a.location)
	}
	inboxBody(t, b.get("/tickets"), "Parcel never arrived", "Switched account.")
	// An account the user is not a member of.
	other := &valet.Account{Name: "initech"}
	if err := e.store.CreateAccount(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	inboxStatus(t, b.post("/accounts", url.Values{"account_id": {inboxID(other.ID)}}), http.StatusNotFound)
}

func TestInboxOpenRedirectRefused(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	for _, tc := range []struct{ next, want string }{
		{"/tickets/" + inboxID(e.ticket.ID), "/tickets/" + inboxID(e.ticket.ID)},
		{"/customers?email=a%40b.c", "/customers?email=a%40b.c"},
		{"//evil.example/", "/tickets"},
		{"https://evil.example/", "/tickets"},
		{"/\\evil.example", "/tickets"},
		{"\\\\evil.example", "/tickets"},
		{"/\t/evil.example", "/tickets"},
		{"javascript:alert(1)", "/tickets"},
		{"/signin", "/tickets"},
		{"tickets", "/tickets"},
	} {
		t.Run(tc.next, func(t *testing.T) {
			b := e.browser(t)
			a := b.signIn(e.owner.Email, inboxPassword, tc.next)
			if a.status != http.StatusSeeOther || a.location != tc.want {
				t.Fatalf("next=%q: %d %q, want %q", tc.next, a.status, a.location, tc.want)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"":                    "",
		"/":                   "/",
		"/tickets?status=all": "/tickets?status=all",
		"//evil":              "",
		"///evil":             "",
		"/\\evil":             "",
		"/%0d%0aSet-Cookie":   "/%0d%0aSet-Cookie",
		"/a\r\nb":             "",
		"http://x/":           "",
		"https:/x":            "",
		"/static/x/app.css":   "",
		"/signout":            "",
		"/x\x7f":              "",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestInboxSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	b := e.browser(t)
	check := func(path string, a inboxAnswer) {
		t.Helper()
		h := a.header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "style-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, h)
		}
	}
	a := b.get("/signin")
	check("/signin", a)
	if a.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		t.Errorf("/signin: %v", a.header)
	}
	if strings.Contains(a.body, " style=") || strings.Contains(a.body, "<style") || regexp.MustCompile(`<script>`).MatchString(a.body) {
		t.Error("the page has inline style or script")
	}
	css := regexp.MustCompile(`href="(/static/[0-9a-f]+/app\.css)"`).FindStringSubmatch(a.body)
	if css == nil {
		t.Fatal("no versioned stylesheet link")
	}
	s := b.get(css[1])
	inboxStatus(t, s, http.StatusOK)
	if !strings.Contains(s.header.Get("Cache-Control"), "max-age=31536000") || !strings.HasPrefix(s.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet headers: %v", s.header)
	}
	b.mustSignIn(e.owner)
	for _, path := range []string{"/tickets", "/tickets/" + inboxID(e.ticket.ID), "/customers", "/settings", "/nope"} {
		check(path, b.get(path))
	}
}

func TestInboxSecureCookies(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t, func(c *Config) { c.Issuer = "https://valet.example" })
	// The test server speaks plain http, so the inboxBrowser would not send the
	// Secure cookie back; check what the server sets.
	b := e.browser(t)
	a := b.get("/signin")
	var got *http.Cookie
	for _, c := range a.cookies {
		if c.Name == "__Host-"+csrfCookieName {
			got = c
		}
	}
	if got == nil || !got.Secure || !got.HttpOnly || got.Path != "/" {
		t.Fatalf("https sign-in cookie = %+v (all: %v)", got, a.cookies)
	}
}

func TestInboxListsAndFilters(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	ctx := valet.WithActor(context.Background(), valet.Actor{UserID: e.owner.ID})
	// 30 more tickets: the first 10 closed, the next 5 assigned to the agent.
	for i := range 30 {
		tk := e.newTicket(t, e.acme.ID, e.carla, fmt.Sprintf("Bulk ticket %02d", i), "body")
		e.clock.Advance(time.Millisecond)
		if i < 10 || (i >= 10 && i < 15) {
			if _, err := e.store.UpdateTicket(ctx, e.acme.ID, tk.ID, func(t *valet.Ticket) error {
				if i < 10 {
					t.Status = valet.StatusClosed
				} else {
					t.AssigneeUser = &valet.PersonRef{ID: e.agent.ID}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := e.browser(t)
	b.mustSignIn(e.agent)
	count := func(a inboxAnswer) int { return strings.Count(a.body, `class="ticket-row`) }

	a := b.get("/tickets")
	inboxStatus(t, a, http.StatusOK)
	if n := count(a); n != 21 { // 20 open bulk tickets + the original
		t.Fatalf("open: %d rows", n)
	}
	a = b.get("/tickets?status=closed")
	if n := count(a); n != 10 {
		t.Fatalf("closed: %d rows", n)
	}
	a = b.get("/tickets?assignee=mine")
	if n := count(a); n != 5 {
		t.Fatalf("mine: %d rows", n)
	}
	inboxBody(t, a, "Aaron Agent")
	a = b.get("/tickets?assignee=unassigned")
	if n := count(a); n != 16 {
		t.Fatalf("unassigned: %d rows", n)
	}
	a = b.get("/tickets?customer=" + url.QueryEscape("CARLA@example.com") + "&status=all")
	if n := count(a); n != 25 {
		t.Fatalf("by customer email, page 1: %d rows", n)
	}
	inboxBody(t, a, "Showing tickets of", "Older")

	// Walk all tickets with next and back with prev.
	seen := map[string]bool{}
	path := "/tickets?status=all"
	next := regexp.MustCompile(`href="([^"]+)" rel="next"`)
	prev := regexp.MustCompile(`href="([^"]+)" rel="prev"`)
	subject := regexp.MustCompile(`class="ticket-subject">([^<]+)<`)
	var pages []string
	for path != "" {
		a = b.get(path)
		inboxStatus(t, a, http.StatusOK)
		pages = append(pages, path)
		for _, m := range subject.FindAllStringSubmatch(a.body, -1) {
			if seen[m[1]] {
				t.Fatalf("%q listed twice", m[1])
			}
			seen[m[1]] = true
		}
		path = ""
		if m := next.FindStringSubmatch(a.body); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	if len(seen) != 31 || len(pages) != 2 {
		t.Fatalf("walked %d tickets on %d pages", len(seen), len(pages))
	}
	m := prev.FindStringSubmatch(a.body)
	if m == nil {
		t.Fatal("no previous link on the last page")
	}
	if n := count(b.get(html.UnescapeString(m[1]))); n != 25 {
		t.Fatalf("previous page: %d rows", n)
	}
	inboxStatus(t, b.get("/tickets?cursor=garbage"), http.StatusBadRequest)

	// Customers list, lookup and profile.
	a = b.get("/customers")
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "Carla Customer")
	if strings.Contains(a.body, "Gina") {
		t.Fatal("customer list leaks another account")
	}
	inboxBody(t, b.get("/customers?email=nobody%40x.y"), "No customer with that email")
	a = b.get("/customers/" + inboxID(e.carla.ID))
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "carla@example.com", "Bulk ticket 29", "Older")
}
