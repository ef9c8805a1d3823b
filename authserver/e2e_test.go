package authserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/valethq/valet"
	"github.com/valethq/valet/authserver"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/server"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

const (
	testSecret  = "a test server secret, 32 bytes+"
	password    = "correct horse battery staple"
	redirectURI = "https://app.example/cb"
)

var ctx = context.Background()

// env is the whole valet server (pages, API, authorization server) on a
// fresh SQLite store behind a real httptest server.
type env struct {
	t       *testing.T
	store   valet.OAuthStore
	hs      *httptest.Server
	issuer  string
	account *valet.Account
	user    *valet.User
	app     *valet.App
	secret  string
	public  *valet.App
	clock   *testClock
	dsn     string // PostgreSQL only, for a second node
}

// testClock is moved by hand (code expiry).
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newEnv uses SQLite; newEnvOn(t, true) PostgreSQL (TestPostgresFlow).
func newEnv(t *testing.T) *env { return newEnvOn(t, false) }

func newEnvOn(t *testing.T, postgres bool) *env {
	t.Helper()
	clock := &testClock{now: time.Now().UTC().Truncate(time.Microsecond)}
	var store valet.OAuthStore
	var dsn string
	if postgres {
		dsn = sqltest.PostgresDSN(t)
		s, err := sqlstore.Open(ctx, dsn, sqlstore.WithClock(clock))
		must(t, err)
		t.Cleanup(func() { s.Close() })
		store = s
	} else {
		store = sqltest.SQLite(t, sqlstore.WithClock(clock))
	}
	e := &env{t: t, store: store, clock: clock, dsn: dsn}
	e.account = &valet.Account{Name: "acme", DisplayName: "Acme"}
	must(t, store.CreateAccount(ctx, e.account))
	hash, err := passwd.Params{MemoryKiB: 512, Time: 1, Threads: 1}.Hash(password)
	must(t, err)
	e.user = &valet.User{Email: "owner@acme.test", Name: "Olive Owner", PasswordHash: hash}
	must(t, store.CreateUser(ctx, e.user))
	must(t, store.AddMember(ctx, e.account.ID, e.user.ID, valet.RoleOwner))

	e.hs = httptest.NewUnstartedServer(nil)
	e.issuer = "http://" + e.hs.Listener.Addr().String()
	auth, err := authserver.New(ctx, store, authserver.Config{Issuer: e.issuer, Secret: []byte(testSecret), Clock: clock})
	must(t, err)
	cfg := server.DefaultConfig()
	cfg.Issuer = e.issuer
	srv, err := server.New(store, cfg, server.WithOAuth(auth), server.WithClock(clock),
		server.WithLogger(slog.New(slog.DiscardHandler)))
	must(t, err)
	e.hs.Config.Handler = srv.Handler()
	e.hs.Start()
	t.Cleanup(func() { e.hs.Close(); _ = srv.Close(ctx) })

	e.app = &valet.App{Name: "Hub", DeveloperName: "Hub Inc", RedirectURIs: []string{redirectURI},
		Scopes: valet.ScopeSet{"openid", "email", "profile", "offline", "tickets:read", "tickets:write", "customers:read"}}
	e.secret, err = store.RegisterApp(ctx, e.app)
	must(t, err)
	e.public = &valet.App{Name: "CLI", Public: true, RedirectURIs: []string{"http://127.0.0.1:9999/cb"},
		Scopes: valet.ScopeSet{"openid", "tickets:read"}}
	_, err = store.RegisterApp(ctx, e.public)
	must(t, err)
	return e
}

// secondAccount makes the env's user an agent of a second account,
// globex, so that signing in no longer picks an account.
func (e *env) secondAccount() *valet.Account {
	e.t.Helper()
	globex := &valet.Account{Name: "globex", DisplayName: "Globex"}
	must(e.t, e.store.CreateAccount(ctx, globex))
	must(e.t, e.store.AddMember(ctx, globex.ID, e.user.ID, valet.RoleAgent))
	return globex
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) oauth2(scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: e.app.ClientID, ClientSecret: e.secret, RedirectURL: redirectURI, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.issuer + "/oauth/authorize", TokenURL: e.issuer + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader}}
}

// browser is a cookie-keeping client that follows redirects on valet only:
// the last answer is the redirect to the app (or a page).
type browser struct {
	t           *testing.T
	e           *env
	c           *http.Client
	consents    int // consent pages seen
	lastConsent string
	// consentHeader is the last consent page's header.
	consentHeader http.Header
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	host := strings.TrimPrefix(e.issuer, "http://")
	return &browser{t: e.t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if r.URL.Host != host {
			return http.ErrUseLastResponse
		}
		return nil
	}}}
}

var (
	csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	idRe   = regexp.MustCompile(`name="id" value="([^"]+)"`)
	nextRe = regexp.MustCompile(`name="next" value="([^"]+)"`)
	// the account a form submits: the preselected option, or the hidden field
	selectedRe = regexp.MustCompile(`(?:<option value="(\d+)" selected|name="account" value="(\d+)")`)
)

