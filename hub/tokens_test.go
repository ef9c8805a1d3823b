package hub

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/helpdesktest"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

var ctx = context.Background()

const testVaultKey = "a hub test vault key of 32+ bytes!!"

// tokenEnv is a helpdesk with the hub's app installed, and a hub database
// that any number of hub "processes" (store handles) can open.
type tokenEnv struct {
	t        *testing.T
	h        *helpdesktest.Helpdesk
	app      *valet.App
	secret   string
	postgres bool
	hubDSN   string
	vault    *Vault
}

func newTokenEnv(t *testing.T, postgres bool, leeway int) *tokenEnv {
	t.Helper()
	e := &tokenEnv{t: t, postgres: postgres}
	e.h = helpdesktest.Start(t, helpdesktest.Options{Postgres: postgres})
	e.app = &valet.App{Name: "Hub", RefreshLeeway: leeway}
	e.secret = e.h.RegisterApp(t, e.app)
	if postgres {
		e.hubDSN = sqltest.PostgresDSN(t)
	} else {
		e.hubDSN = filepath.Join(t.TempDir(), "hub.db")
	}
	var err error
	if e.vault, err = NewVault(testVaultKey); err != nil {
		t.Fatal(err)
	}
	return e
}

// openHub opens one more handle on the hub database, as another hub
// process would.
func (e *tokenEnv) openHub() *sqlstore.HubStore {
	e.t.Helper()
	s, err := sqlstore.OpenHub(ctx, e.hubDSN)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *tokenEnv) providers() *Providers {
	return &Providers{Clients: map[string]Client{ProviderValet: {ID: e.app.ClientID, Secret: e.secret}}}
}

func (e *tokenEnv) tokens(store valet.HubStore, cfg TokensConfig) *Tokens {
	return NewTokens(store, e.vault, e.providers(), nil, nil, cfg)
}

// connect installs the hub's app and stores the connection with its access
// token already expired, so that the first caller must refresh.
func (e *tokenEnv) connect(store valet.HubStore) *valet.Connection {
	e.t.Helper()
	issued := e.h.Install(e.t, e.app, "offline", "account:read", "tickets:read")
	c := &valet.Connection{Provider: ProviderValet, BaseURL: e.h.URL, Account: issued.AccountName,
		Scopes: []string{"offline", "account:read", "tickets:read"}, AccessExpires: time.Now().Add(-time.Minute),
		NextRefresh: time.Now().Add(-time.Minute)}
	if err := store.SaveConnection(ctx, c, e.vault.Seal(Secrets{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken})); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// apiStatus calls GET /api/account with token.
func (e *tokenEnv) apiStatus(token string) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.h.URL+"/api/account", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func onBoth(t *testing.T, fn func(t *testing.T, postgres bool)) {
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); fn(t, false) })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); fn(t, true) })
}

// Two hub processes sharing one store, 100 goroutines each, one expired
// access token: the helpdesk sees exactly one refresh grant and every
// caller gets a working token.
func TestRefreshRace(t *testing.T) {
	onBoth(t, func(t *testing.T, postgres bool) {
		e := newTokenEnv(t, postgres, 0)
		a, b := e.openHub(), e.openHub()
		conn := e.connect(a)
		hubs := []*Tokens{e.tokens(a, TokensConfig{}), e.tokens(b, TokensConfig{})}
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			got    = map[string]int{}
			errs   []error
			start  = make(chan struct{})
			before = e.h.TokenRequests("refresh_token")
		)
		for _, hub := range hubs {
			for range 100 {
				wg.Go(func() {
					<-start
					token, err := hub.Token(ctx, conn.ID)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
						return
					}
					got[token]++
				})
			}
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("%d callers failed, first: %v", len(errs), errs[0])
		}
		if n := e.h.TokenRequests("refresh_token") - before; n != 1 {
			t.Fatalf("the helpdesk saw %d refresh grants, want exactly 1", n)
		}
		if len(got) != 1 {
			t.Fatalf("callers got %d different tokens, want the one refreshed token", len(got))
		}
		for token := range got {
			if status := e.apiStatus(token); status != http.StatusOK {
				t.Fatalf("the refreshed token gets %d from the API", status)
			}
		}
		stored, _, err := a.FindConnection(ctx, conn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Status != valet.ConnectionActive || stored.LastRefresh == nil || !stored.AccessExpires.After(time.Now().Add(23*time.Hour)) {
			t.Fatalf("connection after the refresh: %+v", stored)
		}
	})
}

