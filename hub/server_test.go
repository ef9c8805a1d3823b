package hub_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/helpdesktest"
	"github.com/valethq/valet/hub"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

var ctx = context.Background()

const vaultKey = "the hub server tests' vault key, 32+ bytes"

// hubEnv is a real helpdesk (helpdesktest) and a real hub on httptest
// servers, the hub's app registered at the helpdesk as valet demo does.
type hubEnv struct {
	t      *testing.T
	h      *helpdesktest.Helpdesk
	app    *valet.App
	store  *sqlstore.HubStore
	vault  *hub.Vault
	srv    *hub.Server
	URL    string // the hub
	logs   *syncBuffer
	events *hub.Events
	clock  *offsetClock // the hub's clock
}

// offsetClock is the wall clock moved forward by an offset, so a test can
// let time pass for the hub (its tokens age) while the helpdesk's stays.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().UTC().Truncate(time.Microsecond).Add(c.offset)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// syncBuffer collects the hub's logs, to check that no token reaches them.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHubEnv(t *testing.T) *hubEnv {
	t.Helper()
	e := &hubEnv{t: t, logs: &syncBuffer{}, clock: &offsetClock{}}
	e.h = helpdesktest.Start(t, helpdesktest.Options{})
	hs := httptest.NewUnstartedServer(nil)
	e.URL = "http://" + hs.Listener.Addr().String()
	cfg := hub.Config{PublicURL: e.URL, Helpdesk: e.h.URL, Clock: e.clock,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	e.app = &valet.App{Name: "Acme Hub", DeveloperName: "valet", RedirectURIs: cfg.RedirectURIs(), RefreshLeeway: 30}
	for _, s := range cfg.AppScopes() {
		e.app.Scopes = append(e.app.Scopes, valet.Scope(s))
	}
	cfg.ClientSecret = e.h.RegisterApp(t, e.app)
	cfg.ClientID = e.app.ClientID
	e.store = sqltest.HubSQLite(t)
	var err error
	if e.vault, err = hub.NewVault(vaultKey); err != nil {
		t.Fatal(err)
	}
	providers := cfg.Providers()
	tokens := hub.NewTokens(e.store, e.vault, providers, e.clock, cfg.Logger, hub.TokensConfig{})
	e.events = hub.NewEvents(e.store, e.vault, tokens, e.URL, e.clock, cfg.Logger)
	e.srv, err = hub.NewServer(cfg, hub.Deps{Store: e.store, Vault: e.vault, Providers: providers, Tokens: tokens, Events: e.events})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = e.srv.Handler()
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		for _, secret := range []string{"vat_", "vrt_", "vss_"} {
			if strings.Contains(e.logs.String(), secret) {
				t.Errorf("a %s… secret reached the hub's logs:\n%s", secret, e.logs.String())
			}
		}
	})
	return e
}