func field(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in page:\n%s", re, body)
	}
	return html.UnescapeString(m[1])
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	must(b.t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browser) get(u string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// authorize walks a browser through sign-in and consent (answering action
// on the consent page) and returns valet's final answer: a redirect to the
// app, or a page.
type answer struct {
	resp *http.Response
	body string
}

func (b *browser) authorize(authURL, action string) answer {
	b.t.Helper()
	resp, body := b.get(authURL)
	for range 5 {
		if resp.StatusCode != http.StatusOK {
			return answer{resp, body}
		}
		switch path := resp.Request.URL.Path; path {
		case "/signin":
			resp, body = b.post(b.e.issuer+"/signin", url.Values{"csrf": {field(b.t, csrfRe, body)},
				"next": {field(b.t, nextRe, body)}, "email": {b.e.user.Email}, "password": {password}})
		case "/oauth/consent":
			b.consents++
			b.lastConsent, b.consentHeader = body, resp.Header
			form := url.Values{"csrf": {field(b.t, csrfRe, body)}, "id": {field(b.t, idRe, body)}, "action": {action}}
			if m := selectedRe.FindStringSubmatch(body); m != nil {
				form.Set("account", m[1]+m[2])
			}
			resp, body = b.post(b.e.issuer+"/oauth/consent", form)
		default:
			return answer{resp, body}
		}
	}
	b.t.Fatalf("authorize did not finish: %d %s", resp.StatusCode, body)
	return answer{}
}

// appRedirect returns the query of valet's redirect to the app.
func appRedirect(t *testing.T, a answer) url.Values {
	t.Helper()
	resp, body := a.resp, a.body
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("want a redirect to the app, got %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	must(t, err)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURI && !strings.HasPrefix(got, "http://127.0.0.1:9999") {
		t.Fatalf("redirect to %s", loc)
	}
	return loc.Query()
}

// code runs an authorization with PKCE and returns the code and verifier.
func (e *env) code(b *browser, scopes ...string) (code, verifier, nonce string) {
	e.t.Helper()
	verifier, nonce = oauth2.GenerateVerifier(), "nonce-"+oauth2.GenerateVerifier()[:8]
	u := e.oauth2(scopes...).AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
	q := appRedirect(e.t, b.authorize(u, "allow"))
	if q.Get("state") != "st4te" || q.Get("iss") != e.issuer || q.Get("code") == "" {
		e.t.Fatalf("authorization response %v", q)
	}
	return q.Get("code"), verifier, nonce
}

// tokenPost posts to the token endpoint with the app's credentials.
func (e *env) tokenPost(form url.Values) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(e.app.ClientID), url.QueryEscape(e.secret))
	resp, err := http.DefaultClient.Do(req)
	must(e.t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func (e *env) exchange(code, verifier string) (int, map[string]any) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	status, out, _ := e.tokenPost(form)
	return status, out
}

func (e *env) refresh(token string, scope string) (int, map[string]any) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
	if scope != "" {
		form.Set("scope", scope)
	}
	status, out, _ := e.tokenPost(form)
	return status, out
}

func (e *env) api(token, path string) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.issuer+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	must(e.t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func wantStatus(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %d, want %d", what, got, want)
	}
}