// The hub dies after the helpdesk answered a refresh and before it stored
// the answer. With the app's reuse leeway the restarted hub recovers with
// the refresh token it still has; without it, the connection is shown
// revoked, never silently broken.
func TestRefreshCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leeway int
		works  bool
	}{
		{"leeway 30s", 30, true},
		{"leeway 0", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTokenEnv(t, false, tc.leeway)
			crashed := e.openHub()
			conn := e.connect(crashed)
			cfg := TokensConfig{LeaseTTL: 300 * time.Millisecond}
			dying := e.tokens(crashed, cfg)
			errCrash := errors.New("killed")
			dying.afterTokenAnswer = func(int64) error { return errCrash }
			if _, err := dying.Token(ctx, conn.ID); !errors.Is(err, errCrash) {
				t.Fatalf("the dying hub's refresh: %v", err)
			}

			// The restart: a new process, a new lease holder. It waits out the
			// dead process's lease, then refreshes with the stored (old)
			// refresh token.
			restarted := e.openHub()
			token, err := e.tokens(restarted, cfg).Token(ctx, conn.ID)
			stored, _, ferr := restarted.FindConnection(ctx, conn.ID)
			if ferr != nil {
				t.Fatal(ferr)
			}
			if tc.works {
				if err != nil {
					t.Fatalf("after restart: %v", err)
				}
				if status := e.apiStatus(token); status != http.StatusOK {
					t.Fatalf("the recovered token gets %d", status)
				}
				if stored.Status != valet.ConnectionActive {
					t.Fatalf("connection %+v", stored)
				}
				return
			}
			if !errors.Is(err, ErrRevoked) {
				t.Fatalf("after restart without leeway: %v, want ErrRevoked", err)
			}
			if stored.Status != valet.ConnectionRevoked || stored.LastError == "" || stored.RevokedDatetime == nil {
				t.Fatalf("connection %+v, want revoked with the reason", stored)
			}
		})
	}
}

// Revoking access in the helpdesk: the next refresh is refused and the
// connection is marked revoked at once; later calls do not retry.
func TestRevokedOnInvalidGrant(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t, false, 0)
	store := e.openHub()
	conn := e.connect(store)
	grants, err := e.h.Store.ListGrants(ctx, e.h.Account.ID)
	if err != nil || len(grants) != 1 {
		t.Fatalf("grants %v %v", grants, err)
	}
	if err := e.h.Store.RevokeGrant(ctx, e.h.Account.ID, grants[0].ID); err != nil {
		t.Fatal(err)
	}
	tokens := e.tokens(store, TokensConfig{})
	if _, err := tokens.Token(ctx, conn.ID); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Token after revocation: %v", err)
	}
	stored, _, _ := store.FindConnection(ctx, conn.ID)
	if stored.Status != valet.ConnectionRevoked {
		t.Fatalf("status %q", stored.Status)
	}
	before := e.h.TokenRequests("refresh_token")
	for range 5 {
		if _, err := tokens.Token(ctx, conn.ID); !errors.Is(err, ErrRevoked) {
			t.Fatalf("Token on a revoked connection: %v", err)
		}
	}
	if n := e.h.TokenRequests("refresh_token") - before; n != 0 {
		t.Fatalf("a revoked connection made %d refresh requests", n)
	}
}

