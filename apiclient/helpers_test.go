package apiclient_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/apiclient"
	"github.com/valethq/valet/server"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

// env is a real valet server on a fresh SQLite store behind an httptest
// server, with one account: an owner, an API key with every API scope, a
// customer and a ticket.
type env struct {
	store    valet.Store
	hs       *httptest.Server
	account  *valet.Account
	owner    *valet.User
	key      string
	customer *valet.Customer
	ticket   *valet.Ticket
}

// logWriter sends the server's warnings to the test log until the test ends.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// template is a migrated, empty SQLite file made once per run: migrating
// costs about a second under the race detector, copying a file nothing.
var template struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	os.Exit(code)
}

// openStore returns a store on a fresh copy of the template, closed when
// the test ends.
func openStore(t testing.TB) valet.Store {
	t.Helper()
	seal := sqlstore.WithSealKey(bytes.Repeat([]byte{7}, 32))
	template.once.Do(func() {
		if template.dir, template.err = os.MkdirTemp("", "apiclient-test"); template.err != nil {
			return
		}
		s, err := sqlstore.Open(context.Background(), filepath.Join(template.dir, "valet.db"), seal)
		if err != nil {
			template.err = err
			return
		}
		template.err = s.Close()
	})
	if template.err != nil {
		t.Fatalf("template database: %v", template.err)
	}
	dst := filepath.Join(t.TempDir(), "valet.db")
	raw, err := os.ReadFile(filepath.Join(template.dir, "valet.db"))
	must(t, err)
	must(t, os.WriteFile(dst, raw, 0o600))
	return sqltest.OpenSQLiteFile(t, dst, seal)
}

// newEnv starts the server; rate limits are out of reach unless tweak sets
// them. The server runs on the wall clock, so its rate-limit buckets drain
// in real time as the client's waits expect.
func newEnv(t testing.TB, tweak ...func(*server.Config)) *env {
	t.Helper()
	store := openStore(t)
	cfg := server.DefaultConfig()
	cfg.APIKeyLimit = server.RateLimit{Requests: 1_000_000, Per: time.Second}
	cfg.OAuthLimit = cfg.APIKeyLimit
	for _, f := range tweak {
		f(&cfg)
	}
	lw := &logWriter{t: t}
	srv, err := server.New(store, cfg, server.WithLogger(slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn}))))
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

	ctx := context.Background()
	e := &env{store: store, hs: hs}
	e.account = &valet.Account{Name: "acme", DisplayName: "Acme"}
	must(t, store.CreateAccount(ctx, e.account))
	e.owner = e.member("owner@acme.example", valet.RoleOwner)
	e.key = e.apiKey(t)
	e.customer = e.newCustomer(t, "alice@customers.example")
	e.ticket = e.newTicket(t, e.customer, "Where is my order?")
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// member creates a user and adds it to the account with role.
func (e *env) member(email string, role valet.Role) *valet.User {
	ctx := context.Background()
	u := &valet.User{Email: email, Name: strings.Split(email, "@")[0]}
	if err := e.store.CreateUser(ctx, u); err != nil {
		panic(err)
	}
	if err := e.store.AddMember(ctx, e.account.ID, u.ID, role); err != nil {
		panic(err)
	}
	return u
}

// apiKey returns a new API key of the owner with scopes (all API scopes
// when none are given).
func (e *env) apiKey(t testing.TB, scopes ...valet.Scope) string {
	t.Helper()
	k := &valet.APIKey{AccountID: e.account.ID, UserID: e.owner.ID, Name: "test", Scopes: scopes}
	secret, err := e.store.CreateAPIKey(context.Background(), k)
	must(t, err)
	return secret
}

// oauthToken returns a vat_ access token of a new app's grant, and the
// grant so the test can revoke it.
func (e *env) oauthToken(t testing.TB) (string, *valet.Grant) {
	t.Helper()
	ctx := context.Background()
	app := &valet.App{ClientID: "app-" + strings.ReplaceAll(valet.NewSecret("")[:12], "_", "x"),
		Name: "Test app", Scopes: valet.APIScopes()}
	must(t, e.store.CreateApp(ctx, app))
	g := &valet.Grant{AccountID: e.account.ID, UserID: e.owner.ID, AppID: app.ID, Scopes: valet.APIScopes()}
	must(t, e.store.CreateGrant(ctx, g))
	tok, err := e.store.CreateAccessToken(ctx, g.ID, valet.APIScopes(), time.Hour)
	must(t, err)
	return tok, g
}

func (e *env) newCustomer(t testing.TB, email string) *valet.Customer {
	t.Helper()
	c := &valet.Customer{AccountID: e.account.ID, Email: email, Name: strings.Split(email, "@")[0]}
	must(t, e.store.CreateCustomer(context.Background(), c))
	return c
}

func (e *env) newTicket(t testing.TB, c *valet.Customer, subject string) *valet.Ticket {
	t.Helper()
	tk := &valet.Ticket{AccountID: e.account.ID, Subject: subject, Customer: c.Ref()}
	m := &valet.Message{AccountID: e.account.ID, Public: true, BodyText: "Hello, about " + subject}
	must(t, e.store.CreateTicket(context.Background(), tk, []*valet.Message{m}))
	return tk
}

// client returns a client of the server authenticated with the owner's key
// (Basic, as Gorgias), with fast backoff so retry tests stay quick; opts
// come after and can override.
func (e *env) client(t testing.TB, opts ...apiclient.Option) *apiclient.Client {
	t.Helper()
	return newClient(t, e.hs.URL, append([]apiclient.Option{apiclient.WithAPIKey(e.owner.Email, e.key)}, opts...)...)
}

func newClient(t testing.TB, url string, opts ...apiclient.Option) *apiclient.Client {
	t.Helper()
	c, err := apiclient.New(url, append([]apiclient.Option{apiclient.WithBackoff(5*time.Millisecond, 20*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("apiclient.New: %v", err)
	}
	return c
}

// recorder is an http.RoundTripper that records each request it sends and
// the status (0 for a transport error) it got.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []string // "GET /api/tickets?limit=10 -> 200"
	n    int
	st   []int
}

func newRecorder() *recorder { return &recorder{base: http.DefaultTransport} }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := r.base.RoundTrip(req)
	status := 0
	if err == nil {
		status = res.StatusCode
	}
	r.mu.Lock()
	r.n++
	r.st = append(r.st, status)
	r.log = append(r.log, req.Method+" "+req.URL.RequestURI())
	r.mu.Unlock()
	return res, err
}

func (r *recorder) httpClient() *http.Client { return &http.Client{Transport: r} }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *recorder) statuses() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.st...)
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// apiError returns err as *apiclient.Error or fails the test.
func apiError(t testing.TB, err error) *apiclient.Error {
	t.Helper()
	var e *apiclient.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *apiclient.Error", err, err)
	}
	return e
}