func wantOAuthError(t *testing.T, status int, out map[string]any, wantStatus int, code string) {
	t.Helper()
	if status != wantStatus || out["error"] != code {
		t.Fatalf("got %d %v, want %d %s", status, out, wantStatus, code)
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.issuer + "/.well-known/openid-configuration")
	must(t, err)
	defer resp.Body.Close()
	var d struct {
		Issuer        string   `json:"issuer"`
		Scopes        []string `json:"scopes_supported"`
		Methods       []string `json:"code_challenge_methods_supported"`
		AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
		ResponseTypes []string `json:"response_types_supported"`
		IssParam      bool     `json:"authorization_response_iss_parameter_supported"`
		Authorization string   `json:"authorization_endpoint"`
		Revocation    string   `json:"revocation_endpoint"`
		Introspection string   `json:"introspection_endpoint"`
		JWKS          string   `json:"jwks_uri"`
		Userinfo      string   `json:"userinfo_endpoint"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&d))
	var catalog []string
	for _, s := range valet.Scopes {
		catalog = append(catalog, string(s.Scope))
	}
	if d.Issuer != e.issuer || !slices.Equal(d.Scopes, catalog) || !slices.Equal(d.Methods, []string{"S256"}) ||
		!slices.Equal(d.AuthMethods, []string{"client_secret_basic", "client_secret_post"}) ||
		!slices.Equal(d.ResponseTypes, []string{"code"}) || !d.IssParam ||
		d.Authorization != e.issuer+"/oauth/authorize" || d.Revocation == "" || d.Introspection == "" || d.JWKS == "" || d.Userinfo == "" {
		t.Fatalf("discovery: %+v", d)
	}
}

func TestHappyPath(t *testing.T) { happyPath(t, newEnv(t)) }

// onEveryStore runs test on SQLite and, with VALET_TEST_POSTGRES, on
// PostgreSQL, where the token endpoint takes other paths: one-statement
// exchanges and refreshes that check the client's secret themselves.
func onEveryStore(t *testing.T, test func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) { test(t, newEnv(t)) })
	t.Run("postgres", func(t *testing.T) {
		if os.Getenv(sqltest.PostgresEnv) == "" {
			t.Skip(sqltest.PostgresEnv + " is not set")
		}
		test(t, newEnvOn(t, true))
	})
}

// TestPostgresFlow runs the whole flow on PostgreSQL.
func TestPostgresFlow(t *testing.T) {
	if os.Getenv(sqltest.PostgresEnv) == "" {
		t.Skip(sqltest.PostgresEnv + " is not set")
	}
	happyPath(t, newEnvOn(t, true))
}

func happyPath(t *testing.T, e *env) {
	b := e.browser()
	conf := e.oauth2("openid", "email", "profile", "offline", "tickets:read")
	code, verifier, nonce := e.code(b, "openid", "email", "profile", "offline", "tickets:read")
	if b.consents != 1 || !strings.Contains(b.lastConsent, "Read tickets, their messages and content") ||
		!strings.Contains(b.lastConsent, "Hub Inc") || !strings.Contains(b.lastConsent, "Acme") {
		t.Fatalf("consent page:\n%s", b.lastConsent)
	}

	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	must(t, err)
	if !strings.HasPrefix(tok.AccessToken, "vat_") || !strings.HasPrefix(tok.RefreshToken, "vrt_") ||
		tok.Extra("account") != "acme" || tok.Extra("scope") != "email offline openid profile tickets:read" {
		t.Fatalf("token answer: %+v account=%v scope=%v", tok, tok.Extra("account"), tok.Extra("scope"))
	}
	if ttl := tok.Extra("expires_in"); ttl != float64(86400) {
		t.Fatalf("expires_in = %v", ttl)
	}
	provider, err := oidc.NewProvider(ctx, e.issuer)
	must(t, err)
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: e.app.ClientID}).Verify(ctx, rawID)
	must(t, err)
	if idt.Nonce != nonce || idt.Subject != strconv.FormatInt(e.user.ID, 10) {
		t.Fatalf("id token nonce %q subject %q", idt.Nonce, idt.Subject)
	}
	must(t, idt.VerifyAccessToken(tok.AccessToken))
	var claims struct {
		Email         string   `json:"email"`
		EmailVerified bool     `json:"email_verified"`
		Name          string   `json:"name"`
		AuthTime      int64    `json:"auth_time"`
		IssuedAt      int64    `json:"iat"`
		Expiry        int64    `json:"exp"`
		AZP           string   `json:"azp"`
		AMR           []string `json:"amr"`
	}
	must(t, idt.Claims(&claims))
	if claims.Email != e.user.Email || !claims.EmailVerified || claims.Name != e.user.Name ||
		claims.AuthTime == 0 || claims.AuthTime > claims.IssuedAt || claims.Expiry-claims.IssuedAt != 3600 ||
		claims.AZP != e.app.ClientID || !slices.Equal(claims.AMR, []string{"pwd"}) {
		t.Fatalf("claims %+v", claims)
	}
	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	must(t, err)
	if info.Email != e.user.Email {
		t.Fatalf("userinfo %+v", info)
	}

	wantStatus(t, "tickets", e.api(tok.AccessToken, "/api/tickets"), http.StatusOK)
	wantStatus(t, "customers without the scope", e.api(tok.AccessToken, "/api/customers"), http.StatusForbidden)

	// Refresh rotates; the answer has no ID token unless asked for.
	status, out := e.refresh(tok.RefreshToken, "")
	wantStatus(t, "refresh", status, http.StatusOK)
	next, _ := out["refresh_token"].(string)
	access, _ := out["access_token"].(string)
	if next == "" || next == tok.RefreshToken || out["id_token"] != nil || out["account"] != "acme" {
		t.Fatalf("refresh answer %v", out)
	}
	wantStatus(t, "new token", e.api(access, "/api/tickets"), http.StatusOK)
	// Scope widening is refused, without consuming the token.
	status, out = e.refresh(next, "openid customers:read")
	wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_scope")
	// A narrower scope is allowed.
	status, out = e.refresh(next, "tickets:read")
	wantStatus(t, "narrow refresh", status, http.StatusOK)
	if out["scope"] != "tickets:read" {
		t.Fatalf("narrowed scope %v", out["scope"])
	}
	latest, _ := out["access_token"].(string)

	// Replaying a used refresh token revokes the installation.
	status, out = e.refresh(tok.RefreshToken, "")
	wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
	wantStatus(t, "after reuse", e.api(latest, "/api/tickets"), http.StatusUnauthorized)
	wantStatus(t, "first token after reuse", e.api(tok.AccessToken, "/api/tickets"), http.StatusUnauthorized)
	entries, err := e.store.ListAudit(ctx, e.account.ID, 10)
	must(t, err)
	if entries[0].Action != valet.AuditRefreshReuse {
		t.Fatalf("audit %+v", entries)
	}
}

func TestRememberedConsent(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	e.code(b, "openid", "tickets:read")
	e.code(b, "tickets:read")
	if b.consents != 1 {
		t.Fatalf("asked %d times for scopes already granted", b.consents)
	}
	e.code(b, "openid", "tickets:read", "tickets:write")
	if b.consents != 2 || !strings.Contains(b.lastConsent, `data-scope="tickets:write"`) ||
		strings.Contains(b.lastConsent, `class="scope" data-scope="tickets:read"`) {
		t.Fatalf("new scope prompt:\n%s", b.lastConsent)
	}
	// The audit log records the two decisions the person made, not the
	// silent re-authorization between them.
	entries, err := e.store.ListAudit(ctx, e.account.ID, 50)
	must(t, err)
	var given []string
	for _, en := range entries {
		if en.Action == valet.AuditConsentGiven {
			given = append(given, string(en.Details))
		}
	}
	if len(given) != 2 || !strings.Contains(given[0], "tickets:write") {
		t.Fatalf("consent.given entries %q", given)
	}
}

func TestExpiredCode(t *testing.T) {
	onEveryStore(t, func(t *testing.T, e *env) {
		code, verifier, _ := e.code(e.browser(), "tickets:read")
		e.clock.Advance(valet.AuthCodeTTL + time.Second)
		status, out := e.exchange(code, verifier)
		wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
	})
}

func TestCrossAccount(t *testing.T) {
	onEveryStore(t, func(t *testing.T, e *env) {
		other := &valet.Account{Name: "globex", DisplayName: "Globex"}
		must(t, e.store.CreateAccount(ctx, other))
		tk := &valet.Customer{AccountID: other.ID, Email: "c@globex.test", Name: "C"}
		must(t, e.store.CreateCustomer(ctx, tk))
		code, verifier, _ := e.code(e.browser(), "customers:read")
		_, out := e.exchange(code, verifier)
		access, _ := out["access_token"].(string)
		wantStatus(t, "own account", e.api(access, "/api/customers"), http.StatusOK)
		wantStatus(t, "other account's customer", e.api(access, "/api/customers/"+strconv.FormatInt(tk.ID, 10)), http.StatusNotFound)
	})
}

func TestCodeReplay(t *testing.T) {
	onEveryStore(t, func(t *testing.T, e *env) {
		code, verifier, _ := e.code(e.browser(), "offline", "tickets:read")
		status, out := e.exchange(code, verifier)
		wantStatus(t, "exchange", status, http.StatusOK)
		access, _ := out["access_token"].(string)
		refresh, _ := out["refresh_token"].(string)
		if out["id_token"] != nil {
			t.Fatalf("an ID token without openid: %v", out)
		}
		status, out = e.exchange(code, verifier)
		wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
		wantStatus(t, "replayed code's token", e.api(access, "/api/tickets"), http.StatusUnauthorized)
		status, out = e.refresh(refresh, "")
		wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
	})
}

// Replaying the approved request's callback URL re-sends the one code
// minted at approval; it never mints a second.
func TestCallbackReplay(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	verifier := oauth2.GenerateVerifier()
	a := b.authorize(e.oauth2("tickets:read").AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier)), "allow")
	first := appRedirect(t, a).Get("code")
	callback := a.resp.Request.URL.String()
	if a.resp.Request.URL.Path != "/oauth/authorize/callback" {
		t.Fatalf("the last hop before the app was %s, want the callback", callback)
	}
	resp, body := b.get(callback)
	second := appRedirect(t, answer{resp, body}).Get("code")
	if first == "" || second != first {
		t.Fatalf("replayed callback gave code %q, want the first one %q", second, first)
	}
	status, _ := e.exchange(first, verifier)
	wantStatus(t, "exchange", status, http.StatusOK)
	status, out := e.exchange(second, verifier)
	wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
}

func TestPKCE(t *testing.T) {
	onEveryStore(t, func(t *testing.T, e *env) {
		b := e.browser()
		code, verifier, _ := e.code(b, "tickets:read")
		// Downgrade: a confidential client omitting the verifier of a code
		// issued with a challenge.
		status, out := e.exchange(code, "")
		wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
		status, out = e.exchange(code, oauth2.GenerateVerifier())
		wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
		status, _ = e.exchange(code, verifier)
		wantStatus(t, "right verifier", status, http.StatusOK)

		// A public app must send a challenge, and plain is refused.
		pub := &oauth2.Config{ClientID: e.public.ClientID, RedirectURL: e.public.RedirectURIs[0], Scopes: []string{"tickets:read"},
			Endpoint: oauth2.Endpoint{AuthURL: e.issuer + "/oauth/authorize"}}
		q := appRedirect(t, b.authorize(pub.AuthCodeURL("s"), "allow"))
		if q.Get("error") != "invalid_request" || q.Get("iss") != e.issuer || q.Get("state") != "s" {
			t.Fatalf("public app without PKCE: %v", q)
		}
		q = appRedirect(t, b.authorize(pub.AuthCodeURL("s", oauth2.SetAuthURLParam("code_challenge", "abcdefghijabcdefghijabcdefghijabcdefghij123"),
			oauth2.SetAuthURLParam("code_challenge_method", "plain")), "allow"))
		if q.Get("error") == "" || q.Get("code") != "" {
			t.Fatalf("plain accepted: %v", q)
		}
	})
}

func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	conf := e.oauth2("tickets:read")
	// An unregistered redirect URI is a page, never a redirect.
	bad := *conf
	bad.RedirectURL = "https://evil.example/cb"
	resp, body := b.get(bad.AuthCodeURL("s"))
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("unregistered redirect: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
	// Exact match, for a public app's loopback URI too (no port leeway).
	pub := &oauth2.Config{ClientID: e.public.ClientID, RedirectURL: "http://127.0.0.1:9998/cb", Scopes: []string{"tickets:read"},
		Endpoint: oauth2.Endpoint{AuthURL: e.issuer + "/oauth/authorize"}}
	resp, _ = b.get(pub.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("loopback port changed: %d %v", resp.StatusCode, resp.Header)
	}
	unknown := *conf
	unknown.ClientID = "nope"
	resp, _ = b.get(unknown.AuthCodeURL("s"))
	wantStatus(t, "unknown client", resp.StatusCode, http.StatusBadRequest)

	// An unregistered scope goes back to the app as invalid_scope.
	q := appRedirect(t, b.authorize(e.oauth2("tickets:read", "integrations:write").AuthCodeURL("s"), "allow"))
	if q.Get("error") != "invalid_scope" || q.Get("iss") != e.issuer || q.Get("state") != "s" {
		t.Fatalf("unregistered scope: %v", q)
	}
	// Deny answers access_denied.
	q = appRedirect(t, b.authorize(conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "deny"))
	if q.Get("error") != "access_denied" || q.Get("state") != "s2" || q.Get("iss") != e.issuer {
		t.Fatalf("deny: %v", q)
	}
	entries, err := e.store.ListAudit(ctx, e.account.ID, 1)
	must(t, err)
	if entries[0].Action != valet.AuditConsentDenied {
		t.Fatalf("audit %+v", entries)
	}
}

func TestClientAuth(t *testing.T) {
	onEveryStore(t, func(t *testing.T, e *env) {
		code, verifier, _ := e.code(e.browser(), "tickets:read")
		good := e.secret
		e.secret = "vcs_wrong"
		status, out := e.exchange(code, verifier)
		wantOAuthError(t, status, out, http.StatusUnauthorized, "invalid_client")
		entries, err := e.store.ListAudit(ctx, 0, 1)
		must(t, err)
		if len(entries) == 0 || entries[0].Action != valet.AuditClientAuthFailed {
			t.Fatalf("audit %+v", entries)
		}
		// client_secret_post works too, and the answer is not cached.
		e.secret = good
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
			"code_verifier": {verifier}, "client_id": {e.app.ClientID}, "client_secret": {good}}
		resp, err := http.PostForm(e.issuer+"/oauth/token", form)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("client_secret_post: %d %v", resp.StatusCode, resp.Header)
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Fatal("CORS allows credentials")
		}
	})
}

func TestRevocationEndpoint(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "offline", "tickets:read")
	_, out := e.exchange(code, verifier)
	access, _ := out["access_token"].(string)
	refresh, _ := out["refresh_token"].(string)
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/oauth/revoke", strings.NewReader(url.Values{"token": {refresh}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(e.app.ClientID, e.secret)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	wantStatus(t, "revoke", resp.StatusCode, http.StatusOK)
	wantStatus(t, "revoked family", e.api(access, "/api/tickets"), http.StatusUnauthorized)
}

func TestConnectedApps(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	code, verifier, _ := e.code(b, "tickets:read", "offline")
	_, out := e.exchange(code, verifier)
	access, _ := out["access_token"].(string)
	refresh, _ := out["refresh_token"].(string)
	wantStatus(t, "before", e.api(access, "/api/tickets"), http.StatusOK)

	resp, body := b.get(e.issuer + "/settings/apps")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Hub") ||
		!strings.Contains(body, "Read tickets, their messages and content") || !strings.Contains(body, "Olive Owner") {
		t.Fatalf("connected apps page: %d\n%s", resp.StatusCode, body)
	}
	// Last used comes from the servers' batched flushes.
	if !strings.Contains(body, `last-used">never<`) {
		t.Fatalf("an unflushed grant shows a last use:\n%s", body)
	}
	grants, err := e.store.ListGrants(ctx, e.account.ID)
	must(t, err)
	must(t, e.store.TouchGrants(ctx, map[int64]time.Time{grants[0].ID: e.clock.Now().Add(-3 * time.Hour)}))
	resp, body = b.get(e.issuer + "/settings/apps")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `last-used">3h`) {
		t.Fatalf("connected apps page after a use 3 h ago:\n%s", body)
	}
	resp, body = b.post(e.issuer+"/settings/apps/"+strconv.FormatInt(grants[0].ID, 10)+"/revoke",
		url.Values{"csrf": {field(t, csrfRe, body)}})
	if resp.StatusCode != http.StatusOK || strings.Contains(body, `data-grant="`) ||
		!strings.Contains(body, "Access revoked: the app&#39;s tokens stopped working.") {
		t.Fatalf("after revoke: %d\n%s", resp.StatusCode, body)
	}
	wantStatus(t, "after revoke", e.api(access, "/api/tickets"), http.StatusUnauthorized)
	status, out := e.refresh(refresh, "")
	wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
	entries, err := e.store.ListAudit(ctx, e.account.ID, 1)
	must(t, err)
	if entries[0].Action != valet.AuditGrantRevoked || entries[0].ActorUserID != e.user.ID {
		t.Fatalf("audit %+v", entries[0])
	}
}

