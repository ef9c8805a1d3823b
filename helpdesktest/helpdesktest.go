// Package helpdesktest starts a real valet helpdesk (REST API, pages and
// the OAuth authorization server on a real store) on an httptest server,
// for the tests of packages that talk to it as a client would: the hub,
// the API client, benchmarks.
package helpdesktest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/authserver"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/server"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

// Secret is the helpdesk's server secret (VALET_SECRET) in tests.
const Secret = "a helpdesktest server secret, 32+ bytes"

// Password is every test user's password.
const Password = "correct horse battery staple"

// Options configure Start.
type Options struct {
	// Postgres runs the helpdesk on a fresh PostgreSQL schema (skipping
	// the test when VALET_TEST_POSTGRES is unset) instead of SQLite.
	Postgres bool
	// Clock is the helpdesk's clock (store, server, authorization server).
	Clock valet.Clock
	// Config adjusts the server configuration (rate limits…).
	Config func(*server.Config)
}

// Helpdesk is a running helpdesk with one account ("acme") and its owner.
type Helpdesk struct {
	URL     string // the issuer and API base, http://127.0.0.1:port
	Store   *sqlstore.Store
	DSN     string // the store's DSN (a file path, or a PostgreSQL DSN)
	Account *valet.Account
	Owner   *valet.User
	Server  *httptest.Server

	mu     sync.Mutex
	grants map[string]*atomic.Int64 // token endpoint requests by grant_type
}

// Start starts a helpdesk, stopped when the test ends.
func Start(tb testing.TB, opts Options) *Helpdesk {
	tb.Helper()
	ctx := context.Background()
	var storeOpts []sqlstore.Option
	if opts.Clock != nil {
		storeOpts = append(storeOpts, sqlstore.WithClock(opts.Clock))
	}
	h := &Helpdesk{grants: make(map[string]*atomic.Int64)}
	if opts.Postgres {
		h.DSN = sqltest.PostgresDSN(tb)
	} else {
		h.DSN = tb.TempDir() + "/helpdesk.db"
	}
	h.Store = open(tb, h.DSN, storeOpts...)
	h.Account = &valet.Account{Name: "acme", DisplayName: "Acme Outfitters"}
	must(tb, h.Store.CreateAccount(ctx, h.Account))
	h.Owner = h.AddUser(tb, "olivia@acme.test", "Olivia Owner", valet.RoleOwner)

	h.Server = httptest.NewUnstartedServer(nil)
	h.URL = "http://" + h.Server.Listener.Addr().String()
	auth, err := authserver.New(ctx, h.Store, authserver.Config{Issuer: h.URL, Secret: []byte(Secret), Clock: opts.Clock})
	must(tb, err)
	cfg := server.DefaultConfig()
	cfg.Issuer = h.URL
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	srvOpts := []server.Option{server.WithOAuth(auth), server.WithLogger(slog.New(slog.DiscardHandler))}
	if opts.Clock != nil {
		srvOpts = append(srvOpts, server.WithClock(opts.Clock))
	}
	srv, err := server.New(h.Store, cfg, srvOpts...)
	must(tb, err)
	h.Server.Config.Handler = h.countGrants(srv.Handler())
	h.Server.Start()
	tb.Cleanup(func() { h.Server.Close(); _ = srv.Close(ctx) })
	return h
}

func open(tb testing.TB, dsn string, opts ...sqlstore.Option) *sqlstore.Store {
	tb.Helper()
	s, err := sqlstore.Open(context.Background(), dsn, append([]sqlstore.Option{sqlstore.WithSealKey(sqltest.SealKey)}, opts...)...)
	must(tb, err)
	tb.Cleanup(func() { s.Close() })
	return s
}

// countGrants counts token endpoint requests by grant type, so tests can
// assert how many refreshes a client made.
func (h *Helpdesk) countGrants(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			h.counter(form.Get("grant_type")).Add(1)
		}
		next.ServeHTTP(w, r)
	})
}

func (h *Helpdesk) counter(grantType string) *atomic.Int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.grants[grantType]
	if c == nil {
		c = new(atomic.Int64)
		h.grants[grantType] = c
	}
	return c
}

// TokenRequests returns how many token requests of grantType
// ("refresh_token", "authorization_code") the helpdesk has received.
func (h *Helpdesk) TokenRequests(grantType string) int64 { return h.counter(grantType).Load() }

// AddUser adds a member of the account with Password.
func (h *Helpdesk) AddUser(tb testing.TB, email, name string, role valet.Role) *valet.User {
	tb.Helper()
	ctx := context.Background()
	// Cheap parameters: tests sign in often and argon2id is slow on purpose.
	hash, err := passwd.Params{MemoryKiB: 512, Time: 1, Threads: 1}.Hash(Password)
	must(tb, err)
	u := &valet.User{Email: email, Name: name, PasswordHash: hash}
	must(tb, h.Store.CreateUser(ctx, u))
	must(tb, h.Store.AddMember(ctx, h.Account.ID, u.ID, role))
	return u
}

// RegisterApp registers app (defaults: a confidential app named "Hub"
// allowed every scope) and returns its client secret.
func (h *Helpdesk) RegisterApp(tb testing.TB, app *valet.App) string {
	tb.Helper()
	if app.Name == "" {
		app.Name = "Hub"
	}
	if len(app.Scopes) == 0 {
		for _, s := range valet.Scopes {
			app.Scopes = append(app.Scopes, s.Scope)
		}
	}
	if len(app.RedirectURIs) == 0 {
		app.RedirectURIs = []string{"http://127.0.0.1:1/callback"}
	}
	secret, err := h.Store.RegisterApp(context.Background(), app)
	must(tb, err)
	return secret
}

// installVerifier is the PKCE verifier of the codes Install redeems.
const installVerifier = "install-verifier-0123456789-abcdefghijklmnopqrstuvwxyz"

// Install grants app the scopes on the account as the owner, the way
// consent would, and redeems a code for tokens (with offline, a refresh
// token), without a browser.
func (h *Helpdesk) Install(tb testing.TB, app *valet.App, scopes ...valet.Scope) *valet.IssuedTokens {
	tb.Helper()
	ctx := context.Background()
	g, err := h.Store.Consent(ctx, h.Account.ID, h.Owner.ID, app.ID, scopes)
	must(tb, err)
	code, err := h.Store.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: app.RedirectURIs[0],
		Scopes: scopes, AuthTime: time.Now(), CodeChallenge: valet.PKCEChallenge(installVerifier), CodeChallengeMethod: "S256"})
	must(tb, err)
	issued, err := h.Store.ExchangeAuthCode(ctx, code, valet.CodeRedemption{AppID: app.ID, PublicClient: app.Public,
		RedirectURI: app.RedirectURIs[0], CodeVerifier: installVerifier}, valet.DefaultAccessTTL)
	must(tb, err)
	return issued
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