// A 401 for a token fresh from a refresh means the grant is gone.
func TestRenewAfterFreshRefresh(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t, false, 0)
	store := e.openHub()
	conn := e.connect(store)
	tokens := e.tokens(store, TokensConfig{})
	token, err := tokens.Token(ctx, conn.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Access is revoked in the helpdesk right after the refresh: the API
	// refuses the fresh token, and renewing it must not hammer the token
	// endpoint.
	grants, err := e.h.Store.ListGrants(ctx, e.h.Account.ID)
	if err != nil || len(grants) != 1 {
		t.Fatalf("grants %v %v", grants, err)
	}
	if err := e.h.Store.RevokeGrant(ctx, e.h.Account.ID, grants[0].ID); err != nil {
		t.Fatal(err)
	}
	if status := e.apiStatus(token); status != http.StatusUnauthorized {
		t.Fatalf("a revoked grant's token gets %d", status)
	}
	before := e.h.TokenRequests("refresh_token")
	if _, err := tokens.Renew(ctx, conn.ID, token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Renew of a fresh token: %v, want ErrRevoked", err)
	}
	if n := e.h.TokenRequests("refresh_token") - before; n != 0 {
		t.Fatalf("renewing a fresh token made %d refresh requests", n)
	}
	stored, _, _ := store.FindConnection(ctx, conn.ID)
	if stored.Status != valet.ConnectionRevoked || stored.LastError == "" {
		t.Fatalf("connection %+v", stored)
	}
	// A stale token that was already replaced renews to the current one.
	e2 := newTokenEnv(t, false, 0)
	s2 := e2.openHub()
	c2 := e2.connect(s2)
	t2 := e2.tokens(s2, TokensConfig{})
	current, err := t2.Token(ctx, c2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := t2.Renew(ctx, c2.ID, "vat_an-older-token"); err != nil || got != current {
		t.Fatalf("Renew of a replaced token: %q %v, want the current one", got, err)
	}
}

// 5xx and network errors degrade the connection with backoff; they do not
// revoke it.
// statusTransport answers every request with one status, as a helpdesk
// failing behind its load balancer does.
type statusTransport int

func (st statusTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: int(st), Status: http.StatusText(int(st)), Header: http.Header{},
		Body: http.NoBody, Request: r}, nil
}

// TestRefreshDegraded: a helpdesk that cannot be reached, or answers 5xx,
// makes the connection degraded with a later retry, never revoked.
func TestRefreshDegraded(t *testing.T) {
	for _, tc := range []struct {
		name string
		down func(e *tokenEnv, p *Providers)
	}{
		{"network", func(e *tokenEnv, _ *Providers) { e.h.Server.Close() }},
		{"503", func(_ *tokenEnv, p *Providers) {
			p.HTTP = &http.Client{Transport: statusTransport(http.StatusServiceUnavailable)}
		}},
		{"500", func(_ *tokenEnv, p *Providers) {
			p.HTTP = &http.Client{Transport: statusTransport(http.StatusInternalServerError)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTokenEnv(t, false, 0)
			store := e.openHub()
			conn := e.connect(store)
			down := &Providers{Clients: e.providers().Clients}
			tc.down(e, down)
			tokens := NewTokens(store, e.vault, down, nil, nil, TokensConfig{})
			if _, err := tokens.Token(ctx, conn.ID); err == nil || errors.Is(err, ErrRevoked) {
				t.Fatalf("Token with the helpdesk down: %v", err)
			}
			stored, _, _ := store.FindConnection(ctx, conn.ID)
			if stored.Status != valet.ConnectionDegraded || stored.Failures != 1 || !stored.NextRefresh.After(time.Now()) || stored.LastError == "" {
				t.Fatalf("connection %+v, want degraded with a later retry", stored)
			}
		})
	}
}

// TestRefreshDueEarly: the refresher renews a connection before its token
// expires, and schedules the next renewal early with jitter, so tokens
// issued together do not fall due together.
func TestRefreshDueEarly(t *testing.T) {
	e := newTokenEnv(t, false, 0)
	store := e.openHub()
	conn := e.connect(store)
	// Still valid for ten minutes, but due.
	conn.AccessExpires, conn.NextRefresh = time.Now().Add(10*time.Minute), time.Now().Add(-time.Second)
	stored, secrets, err := store.FindConnection(ctx, conn.ID)
	must(t, err)
	stored.AccessExpires, stored.NextRefresh = conn.AccessExpires, conn.NextRefresh
	must(t, store.SaveConnection(ctx, stored, *secrets))
	tokens := e.tokens(store, TokensConfig{})
	before := e.h.TokenRequests("refresh_token")
	n, err := tokens.RefreshDue(ctx, 10)
	must(t, err)
	if n != 1 || e.h.TokenRequests("refresh_token")-before != 1 {
		t.Fatalf("RefreshDue renewed %d, the helpdesk saw %d refresh grants", n, e.h.TokenRequests("refresh_token")-before)
	}
	renewed, _, err := store.FindConnection(ctx, conn.ID)
	must(t, err)
	life := renewed.AccessExpires.Sub(time.Now())
	if life < 23*time.Hour || !renewed.NextRefresh.Before(renewed.AccessExpires) || renewed.LastRefresh == nil {
		t.Fatalf("after renewal: expires in %v, next refresh %v, last refresh %v", life, renewed.NextRefresh, renewed.LastRefresh)
	}
	if n, _ := tokens.RefreshDue(ctx, 10); n != 0 {
		t.Fatalf("renewed again at once: %d", n)
	}
	// Jitter: the next renewal of tokens issued at one instant spreads over
	// a tenth of their life, after the early margin.
	issued := time.Now()
	expires := issued.Add(24 * time.Hour)
	seen := map[time.Time]bool{}
	for range 50 {
		next := tokens.nextRefresh(issued, expires)
		if next.After(expires.Add(-tokens.cfg.Early)) || next.Before(expires.Add(-tokens.cfg.Early-24*time.Hour/10)) {
			t.Fatalf("next refresh %v outside its window before %v", next, expires)
		}
		seen[next] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct refresh times of 50: no jitter", len(seen))
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 5: 160 * time.Second, 20: time.Hour} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := Backoff(n)
			if d < want/2 || d > want {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Fatalf("Backoff(%d) has no jitter", n)
		}
	}
}