// TestConsentPageSecurity: the consent page cannot be framed, lets its form
// reach only valet and the app's redirect URI, is not cached, and refuses
// an answer without the session's CSRF token.
func TestConsentPageSecurity(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	e.code(b, "tickets:read")
	h := b.consentHeader
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self' https://app.example") ||
		!strings.Contains(csp, "script-src 'self'") || h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("consent page headers: %v", h)
	}
	// A forged answer (no CSRF token) approves nothing.
	resp, body := b.get(e.oauth2("tickets:read", "tickets:write").AuthCodeURL("s2"))
	if resp.Request.URL.Path != "/oauth/consent" {
		t.Fatalf("not on the consent page: %s", resp.Request.URL)
	}
	resp, _ = b.post(e.issuer+"/oauth/consent", url.Values{"id": {field(t, idRe, body)}, "action": {"allow"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("consent without CSRF: %d", resp.StatusCode)
	}
	g, err := e.store.FindActiveGrant(ctx, e.account.ID, e.user.ID, e.app.ID)
	must(t, err)
	if g.Scopes.Has(valet.ScopeTicketsWrite) {
		t.Fatal("a forged consent widened the grant")
	}
}

// TestCodeBinding: a code is redeemed only by the client it was issued to
// and with the redirect URI of its request; a refused attempt leaves it
// usable by its rightful client.
func TestCodeBinding(t *testing.T) {
	onEveryStore(t, func(t *testing.T, e *env) {
		other := &valet.App{Name: "Other", RedirectURIs: []string{redirectURI}, Scopes: valet.ScopeSet{"tickets:read"}}
		otherSecret, err := e.store.RegisterApp(ctx, other)
		must(t, err)
		code, verifier, _ := e.code(e.browser(), "tickets:read")

		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
			"code_verifier": {verifier}, "client_id": {other.ClientID}, "client_secret": {otherSecret}}
		resp, err := http.PostForm(e.issuer+"/oauth/token", form)
		must(t, err)
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		wantOAuthError(t, resp.StatusCode, out, http.StatusBadRequest, "invalid_grant")

		status, out, _ := e.tokenPost(url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {"https://app.example/other"}, "code_verifier": {verifier}})
		wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")

		status, out = e.exchange(code, verifier)
		wantStatus(t, "the rightful exchange", status, http.StatusOK)
	})
}

