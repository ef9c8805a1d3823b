package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore/sqltest"
)

// testClock is a valet.Clock tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Now().UTC().Truncate(time.Microsecond)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testLogWriter sends the server's warnings and errors to the test log, so a
// 500 in a test explains itself.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// apiEnv is a server on a fresh SQLite store behind a real httptest server.
type apiEnv struct {
	store valet.Store
	srv   *Server
	hs    *httptest.Server
	clock *testClock
}

// storeOpener returns a fresh, empty store closed when the test ends.
type storeOpener func(testing.TB) valet.Store

func sqliteStore(tb testing.TB) valet.Store   { return sqltest.SQLite(tb) }
func postgresStore(tb testing.TB) valet.Store { return sqltest.Postgres(tb) }

// onStores runs test on SQLite and on PostgreSQL; the PostgreSQL run skips
// unless VALET_TEST_POSTGRES names a server (CI always sets it).
func onStores(t *testing.T, test func(t *testing.T, open storeOpener)) {
	t.Helper()
	for _, b := range []struct {
		name string
		open storeOpener
	}{{"sqlite", sqliteStore}, {"postgres", postgresStore}} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, b.open)
		})
	}
}

// newAPIEnv starts a server on SQLite with rate limits out of the way
// unless tweak says otherwise.
func newAPIEnv(t testing.TB, tweak ...func(*Config)) *apiEnv {
	t.Helper()
	return newAPIEnvOn(t, sqliteStore, tweak...)
}

// newAPIEnvOn is newAPIEnv on the store open returns.
func newAPIEnvOn(t testing.TB, open storeOpener, tweak ...func(*Config)) *apiEnv {
	t.Helper()
	store := open(t)
	cfg := DefaultConfig()
	// Limits no test reaches by accident; the rate-limit tests set their own.
	cfg.APIKeyLimit = RateLimit{Requests: 1_000_000, Per: time.Second}
	cfg.OAuthLimit = cfg.APIKeyLimit
	for _, f := range tweak {
		f(&cfg)
	}
	clock := newTestClock()
	lw := &testLogWriter{t: t}
	log := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := New(store, cfg, WithClock(clock), WithLogger(log))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("server.Close: %v", err)
		}
		lw.mu.Lock()
		lw.done = true
		lw.mu.Unlock()
	})
	return &apiEnv{store: store, srv: srv, hs: hs, clock: clock}
}

func mustAccount(t testing.TB, store valet.Store, name string) *valet.Account {
	t.Helper()
	a := &valet.Account{Name: name, DisplayName: strings.ToUpper(name)}
	if err := store.CreateAccount(context.Background(), a); err != nil {
		t.Fatalf("CreateAccount(%s): %v", name, err)
	}
	return a
}

// mustUser creates a user and makes it a member of account with role.
func mustUser(t testing.TB, store valet.Store, account *valet.Account, email string, role valet.Role) *valet.User {
	t.Helper()
	ctx := context.Background()
	u := &valet.User{Email: email, Name: strings.Split(email, "@")[0]}
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	if err := store.AddMember(ctx, account.ID, u.ID, role); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	return u
}

// mustAPIKey returns the secret of a new API key of user in account holding
// scopes (all API scopes when none are given).
func mustAPIKey(t testing.TB, store valet.Store, account *valet.Account, user *valet.User, scopes ...valet.Scope) string {
	t.Helper()
	k := &valet.APIKey{AccountID: account.ID, UserID: user.ID, Name: "test", Scopes: scopes}
	secret, err := store.CreateAPIKey(context.Background(), k)
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	return secret
}