// ticket creates a ticket in the helpdesk's acme account.
func (e *hubEnv) ticket(subject string) *valet.Ticket {
	e.t.Helper()
	c := &valet.Customer{AccountID: e.h.Account.ID, Email: strings.ToLower(strings.ReplaceAll(subject, " ", ".")) + "@example.com", Name: "Customer of " + subject}
	must(e.t, e.h.Store.CreateCustomer(ctx, c))
	tk := &valet.Ticket{AccountID: e.h.Account.ID, Subject: subject, Channel: "email", Via: "email", Customer: c.Ref()}
	must(e.t, e.h.Store.CreateTicket(ctx, tk, []*valet.Message{{Public: true, Channel: "email", Via: "email", BodyText: "Hello about " + subject}}))
	return tk
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// browser is a person's browser: it signs in to the helpdesk as its owner.
func (e *hubEnv) browser() *helpdesktest.Browser {
	return e.h.NewBrowser(e.t, e.h.Owner.Email)
}

// noFollow returns a client sharing b's cookies that stops at redirects,
// to look at one answer.
func noFollow(b *helpdesktest.Browser) *http.Client {
	return &http.Client{Jar: b.Client.Jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// signIn runs "Sign in with valet" and returns the dashboard's HTML.
func (e *hubEnv) signIn(b *helpdesktest.Browser) string {
	e.t.Helper()
	resp, body := b.Get(e.URL + "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Sign in with valet") {
		e.t.Fatalf("signed-out home: %d\n%s", resp.StatusCode, body)
	}
	resp, body = b.PostWalk(e.URL+"/signin", url.Values{"csrf": {helpdesktest.CSRF(e.t, body)}}, "allow")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != e.URL+"/" || !strings.Contains(body, "Signed in as Olivia Owner") {
		e.t.Fatalf("after sign-in: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	return body
}

// connect presses Connect helpdesk (or Reconnect with account) on page,
// answers consent with action and returns the hub's final answer.
func (e *hubEnv) connect(b *helpdesktest.Browser, page, account, action string) (*http.Response, string) {
	e.t.Helper()
	form := url.Values{"csrf": {helpdesktest.CSRF(e.t, page)}}
	if account != "" {
		form.Set("account", account)
	}
	return b.PostWalk(e.URL+"/connect", form, action)
}

func (e *hubEnv) connections() []valet.Connection {
	e.t.Helper()
	list, err := e.store.ListConnections(ctx, 0)
	must(e.t, err)
	return list
}

func (e *hubEnv) only() valet.Connection {
	e.t.Helper()
	list := e.connections()
	if len(list) != 1 {
		e.t.Fatalf("%d connections, want 1: %+v", len(list), list)
	}
	return list[0]
}

func connURL(e *hubEnv, c valet.Connection) string {
	return e.URL + "/connections/" + strconv.FormatInt(c.ID, 10)
}

// apiStatus calls the helpdesk's API with a bearer token.
func apiStatus(t *testing.T, u, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// noSecrets fails if a page shows a token or session secret.
func noSecrets(t *testing.T, what, body string) {
	t.Helper()
	for _, p := range []string{"vat_", "vrt_", "vss_"} {
		if strings.Contains(body, p) {
			t.Fatalf("%s shows a %s… secret:\n%s", what, p, body)
		}
	}
}

// TestEndToEnd: a cookie-keeping client signs in to the hub through the
// helpdesk (sign-in page and consent), connects (consent again, for the
// new scopes), and the hub's connection page lists the account's tickets,
// read with the stored, sealed token; Disconnect revokes the grant at the
// helpdesk (RFC 7009) and deletes the tokens.
func TestEndToEnd(t *testing.T) {
	e := newHubEnv(t)
	e.ticket("Tent pole snapped")
	e.ticket("Where is my parcel")
	b := e.browser()
	dash := e.signIn(b)
	if b.Consents != 1 || !strings.Contains(b.LastConsent, `data-scope="openid"`) || strings.Contains(b.LastConsent, `data-scope="tickets:read"`) {
		t.Fatalf("sign-in consent asks for more than identity:\n%s", b.LastConsent)
	}
	if !strings.Contains(dash, "No helpdesk connected yet") {
		t.Fatalf("dashboard before connecting:\n%s", dash)
	}

	resp, dash := e.connect(b, dash, "", "allow")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != e.URL+"/" || !strings.Contains(dash, "Connected to acme.") {
		t.Fatalf("after connect: %d %s\n%s", resp.StatusCode, resp.Request.URL, dash)
	}
	if b.Consents != 2 || !strings.Contains(b.LastConsent, `class="scope" data-scope="tickets:read"`) ||
		strings.Contains(b.LastConsent, `class="scope" data-scope="openid"`) {
		t.Fatalf("connect consent should ask for the new scopes only:\n%s", b.LastConsent)
	}
	noSecrets(t, "dashboard", dash)
	c := e.only()
	if c.Account != "acme" || c.Status != valet.ConnectionActive || c.ConnectedByName != "Olivia Owner" ||
		!strings.Contains(strings.Join(c.Scopes, " "), "tickets:read") || c.IntegrationID == 0 {
		t.Fatalf("stored connection %+v", c)
	}
	for _, want := range []string{`data-account="acme"`, `data-status="active"`, "tickets:write", "Olivia Owner", "Reconnect", "Disconnect"} {
		if !strings.Contains(dash, want) {
			t.Fatalf("dashboard lacks %q:\n%s", want, dash)
		}
	}
	// The tokens are sealed at rest: the store holds no plaintext.
	_, sealed, err := e.store.FindConnection(ctx, c.ID)
	must(t, err)
	if bytes.Contains(sealed.AccessToken, []byte("vat_")) || bytes.Contains(sealed.RefreshToken, []byte("vrt_")) {
		t.Fatal("tokens stored in the clear")
	}
	sec, err := e.vault.Open(*sealed)
	must(t, err)
	if !strings.HasPrefix(sec.AccessToken, "vat_") || !strings.HasPrefix(sec.RefreshToken, "vrt_") {
		t.Fatal("the sealed secrets are not the helpdesk's tokens")
	}

	resp, page := b.Get(connURL(e, c))
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Tent pole snapped") || !strings.Contains(page, "Where is my parcel") {
		t.Fatalf("connection page: %d\n%s", resp.StatusCode, page)
	}
	noSecrets(t, "connection page", page)

	// The activity feed is JSON for the dashboard's poller.
	_, err = e.store.RecordActivity(ctx, &valet.Activity{ConnectionID: c.ID, EventID: 7, EventType: "ticket-created",
		Summary: `<b>New</b> ticket "Tent pole snapped"`, Via: hub.ViaWebhook})
	must(t, err)
	resp, feed := b.Get(e.URL + "/activity.json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(feed, `"account":"acme"`) || !strings.Contains(feed, "ticket-created") {
		t.Fatalf("activity feed: %d %s", resp.StatusCode, feed)
	}
	_, dash = b.Get(e.URL + "/")
	if !strings.Contains(dash, "&lt;b&gt;New&lt;/b&gt; ticket") {
		t.Fatalf("dashboard activity not shown, or not escaped:\n%s", dash)
	}

	// Disconnect revokes the grant at the helpdesk, then forgets the tokens.
	resp, dash = b.Post(connURL(e, c)+"/disconnect", url.Values{"csrf": {helpdesktest.CSRF(t, dash)}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(dash, "Disconnected from acme. The hub&#39;s tokens were revoked and deleted.") {
		t.Fatalf("after disconnect: %d\n%s", resp.StatusCode, dash)
	}
	if n := len(e.connections()); n != 0 {
		t.Fatalf("%d connections left after disconnect", n)
	}
	// The tokens are dead at the helpdesk (revoking the refresh token
	// revokes its whole family), not merely forgotten here.
	if status := apiStatus(t, e.h.URL+"/api/tickets", sec.AccessToken); status != http.StatusUnauthorized {
		t.Fatalf("the access token answers %d after Disconnect", status)
	}
	if integrations, err := e.h.Store.ListIntegrations(ctx, e.h.Account.ID, valet.ListOptions{}); err != nil || len(integrations.Data) != 0 {
		t.Fatalf("webhook left on the helpdesk after Disconnect: %v %+v", err, integrations)
	}
}

// TestDenial: denying either consent ends on a clear page with 403 and
// stores nothing.
func TestDenial(t *testing.T) {
	e := newHubEnv(t)
	b := e.browser()
	_, body := b.Get(e.URL + "/")
	resp, body := b.PostWalk(e.URL+"/signin", url.Values{"csrf": {helpdesktest.CSRF(t, body)}}, "deny")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Access was not allowed") ||
		!strings.Contains(body, "You did not allow the hub to sign you in") || !strings.Contains(body, `href="/signin"`) {
		t.Fatalf("denied sign-in: %d\n%s", resp.StatusCode, body)
	}
	if n := len(e.connections()); n != 0 {
		t.Fatalf("%d connections after a denied sign-in", n)
	}

	dash := e.signIn(b)
	resp, body = e.connect(b, dash, "", "deny")
	if resp.StatusCode != http.StatusForbidden || resp.Request.URL.Path != hub.ConnectCallbackPath ||
		!strings.Contains(body, "You did not allow the hub to access your helpdesk. Nothing was connected.") ||
		!strings.Contains(body, "Try connecting again") {
		t.Fatalf("denied connect: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if n := len(e.connections()); n != 0 {
		t.Fatalf("%d connections after a denial", n)
	}
}

var locationState = regexp.MustCompile(`[?&]state=([^&]+)`)

// startConnect presses Connect but stops at the redirect to the helpdesk,
// returning the state it carries (the flow cookie is now set).
func (e *hubEnv) startConnect(b *helpdesktest.Browser, page string) string {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/connect", strings.NewReader(url.Values{"csrf": {helpdesktest.CSRF(e.t, page)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noFollow(b).Do(req)
	must(e.t, err)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, e.h.URL+"/oauth/authorize?") ||
		!strings.Contains(loc, "code_challenge_method=S256") || !strings.Contains(loc, "nonce=") {
		e.t.Fatalf("connect: %d %s", resp.StatusCode, loc)
	}
	m := locationState.FindStringSubmatch(loc)
	state, _ := url.QueryUnescape(m[1])
	return state
}

// TestCallbackErrors: every way a callback can go wrong ends on a page
// with the right status, and nothing is connected.
func TestCallbackErrors(t *testing.T) {
	e := newHubEnv(t)
	b := e.browser()
	dash := e.signIn(b)
	cb := e.URL + hub.ConnectCallbackPath
	cases := []struct {
		name   string
		query  func(state string) url.Values
		status int
		want   string
	}{
		{"forged state", func(string) url.Values {
			return url.Values{"state": {"forged"}, "code": {"c"}, "iss": {e.h.URL}}
		}, http.StatusBadRequest, "This answer does not belong to your request"},
		{"wrong iss", func(s string) url.Values {
			return url.Values{"state": {s}, "code": {"c"}, "iss": {"https://evil.example"}}
		}, http.StatusBadRequest, "The answer came from the wrong server"},
		{"missing iss", func(s string) url.Values {
			return url.Values{"state": {s}, "code": {"c"}}
		}, http.StatusBadRequest, "The answer came from the wrong server"},
		{"missing code", func(s string) url.Values {
			return url.Values{"state": {s}, "iss": {e.h.URL}}
		}, http.StatusBadRequest, "It has no authorization code"},
		{"exchange refused", func(s string) url.Values {
			return url.Values{"state": {s}, "code": {"not-a-code"}, "iss": {e.h.URL}}
		}, http.StatusBadGateway, "Its token endpoint refused the authorization code (invalid_grant)"},
		{"other error", func(s string) url.Values {
			return url.Values{"state": {s}, "error": {"invalid_scope"}, "error_description": {"no such scope"}, "iss": {e.h.URL}}
		}, http.StatusBadRequest, "The helpdesk refused the request (invalid_scope): no such scope."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := e.startConnect(b, dash)
			resp, body := b.Get(cb + "?" + tc.query(state).Encode())
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) || strings.Contains(body, "goroutine") {
				t.Fatalf("%d, want %d with %q:\n%s", resp.StatusCode, tc.status, tc.want, body)
			}
			// The flow is used up: the same answer again finds no flow.
			resp, body = b.Get(cb + "?" + tc.query(state).Encode())
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "This connection attempt has expired") {
				t.Fatalf("replay: %d\n%s", resp.StatusCode, body)
			}
		})
	}

	t.Run("no session", func(t *testing.T) {
		other := e.browser()
		resp, err := noFollow(other).Get(cb + "?state=s&code=c&iss=" + url.QueryEscape(e.h.URL))
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("sign-in forged state", func(t *testing.T) {
		other := e.browser()
		_, body := other.Get(e.URL + "/signin")
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/signin", strings.NewReader(url.Values{"csrf": {helpdesktest.CSRF(t, body)}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := noFollow(other).Do(req)
		must(t, err)
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if q := loc.Query(); q.Get("scope") != "openid email profile" || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" ||
			q.Get("redirect_uri") != e.URL+hub.SignInCallbackPath {
			t.Fatalf("sign-in authorization request %s", loc)
		}
		resp, body = other.Get(e.URL + hub.SignInCallbackPath + "?state=forged&code=c&iss=" + url.QueryEscape(e.h.URL))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "This answer does not belong to your request") {
			t.Fatalf("%d\n%s", resp.StatusCode, body)
		}
	})

	// A flow belongs to the session that started it: signed out and in
	// again (a new session), its answer is refused.
	state := e.startConnect(b, dash)
	b.Post(e.URL+"/signout", url.Values{"csrf": {helpdesktest.CSRF(t, dash)}})
	e.signIn(b)
	resp, body := b.Get(cb + "?" + url.Values{"state": {state}, "code": {"c"}, "iss": {e.h.URL}}.Encode())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "This answer does not belong to your session") {
		t.Fatalf("another session: %d\n%s", resp.StatusCode, body)
	}
	if n := len(e.connections()); n != 0 {
		t.Fatalf("%d connections after failed callbacks", n)
	}
}

// TestRevocation: revoking the hub in the helpdesk's connected-apps page
// makes the hub's next call mark the connection revoked; the connection
// page and the dashboard say so and offer Reconnect, which works.
func TestRevocation(t *testing.T) {
	e := newHubEnv(t)
	e.ticket("Boots too small")
	b := e.browser()
	dash := e.signIn(b)
	if resp, body := e.connect(b, dash, "", "allow"); !strings.Contains(body, "Connected to acme.") {
		t.Fatalf("connect: %d\n%s", resp.StatusCode, body)
	}
	c := e.only()
	if _, page := b.Get(connURL(e, c)); !strings.Contains(page, "Boots too small") {
		t.Fatalf("tickets before revocation:\n%s", page)
	}

	b.RevokeApp(e.app) // as the owner, on the helpdesk's connected-apps page
	// Minutes later (the tokens are no longer fresh, so a 401 means try
	// the refresh token), the hub's next call finds out.
	e.clock.Advance(3 * time.Minute)

	resp, page := b.Get(connURL(e, c))
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="revoked"`) || !strings.Contains(page, "This connection was revoked.") ||
		!strings.Contains(page, `data-action="reconnect"`) || strings.Contains(page, "Boots too small") {
		t.Fatalf("connection page after revocation: %d\n%s", resp.StatusCode, page)
	}
	if got := e.only(); got.Status != valet.ConnectionRevoked || !strings.Contains(got.LastError, "invalid_grant") {
		t.Fatalf("stored connection after revocation: %+v", got)
	}
	// Once: a revoked connection is not retried.
	b.Get(connURL(e, c))
	if n := e.h.TokenRequests("refresh_token"); n != 1 {
		t.Fatalf("%d refresh attempts, want exactly 1", n)
	}
	_, dash = b.Get(e.URL + "/")
	if !strings.Contains(dash, `data-status="revoked"`) || !strings.Contains(dash, "Reconnect to restore it") ||
		!strings.Contains(dash, `<input type="hidden" name="account" value="acme">`) {
		t.Fatalf("dashboard after revocation:\n%s", dash)
	}

	// Reconnect: consent again (the grant is gone), same connection, active.
	consents := b.Consents
	resp, dash = e.connect(b, page, "acme", "allow")
	if resp.StatusCode != http.StatusOK || !strings.Contains(dash, "Connected to acme.") || b.Consents != consents+1 {
		t.Fatalf("reconnect: %d (consents %d)\n%s", resp.StatusCode, b.Consents-consents, dash)
	}
	if got := e.only(); got.ID != c.ID || got.Status != valet.ConnectionActive || got.LastError != "" {
		t.Fatalf("after reconnect: %+v", got)
	}
	if _, page := b.Get(connURL(e, c)); !strings.Contains(page, "Boots too small") || strings.Contains(page, `id="revoked"`) {
		t.Fatalf("tickets after reconnect:\n%s", page)
	}
}

// TestPagesSecurity: headers, cookies, CSRF, ownership and error pages.
func TestPagesSecurity(t *testing.T) {
	e := newHubEnv(t)
	b := e.browser()
	resp, body := b.Get(e.URL + "/")
	h := resp.Header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") ||
		!strings.Contains(csp, "form-action 'self' "+e.h.URL) || h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("headers %v", h)
	}
	if !strings.Contains(body, `name="csrf"`) {
		t.Fatalf("sign-in form without CSRF:\n%s", body)
	}

	// A sign-in form without its double-submit token is refused.
	resp, body = b.Post(e.URL+"/signin", url.Values{"csrf": {"guess"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "This form has expired") {
		t.Fatalf("sign-in without CSRF: %d\n%s", resp.StatusCode, body)
	}
	// Signed out, pages send to the sign-in page and the feed answers 401.
	resp, err := noFollow(b).Post(e.URL+"/connect", "application/x-www-form-urlencoded", nil)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
		t.Fatalf("signed-out connect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := b.Get(e.URL + "/activity.json"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("signed-out feed: %d", resp.StatusCode)
	}
	if resp, body := b.Get(e.URL + "/connections/1"); resp.Request.URL.Path != "/signin" || !strings.Contains(body, `name="next" value="/connections/1"`) {
		t.Fatalf("signed-out connection page: %s\n%s", resp.Request.URL, body)
	}

	dash := e.signIn(b)
	var sessionCookie *http.Cookie
	u, _ := url.Parse(e.URL)
	for _, c := range b.Client.Jar.Cookies(u) {
		if c.Name == "valet_hub_session" {
			sessionCookie = c
		}
	}
	if sessionCookie == nil {
		t.Fatal("no session cookie")
	}
	// Signed in, a form without the session's token is refused.
	for _, path := range []string{"/connect", "/signout", "/connections/1/disconnect"} {
		resp, body := b.Post(e.URL+path, url.Values{"csrf": {"wrong"}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "This form has expired") {
			t.Fatalf("POST %s without CSRF: %d\n%s", path, resp.StatusCode, body)
		}
	}
	// Someone else's connection is not found.
	other := &valet.HubUser{Issuer: e.h.URL, Subject: "999", Email: "eve@example.com"}
	must(t, e.store.UpsertHubUser(ctx, other))
	theirs := &valet.Connection{Provider: hub.ProviderValet, BaseURL: e.h.URL, Account: "globex", ConnectedBy: other.ID}
	must(t, e.store.SaveConnection(ctx, theirs, e.vault.Seal(hub.Secrets{AccessToken: "vat_x"})))
	if resp, body := b.Get(e.URL + "/connections/" + strconv.FormatInt(theirs.ID, 10)); resp.StatusCode != http.StatusNotFound ||
		!strings.Contains(body, "Connection not found") {
		t.Fatalf("another user's connection: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := b.Post(e.URL+"/connections/"+strconv.FormatInt(theirs.ID, 10)+"/disconnect", url.Values{"csrf": {helpdesktest.CSRF(t, dash)}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("disconnect another user's connection: %d", resp.StatusCode)
	}
	if resp, body := b.Get(e.URL + "/nowhere"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "There is nothing at this address") {
		t.Fatalf("404 page: %d\n%s", resp.StatusCode, body)
	}

	// Sign out ends the session in the store, not just the cookie.
	resp, body = b.Post(e.URL+"/signout", url.Values{"csrf": {helpdesktest.CSRF(t, dash)}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed out of the hub.") || !strings.Contains(body, "Sign in with valet") {
		t.Fatalf("sign out: %d\n%s", resp.StatusCode, body)
	}
	if _, err := e.store.HubSessionUser(ctx, sessionCookie.Value); valet.ErrorCode(err) != valet.EUNAUTHORIZED {
		t.Fatalf("session after sign-out: %v", err)
	}
}

// TestSecureCookies: behind https the cookies are Secure, __Host- and
// HttpOnly with SameSite=Lax.
func TestSecureCookies(t *testing.T) {
	store := sqltest.HubSQLite(t)
	vault, err := hub.NewVault(vaultKey)
	must(t, err)
	srv, err := hub.NewServer(hub.Config{PublicURL: "https://hub.example", Helpdesk: "https://help.example", ClientID: "c"},
		hub.Deps{Store: store, Vault: vault})
	must(t, err)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://hub.example/signin", nil))
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusOK || len(cookies) != 1 {
		t.Fatalf("%d %v", rec.Code, cookies)
	}
	c := cookies[0]
	if c.Name != "__Host-valet_hub_csrf" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Fatalf("cookie %+v", c)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://help.example;") {
		t.Fatalf("CSP %s", csp)
	}
}

// TestConfigValidate: NewServer refuses a configuration it cannot work with.
func TestConfigValidate(t *testing.T) {
	store := sqltest.HubSQLite(t)
	vault, err := hub.NewVault(vaultKey)
	must(t, err)
	ok := hub.Config{PublicURL: "http://127.0.0.1:8090", Helpdesk: "http://127.0.0.1:8080", ClientID: "hub"}
	for _, tc := range []struct {
		name string
		edit func(*hub.Config)
		want string
	}{
		{"ok", func(*hub.Config) {}, ""},
		{"no public URL", func(c *hub.Config) { c.PublicURL = "" }, "public URL"},
		{"relative helpdesk", func(c *hub.Config) { c.Helpdesk = "/help" }, "helpdesk URL"},
		{"no client", func(c *hub.Config) { c.ClientID = "" }, "client id"},
		{"short cookie key", func(c *hub.Config) { c.CookieKey = []byte("short") }, "cookie key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			_, err := hub.NewServer(cfg, hub.Deps{Store: store, Vault: vault})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := hub.NewServer(ok, hub.Deps{Store: store}); err == nil {
		t.Fatal("no vault accepted")
	}
}

// TestOperations: the probes a load balancer and Prometheus scrape, with
// the receiver's counters among the metrics.
func TestOperations(t *testing.T) {
	e := newHubEnv(t)
	b := e.browser()
	for _, tc := range []struct{ path, want string }{
		{"/healthz", "ok"},
		{"/readyz", "ok"},
		{"/metrics", "valet_hub_webhook_deliveries_total"},
		{"/metrics", "go_goroutines"},
	} {
		resp, body := b.Get(e.URL + tc.path)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Fatalf("GET %s: %d, want %q in\n%.2000s", tc.path, resp.StatusCode, tc.want, body)
		}
	}
	// The receiver refuses an unsigned delivery and counts it.
	resp, _ := b.Post(e.URL+"/webhooks/1", url.Values{})
	if resp.StatusCode/100 != 4 {
		t.Fatalf("unsigned delivery: %d", resp.StatusCode)
	}
	if _, body := b.Get(e.URL + "/metrics"); !regexp.MustCompile(`valet_hub_webhook_deliveries_total\{outcome="[a-z_]+"\} [1-9]`).MatchString(body) {
		t.Fatalf("refused delivery not counted:\n%.3000s", body)
	}
	// A store that is gone makes the node unready.
	must(t, e.store.Close())
	if resp, _ := b.Get(e.URL + "/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with the store closed: %d", resp.StatusCode)
	}
}

// TestDashboardStates: the dashboard shows when a connection was last and
// will next be renewed and its last error, and a degraded connection as
// such, in plain words.
func TestDashboardStates(t *testing.T) {
	e := newHubEnv(t)
	b := e.browser()
	dash := e.signIn(b)
	_, dash = e.connect(b, dash, "", "allow")
	for _, want := range []string{"<dt>Last refresh</dt><dd>never</dd>", "<dt>Next refresh</dt><dd>", `<dd class="last-error">none</dd>`} {
		if !strings.Contains(dash, want) {
			t.Fatalf("dashboard lacks %q:\n%s", want, dash)
		}
	}
	c := e.only()
	ok, err := e.store.MarkConnection(ctx, c.ID, c.Generation, valet.ConnectionDegraded, "The helpdesk answered 503 Service Unavailable.")
	must(t, err)
	if !ok {
		t.Fatal("MarkConnection changed nothing")
	}
	_, dash = b.Get(e.URL + "/")
	for _, want := range []string{`data-status="degraded"`, `<dd class="last-error">The helpdesk answered 503 Service Unavailable.</dd>`} {
		if !strings.Contains(dash, want) {
			t.Fatalf("degraded dashboard lacks %q:\n%s", want, dash)
		}
	}
	if _, page := b.Get(connURL(e, c)); !strings.Contains(page, "The helpdesk answered 503 Service Unavailable.") {
		t.Fatalf("connection page without the last error:\n%s", page)
	}
}

// TestConnectTakenByAnotherUser: an account connected by one hub user is
// not taken over when another member of it connects: the second gets a
// conflict page, the first keeps the connection, and the grant the second
// connect made is revoked at the helpdesk rather than left live.
func TestConnectTakenByAnotherUser(t *testing.T) {
	e := newHubEnv(t)
	olivia := e.browser()
	if resp, body := e.connect(olivia, e.signIn(olivia), "", "allow"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connected to acme") {
		t.Fatalf("Olivia's connect: %d\n%s", resp.StatusCode, body)
	}
	first := e.only()

	e.h.AddUser(t, "priya@acme.test", "Priya Agent", valet.RoleAgent)
	priya := e.h.NewBrowser(t, "priya@acme.test")
	_, body := priya.Get(e.URL + "/")
	resp, body := priya.PostWalk(e.URL+"/signin", url.Values{"csrf": {helpdesktest.CSRF(t, body)}}, "allow")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in as Priya Agent") {
		t.Fatalf("Priya's sign-in: %d\n%s", resp.StatusCode, body)
	}
	resp, body = e.connect(priya, body, "", "allow")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already connected") {
		t.Fatalf("Priya's connect: %d\n%s", resp.StatusCode, body)
	}
	if now := e.only(); now.ID != first.ID || now.ConnectedBy != first.ConnectedBy || now.Generation != first.Generation {
		t.Fatalf("the connection changed: %+v, was %+v", now, first)
	}
	entries, err := e.h.Store.ListAudit(ctx, e.h.Account.ID, 1)
	must(t, err)
	if len(entries) == 0 || entries[0].Action != valet.AuditTokenRevoked || entries[0].AppID != e.app.ID {
		t.Fatalf("the grant of the refused connect was not revoked: %+v", entries)
	}
}

// TestReconnectChecksTheAccount: a Reconnect of one account that comes
// back approved for another connects nothing, and the grant made is
// revoked.
func TestReconnectChecksTheAccount(t *testing.T) {
	e := newHubEnv(t)
	beta, owner := e.h.AddAccount(t, "beta")
	b := e.h.NewBrowser(t, owner.Email)
	_, body := b.Get(e.URL + "/")
	resp, body := b.PostWalk(e.URL+"/signin", url.Values{"csrf": {helpdesktest.CSRF(t, body)}}, "allow")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in as "+owner.Name) {
		t.Fatalf("sign-in: %d\n%s", resp.StatusCode, body)
	}
	resp, body = e.connect(b, body, "acme", "allow") // the helpdesk can only approve beta
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "You asked to connect acme but approved beta") {
		t.Fatalf("reconnect answered for another account: %d\n%s", resp.StatusCode, body)
	}
	if list := e.connections(); len(list) != 0 {
		t.Fatalf("connections: %+v", list)
	}
	entries, err := e.h.Store.ListAudit(ctx, beta.ID, 1)
	must(t, err)
	if len(entries) == 0 || entries[0].Action != valet.AuditTokenRevoked {
		t.Fatalf("the grant on beta was not revoked: %+v", entries)
	}
}