// TestRefreshBinding: a refresh token is redeemed only by its own client.
func TestRefreshBinding(t *testing.T) {
	onEveryStore(t, func(t *testing.T, e *env) {
		other := &valet.App{Name: "Other", RedirectURIs: []string{redirectURI}, Scopes: valet.ScopeSet{"offline", "tickets:read"}}
		otherSecret, err := e.store.RegisterApp(ctx, other)
		must(t, err)
		code, verifier, _ := e.code(e.browser(), "offline", "tickets:read")
		_, out := e.exchange(code, verifier)
		refresh, _ := out["refresh_token"].(string)
		resp, err := http.PostForm(e.issuer+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh},
			"client_id": {other.ClientID}, "client_secret": {otherSecret}})
		must(t, err)
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		wantOAuthError(t, resp.StatusCode, out, http.StatusBadRequest, "invalid_grant")
		status, out := e.refresh(refresh, "")
		wantStatus(t, "the rightful refresh", status, http.StatusOK)
	})
}

// TestCORS: browsers may call the token endpoint from any origin, without
// credentials (cookies never authenticate a token request).
func TestCORS(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodOptions, e.issuer+"/oauth/token", nil)
	req.Header.Set("Origin", "https://spa.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type") // as browsers send it
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if o := resp.Header.Get("Access-Control-Allow-Origin"); o != "*" && o != "https://spa.example" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight admits credentials: %v", resp.Header)
	}
	req, _ = http.NewRequest(http.MethodPost, e.issuer+"/oauth/token", strings.NewReader("grant_type=refresh_token&refresh_token=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://spa.example")
	req.SetBasicAuth(e.app.ClientID, e.secret)
	resp, err = http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") == "" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("cross-origin token answer: %v", resp.Header)
	}
}