// mustOAuthToken returns a vat_ access token of a new app's grant on
// account, and the grant (to revoke it).
func mustOAuthToken(t testing.TB, store valet.Store, account *valet.Account, user *valet.User, scopes ...valet.Scope) (string, *valet.Grant) {
	t.Helper()
	ctx := context.Background()
	if len(scopes) == 0 {
		scopes = valet.APIScopes()
	}
	app := &valet.App{ClientID: "app-" + strings.ReplaceAll(valet.NewSecret("")[:12], "_", "x"), Name: "Test app", Scopes: valet.APIScopes()}
	if err := store.CreateApp(ctx, app); err != nil {
		t.Fatalf("CreateApp: %v", err)
	}
	g := &valet.Grant{AccountID: account.ID, UserID: user.ID, AppID: app.ID, Scopes: scopes}
	if err := store.CreateGrant(ctx, g); err != nil {
		t.Fatalf("CreateGrant: %v", err)
	}
	secret, err := store.CreateAccessToken(ctx, g.ID, scopes, 24*time.Hour)
	if err != nil {
		t.Fatalf("CreateAccessToken: %v", err)
	}
	return secret, g
}

func mustCustomer(t testing.TB, store valet.Store, account *valet.Account, email string) *valet.Customer {
	t.Helper()
	c := &valet.Customer{AccountID: account.ID, Email: email, Name: strings.Split(email, "@")[0]}
	if err := store.CreateCustomer(context.Background(), c); err != nil {
		t.Fatalf("CreateCustomer: %v", err)
	}
	return c
}

func mustTicket(t testing.TB, store valet.Store, account *valet.Account, customer *valet.Customer, subject string) *valet.Ticket {
	t.Helper()
	tk := &valet.Ticket{AccountID: account.ID, Subject: subject, Customer: customer.Ref()}
	m := &valet.Message{AccountID: account.ID, Public: true, BodyText: "Hello, about " + subject}
	if err := store.CreateTicket(context.Background(), tk, []*valet.Message{m}); err != nil {
		t.Fatalf("CreateTicket: %v", err)
	}
	return tk
}

// apiResp is an answer of the API under test.
type apiResp struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r *apiResp) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// errorBody decodes an error answer.
func (r *apiResp) Err(t testing.TB) errorDetail {
	t.Helper()
	var e errorBody
	r.JSON(t, &e)
	return e.Error
}

// want fails the test unless the status is status.
func (r *apiResp) want(t testing.TB, status int) *apiResp {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Body)
	}
	return r
}

// reqOpt changes a request before it is sent.
type reqOpt func(*http.Request)

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// bearer authenticates with a key or token; "" sends no Authorization.
func bearer(secret string) reqOpt {
	return func(r *http.Request) {
		if secret != "" {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
	}
}

func basicAuth(email, key string) reqOpt {
	return header("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(email+":"+key)))
}

// do sends a request. body is sent as is when it is a string or []byte and
// as JSON otherwise; nil sends none.
func (e *apiEnv) do(t testing.TB, method, path string, body any, opts ...reqOpt) *apiResp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.hs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	res, err := e.hs.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &apiResp{Status: res.StatusCode, Header: res.Header, Body: raw}
}

// list is a decoded list answer.
type list[T any] struct {
	Data   []T    `json:"data"`
	Object string `json:"object"`
	URI    string `json:"uri"`
	Meta   struct {
		PrevCursor *string `json:"prev_cursor"`
		NextCursor *string `json:"next_cursor"`
		LastID     int64   `json:"last_id"`
	} `json:"meta"`
}

// fixture is an account with an owner, an agent, keys, a customer and a ticket.
type fixture struct {
	account  *valet.Account
	owner    *valet.User
	agent    *valet.User
	key      string // API key of the owner with every API scope
	customer *valet.Customer
	ticket   *valet.Ticket
}

func newFixture(t testing.TB, store valet.Store, name string) *fixture {
	t.Helper()
	f := &fixture{account: mustAccount(t, store, name)}
	f.owner = mustUser(t, store, f.account, "owner@"+name+".example", valet.RoleOwner)
	f.agent = mustUser(t, store, f.account, "agent@"+name+".example", valet.RoleAgent)
	f.key = mustAPIKey(t, store, f.account, f.owner)
	f.customer = mustCustomer(t, store, f.account, "alice@"+name+"-customers.example")
	f.ticket = mustTicket(t, store, f.account, f.customer, "Where is my order?")
	return f
}