// slowRefresh holds the first refresh grant's request back, as a slow
// network would, so that other callers arrive while it is in flight.
type slowRefresh struct {
	once  sync.Once
	delay time.Duration
}

func (s *slowRefresh) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/oauth/token" {
		s.once.Do(func() { time.Sleep(s.delay) })
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestRefreshRaceMixedNeeds: in one hub process, a page's Token, an API
// client's Renew after a 401 and the background refresher all want the
// same expired connection at once. They take turns: the helpdesk sees one
// refresh grant (two with one refresh token would trip its reuse
// detection and revoke the grant), and the connection stays active.
func TestRefreshRaceMixedNeeds(t *testing.T) {
	e := newTokenEnv(t, false, 0)
	store := e.openHub()
	conn := e.connect(store)
	_, sealed, err := store.FindConnection(ctx, conn.ID)
	if err != nil {
		t.Fatal(err)
	}
	old, err := e.vault.Open(*sealed)
	if err != nil {
		t.Fatal(err)
	}
	providers := e.providers()
	providers.HTTP = &http.Client{Transport: &slowRefresh{delay: 300 * time.Millisecond}}
	tokens := NewTokens(store, e.vault, providers, nil, nil, TokensConfig{FreshWindow: time.Nanosecond})
	before := e.h.TokenRequests("refresh_token")
	var wg sync.WaitGroup
	got := make([]string, 3)
	errs := make([]error, 3)
	wg.Go(func() { got[0], errs[0] = tokens.Token(ctx, conn.ID) })
	time.Sleep(50 * time.Millisecond) // the first refresh is on its way
	wg.Go(func() { got[1], errs[1] = tokens.Renew(ctx, conn.ID, old.AccessToken) })
	wg.Go(func() { _, errs[2] = tokens.RefreshDue(ctx, 10) })
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if n := e.h.TokenRequests("refresh_token") - before; n != 1 {
		t.Fatalf("the helpdesk saw %d refresh grants, want exactly 1", n)
	}
	if got[0] != got[1] || e.apiStatus(got[0]) != http.StatusOK {
		t.Fatalf("Token and Renew got different or unusable tokens")
	}
	stored, _, err := store.FindConnection(ctx, conn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != valet.ConnectionActive {
		t.Fatalf("connection after the race: %s (%s)", stored.Status, stored.LastError)
	}
}

// TestTokensUnderAnotherKey: a hub started with a key that does not open
// the stored tokens says so, on the connection and in its error.
func TestTokensUnderAnotherKey(t *testing.T) {
	e := newTokenEnv(t, false, 0)
	store := e.openHub()
	conn := e.connect(store)
	other, err := NewVault("another hub vault key, also 32+ bytes")
	if err != nil {
		t.Fatal(err)
	}
	tokens := NewTokens(store, other, e.providers(), nil, nil, TokensConfig{})
	if _, err := tokens.Token(ctx, conn.ID); !errors.Is(err, ErrUnsealable) {
		t.Fatalf("Token under another key: %v", err)
	}
	if n, err := tokens.RefreshDue(ctx, 10); err != nil || n != 0 {
		t.Fatalf("RefreshDue under another key: %d %v", n, err)
	}
	stored, _, err := store.FindConnection(ctx, conn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != valet.ConnectionDegraded || !strings.Contains(stored.LastError, "cannot decrypt") {
		t.Fatalf("connection under another key: %s %q", stored.Status, stored.LastError)
	}
}