// TestConnectedAppsOfAgent: an agent sees the apps they approved
// themselves, and may revoke those, but not the owner's.
func TestConnectedAppsOfAgent(t *testing.T) {
	e := newEnv(t)
	owners := e.browser()
	e.code(owners, "tickets:read")
	ownerGrant, err := e.store.FindActiveGrant(ctx, e.account.ID, e.user.ID, e.app.ID)
	must(t, err)
	agent := &valet.User{Email: "agent@acme.test", Name: "Aaron Agent", PasswordHash: e.user.PasswordHash}
	must(t, e.store.CreateUser(ctx, agent))
	must(t, e.store.AddMember(ctx, e.account.ID, agent.ID, valet.RoleAgent))
	agentGrant, err := e.store.Consent(ctx, e.account.ID, agent.ID, e.public.ID, valet.ScopeSet{"tickets:read"})
	must(t, err)

	ab := e.browser()
	_, body := ab.get(e.issuer + "/signin")
	ab.post(e.issuer+"/signin", url.Values{"csrf": {field(t, csrfRe, body)}, "email": {agent.Email}, "password": {password}})
	resp, body := ab.get(e.issuer + "/settings/apps")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`data-grant="%d"`, agentGrant.ID)) ||
		strings.Contains(body, fmt.Sprintf(`data-grant="%d"`, ownerGrant.ID)) || !strings.Contains(body, "You see the apps you approved yourself") {
		t.Fatalf("agent's connected apps: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = ab.post(e.issuer+"/settings/apps/"+strconv.FormatInt(ownerGrant.ID, 10)+"/revoke", url.Values{"csrf": {field(t, csrfRe, body)}})
	wantStatus(t, "agent revoking the owner's app", resp.StatusCode, http.StatusNotFound)
	if _, err := e.store.FindActiveGrant(ctx, e.account.ID, e.user.ID, e.app.ID); err != nil {
		t.Fatalf("the owner's grant after the agent's attempt: %v", err)
	}
	// The owner sees both.
	_, body = owners.get(e.issuer + "/settings/apps")
	if !strings.Contains(body, fmt.Sprintf(`data-grant="%d"`, agentGrant.ID)) || !strings.Contains(body, fmt.Sprintf(`data-grant="%d"`, ownerGrant.ID)) {
		t.Fatalf("owner's connected apps:\n%s", body)
	}
}

// TestAuditPage: owners and admins read the account's audit log in
// settings, in plain words with who and which app; agents may not.
func TestAuditPage(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	code, verifier, _ := e.code(b, "tickets:read", "offline")
	_, out := e.exchange(code, verifier)
	refresh, _ := out["refresh_token"].(string)
	// A failed client authentication of the installed app is no account's
	// entry, yet this account's page shows it.
	good := e.secret
	e.secret = "vcs_wrong"
	e.refresh(refresh, "")
	e.secret = good
	resp, body := b.get(e.issuer + "/settings/audit")
	if !strings.Contains(body, `data-action="client.auth_failed"`) || !strings.Contains(body, "The app failed to authenticate") {
		t.Fatalf("audit page without the installed app's failed authentication:\n%s", body)
	}
	e.refresh(refresh, "")
	e.refresh(refresh, "") // reuse: the grant is revoked and audited

	resp, body = b.get(e.issuer + "/settings")
	if !strings.Contains(body, `href="/settings/audit"`) {
		t.Fatalf("no link to the audit log in settings:\n%s", body)
	}
	resp, body = b.get(e.issuer + "/settings/audit")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("audit page: %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{`data-action="consent.given"`, "Approved an app", "Olive Owner", "Hub",
		`data-action="refresh.reuse"`, "A refresh token was used twice: the app&#39;s access was revoked",
		"refresh_token_id"} {
		if !strings.Contains(body, want) {
			t.Fatalf("audit page without %q:\n%s", want, body)
		}
	}
	if strings.Index(body, "refresh.reuse") > strings.Index(body, "consent.given") {
		t.Fatal("the audit page is not newest first")
	}

	agent := &valet.User{Email: "agent@acme.test", Name: "Aaron Agent", PasswordHash: e.user.PasswordHash}
	must(t, e.store.CreateUser(ctx, agent))
	must(t, e.store.AddMember(ctx, e.account.ID, agent.ID, valet.RoleAgent))
	ab := e.browser()
	_, body = ab.get(e.issuer + "/signin")
	ab.post(e.issuer+"/signin", url.Values{"csrf": {field(t, csrfRe, body)}, "email": {agent.Email}, "password": {password}})
	resp, body = ab.get(e.issuer + "/settings/audit")
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "consent.given") {
		t.Fatalf("agent on the audit page: %d\n%s", resp.StatusCode, body)
	}
	if _, body = ab.get(e.issuer + "/settings"); strings.Contains(body, `href="/settings/audit"`) {
		t.Fatal("agents see a link to the audit log")
	}
}

// TestAccountChoice: a user of two accounts picks one on the consent page;
// account=NAME preselects it, and the token answer names it.
func TestAccountChoice(t *testing.T) {
	e := newEnv(t)
	globex := e.secondAccount()
	b := e.browser()
	verifier := oauth2.GenerateVerifier()
	u := e.oauth2("tickets:read").AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("account", "globex"))
	q := appRedirect(t, b.authorize(u, "allow"))
	if !strings.Contains(b.lastConsent, `<select id="account" name="account">`) ||
		!strings.Contains(b.lastConsent, `value="`+strconv.FormatInt(globex.ID, 10)+`" selected`) {
		t.Fatalf("account picker:\n%s", b.lastConsent)
	}
	status, out := e.exchange(q.Get("code"), verifier)
	if status != http.StatusOK || out["account"] != "globex" {
		t.Fatalf("token answer %d %v", status, out)
	}
}

// TestTwoNodeRevocation: two valet nodes on one PostgreSQL database; a
// revocation on one is refused by the other within a second.
func TestTwoNodeRevocation(t *testing.T) {
	if os.Getenv(sqltest.PostgresEnv) == "" {
		t.Skip(sqltest.PostgresEnv + " is not set")
	}
	e := newEnvOn(t, true)
	other, err := sqlstore.Open(ctx, e.dsn)
	must(t, err)
	t.Cleanup(func() { other.Close() })
	srv, err := server.New(other, server.DefaultConfig(), server.WithLogger(slog.New(slog.DiscardHandler)))
	must(t, err)
	node2 := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { node2.Close(); _ = srv.Close(ctx) })

	code, verifier, _ := e.code(e.browser(), "tickets:read", "offline")
	_, out := e.exchange(code, verifier)
	access, _ := out["access_token"].(string)
	refresh, _ := out["refresh_token"].(string)
	call := func() int {
		req, _ := http.NewRequest(http.MethodGet, node2.URL+"/api/tickets", nil)
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	wantStatus(t, "node 2 before", call(), http.StatusOK)

	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/oauth/revoke", strings.NewReader(url.Values{"token": {refresh}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(e.app.ClientID, e.secret)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	revoked := time.Now()
	for call() != http.StatusUnauthorized {
		if time.Since(revoked) > time.Second {
			t.Fatal("node 2 still accepts the token a second after its revocation")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func kidOf(t *testing.T, jwt string) string {
	t.Helper()
	head, _, _ := strings.Cut(jwt, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	must(t, err)
	var h struct {
		Kid string `json:"kid"`
	}
	must(t, json.Unmarshal(b, &h))
	return h.Kid
}

func (e *env) jwksKids() []string {
	e.t.Helper()
	resp, err := http.Get(e.issuer + "/oauth/keys")
	must(e.t, err)
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	must(e.t, json.NewDecoder(resp.Body).Decode(&set))
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// waitKids polls the JWKS (each call may start a reload) until cond holds.
func (e *env) waitKids(what string, cond func([]string) bool) {
	e.t.Helper()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if kids := e.jwksKids(); cond(kids) {
			return
		} else if time.Since(start) > 5*time.Second {
			e.t.Fatalf("%s: JWKS kids %v", what, kids)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	idToken := func() string {
		code, verifier, _ := e.code(e.browser(), "openid", "tickets:read")
		_, out := e.exchange(code, verifier)
		tok, _ := out["id_token"].(string)
		return tok
	}
	before := idToken()
	oldKid := kidOf(t, before)

	if _, err := authserver.RotateKeys(ctx, e.store, []byte("another secret, which is wrong")); err == nil {
		t.Fatal("rotation with the wrong secret succeeded")
	}
	e.clock.Advance(authserver.KeyPublishDelay) // the first keys have been in use for a while
	created, err := authserver.RotateKeys(ctx, e.store, []byte(testSecret))
	must(t, err)
	newKid := created[0].ID // RS256 first
	e.clock.Advance(authserver.KeyReloadInterval + time.Second)
	e.waitKids("after rotation", func(k []string) bool { return slices.Contains(k, newKid) && slices.Contains(k, oldKid) })
	// Published, the new key does not sign yet: nodes that have not
	// reloaded, and apps with the old key set, would not know it.
	if kid := kidOf(t, idToken()); kid != oldKid {
		t.Fatalf("ID token signed by %s right after the rotation, want the old key %s", kid, oldKid)
	}
	e.clock.Advance(authserver.KeyPublishDelay)
	e.waitKids("after the publish delay", func(k []string) bool { return slices.Contains(k, newKid) })
	for start := time.Now(); kidOf(t, idToken()) != newKid; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second { // the reload runs in the background
			t.Fatalf("ID tokens still not signed by %s after the publish delay", newKid)
		}
	}

	after := idToken()
	if kidOf(t, after) != newKid {
		t.Fatalf("new ID token signed by %s, want %s", kidOf(t, after), newKid)
	}
	provider, err := oidc.NewProvider(ctx, e.issuer)
	must(t, err)
	v := provider.Verifier(&oidc.Config{ClientID: e.app.ClientID})
	for _, raw := range []string{before, after} {
		if _, err := v.Verify(ctx, raw); err != nil {
			t.Fatalf("verify %s: %v", kidOf(t, raw), err)
		}
	}

	// Once the overlap has passed, the old key leaves the JWKS.
	e.clock.Advance(authserver.RetiredKeyOverlap + authserver.KeyReloadInterval)
	e.waitKids("after the overlap", func(k []string) bool { return !slices.Contains(k, oldKid) && slices.Contains(k, newKid) })
}

func TestIntrospection(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "tickets:read")
	_, out := e.exchange(code, verifier)
	access, _ := out["access_token"].(string)
	introspect := func(secret, token string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.issuer+"/oauth/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(e.app.ClientID, secret)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	status, m := introspect(e.secret, access)
	if status != http.StatusOK || m["active"] != true || m["scope"] != "tickets:read" || m["account"] != "acme" ||
		m["sub"] != strconv.FormatInt(e.user.ID, 10) {
		t.Fatalf("introspection: %d %v", status, m)
	}
	status, m = introspect(e.secret, "vat_unknown")
	if status != http.StatusOK || m["active"] != false {
		t.Fatalf("unknown token: %d %v", status, m)
	}
	status, _ = introspect("vcs_wrong", access)
	if status != http.StatusUnauthorized {
		t.Fatalf("wrong client secret: %d", status)
	}
}

func TestPartnerPortal(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	resp, body := b.get(e.issuer + "/developers")
	if resp.Request.URL.Path == "/signin" {
		resp, body = b.post(e.issuer+"/signin", url.Values{"csrf": {field(t, csrfRe, body)},
			"next": {field(t, nextRe, body)}, "email": {e.user.Email}, "password": {password}})
	}
	if resp.Request.URL.Path != "/developers" || resp.StatusCode != http.StatusOK {
		t.Fatalf("developers page: %d %s", resp.StatusCode, resp.Request.URL)
	}
	csrf := field(t, csrfRe, body)
	form := url.Values{"csrf": {csrf}, "name": {"My app"}, "developer_name": {"Me"},
		"redirect_uris": {"http://evil.example/cb"}, "scope": {"openid", "tickets:read"}}
	resp, body = b.post(e.issuer+"/developers/apps", form)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "must use https") || !strings.Contains(body, `value="tickets:read" checked`) {
		t.Fatalf("bad redirect URI: %d\n%s", resp.StatusCode, body)
	}
	form.Set("redirect_uris", "https://mine.example/cb\nhttp://localhost:3000/cb")
	resp, body = b.post(e.issuer+"/developers/apps", form)
	secretRe := regexp.MustCompile(`id="secret" class="secret" readonly value="([^"]+)"`)
	clientRe := regexp.MustCompile(`<dt>client_id</dt><dd><input class="secret" readonly value="([^"]+)"`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register: %d\n%s", resp.StatusCode, body)
	}
	secret, clientID := field(t, secretRe, body), field(t, clientRe, body)
	app, err := e.store.FindApp(ctx, clientID)
	must(t, err)
	if !app.CheckSecret(secret) || app.OwnerUserID != e.user.ID || len(app.RedirectURIs) != 2 || app.Scopes.String() != "openid tickets:read" {
		t.Fatalf("registered app %+v", app)
	}
	_, body = b.get(e.issuer + "/developers")
	if !strings.Contains(body, clientID) {
		t.Fatalf("app not listed:\n%s", body)
	}
	id := strconv.FormatInt(app.ID, 10)
	resp, body = b.post(e.issuer+"/developers/apps/"+id+"/rotate", url.Values{"csrf": {csrf}})
	rotated := field(t, secretRe, body)
	app, err = e.store.FindApp(ctx, clientID)
	must(t, err)
	if resp.StatusCode != http.StatusOK || rotated == secret || !app.CheckSecret(rotated) || app.CheckSecret(secret) {
		t.Fatalf("rotate: %d", resp.StatusCode)
	}
	// Editing: the form comes filled in; a bad value keeps what was typed;
	// a good one is saved, secret and client type untouched.
	resp, body = b.get(e.issuer + "/developers/apps/" + id)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `value="My app"`) ||
		!strings.Contains(body, "http://localhost:3000/cb") || !strings.Contains(body, `value="tickets:read" checked`) ||
		strings.Contains(body, `name="public"`) {
		t.Fatalf("edit page: %d\n%s", resp.StatusCode, body)
	}
	edit := url.Values{"csrf": {csrf}, "name": {"My app 2"}, "redirect_uris": {"https://mine.example/cb"},
		"scope": {"openid", "offline", "tickets:read"}, "id_token_signed_response_alg": {"ES256"}, "refresh_reuse_leeway": {"61"}}
	resp, body = b.post(e.issuer+"/developers/apps/"+id, edit)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "must be 0-60 seconds") || !strings.Contains(body, `value="My app 2"`) {
		t.Fatalf("edit with a bad leeway: %d\n%s", resp.StatusCode, body)
	}
	edit.Set("refresh_reuse_leeway", "30")
	resp, body = b.post(e.issuer+"/developers/apps/"+id, edit)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "App saved.") {
		t.Fatalf("edit: %d\n%s", resp.StatusCode, body)
	}
	app, err = e.store.FindApp(ctx, clientID)
	must(t, err)
	if app.Name != "My app 2" || app.RefreshLeeway != 30 || app.IDTokenAlg != valet.AlgES256 ||
		app.Scopes.String() != "offline openid tickets:read" || len(app.RedirectURIs) != 1 || !app.CheckSecret(rotated) {
		t.Fatalf("edited app %+v", app)
	}
	resp, _ = b.get(e.issuer + "/developers/apps/" + strconv.FormatInt(e.app.ID, 10))
	wantStatus(t, "edit another's app", resp.StatusCode, http.StatusNotFound)
	// Someone else's app is not yours to delete.
	resp, _ = b.post(e.issuer+"/developers/apps/"+strconv.FormatInt(e.app.ID, 10)+"/delete", url.Values{"csrf": {csrf}})
	wantStatus(t, "delete another's app", resp.StatusCode, http.StatusNotFound)
	resp, body = b.post(e.issuer+"/developers/apps/"+id+"/delete", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "App deleted; every installation of it is revoked.") {
		t.Fatalf("delete: %d\n%s", resp.StatusCode, body)
	}
	_, err = e.store.FindApp(ctx, clientID)
	if valet.ErrorCode(err) != valet.ENOTFOUND {
		t.Fatalf("deleted app: %v", err)
	}
}

// TestConfidentialWithoutPKCE: PKCE is accepted, not required, for a
// confidential app (the demo's curl walk-through relies on it).
func TestConfidentialWithoutPKCE(t *testing.T) {
	onEveryStore(t, func(t *testing.T, e *env) {
		q := appRedirect(t, e.browser().authorize(e.oauth2("tickets:read").AuthCodeURL("s"), "allow"))
		status, out := e.exchange(q.Get("code"), "")
		wantStatus(t, "exchange", status, http.StatusOK)
		access, _ := out["access_token"].(string)
		wantStatus(t, "api", e.api(access, "/api/tickets"), http.StatusOK)
		// A verifier for a code issued without a challenge is refused.
		q = appRedirect(t, e.browser().authorize(e.oauth2("tickets:read").AuthCodeURL("s"), "allow"))
		status, out = e.exchange(q.Get("code"), oauth2.GenerateVerifier())
		wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_grant")
	})
}

func TestJanitor(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "tickets:read")
	_, out := e.exchange(code, verifier)
	access, _ := out["access_token"].(string)
	auth, err := authserver.New(ctx, e.store, authserver.Config{Issuer: e.issuer, Secret: []byte(testSecret), Clock: e.clock})
	must(t, err)
	e.clock.Advance(valet.DefaultAccessTTL + valet.CodeTombstoneTTL + time.Hour)
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { auth.RunJanitor(jctx, time.Millisecond); close(done) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	// The janitor left nothing to purge.
	n, err := e.store.PurgeOAuth(ctx, 1000)
	must(t, err)
	if n != 0 {
		t.Fatalf("the janitor left %d expired rows", n)
	}
	wantStatus(t, "purged token", e.api(access, "/api/tickets"), http.StatusUnauthorized)
}

// TestIDTokenAlgorithms: each app's id_token_signed_response_alg signs its
// ID tokens; a refresh returns one only when it asks for openid.
func TestIDTokenAlgorithms(t *testing.T) {
	for _, alg := range []string{valet.AlgES256, valet.AlgEdDSA} {
		t.Run(alg, func(t *testing.T) {
			onEveryStore(t, func(t *testing.T, e *env) {
				e.app.IDTokenAlg = alg
				must(t, e.store.UpdateApp(ctx, e.app))
				code, verifier, nonce := e.code(e.browser(), "openid", "offline")
				_, out := e.exchange(code, verifier)
				raw, _ := out["id_token"].(string)
				provider, err := oidc.NewProvider(ctx, e.issuer)
				must(t, err)
				v := provider.Verifier(&oidc.Config{ClientID: e.app.ClientID, SupportedSigningAlgs: []string{alg}})
				idt, err := v.Verify(ctx, raw)
				must(t, err)
				access, _ := out["access_token"].(string)
				if idt.Nonce != nonce || idt.VerifyAccessToken(access) != nil {
					t.Fatalf("nonce %q, at_hash check %v", idt.Nonce, idt.VerifyAccessToken(access))
				}
				var identity map[string]any
				must(t, idt.Claims(&identity))
				if _, ok := identity["email"]; ok || identity["name"] != nil {
					t.Fatalf("an ID token without the email and profile scopes has identity claims: %v", identity)
				}
				refresh, _ := out["refresh_token"].(string)
				status, out := e.refresh(refresh, "openid offline")
				wantStatus(t, "refresh", status, http.StatusOK)
				raw, _ = out["id_token"].(string)
				if _, err := v.Verify(ctx, raw); err != nil {
					t.Fatalf("refresh asking for openid: %v (%v)", err, out)
				}
			})
		})
	}
}

// TestLongState: a long (but bounded) state survives the sign-in detour.
func TestLongState(t *testing.T) {
	e := newEnv(t)
	state := strings.Repeat("s", 1024)
	verifier := oauth2.GenerateVerifier()
	q := appRedirect(t, e.browser().authorize(e.oauth2("tickets:read").AuthCodeURL(state, oauth2.S256ChallengeOption(verifier),
		oidc.Nonce(strings.Repeat("n", 1024))), "allow"))
	if q.Get("state") != state || q.Get("code") == "" {
		t.Fatalf("long state: %.80v", q)
	}
	q = appRedirect(t, e.browser().authorize(e.oauth2("tickets:read").AuthCodeURL(state+"x"), "allow"))
	if q.Get("error") != "invalid_request" {
		t.Fatalf("too long state: %.80v", q)
	}
}
