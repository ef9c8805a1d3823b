package authserver_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valethq/valet"
	"github.com/valethq/valet/authserver"
	"github.com/valethq/valet/server"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

// benchFixture is a whole server on a real HTTP listener, its store (SQLite,
// or PostgreSQL with VALET_BENCH_DB=postgres) and a confidential app with
// the scopes and ID token alg given, consented to by one user.
type benchFixture struct {
	store  *sqlstore.Store
	issuer string
	app    *valet.App
	secret string
	grant  *valet.Grant
	client *http.Client
}

func newBenchFixture(b *testing.B, scopes valet.ScopeSet, alg string) *benchFixture {
	var store *sqlstore.Store
	if os.Getenv("VALET_BENCH_DB") == "postgres" {
		store = sqltest.Postgres(b)
	} else {
		store = sqltest.SQLite(b)
	}
	account := &valet.Account{Name: "acme", DisplayName: "Acme"}
	must(b, store.CreateAccount(ctx, account))
	user := &valet.User{Email: "owner@acme.test", Name: "Olive Owner"}
	must(b, store.CreateUser(ctx, user))
	must(b, store.AddMember(ctx, account.ID, user.ID, valet.RoleOwner))
	hs := httptest.NewUnstartedServer(nil)
	issuer := "http://" + hs.Listener.Addr().String()
	auth, err := authserver.New(ctx, store, authserver.Config{Issuer: issuer, Secret: []byte(testSecret)})
	must(b, err)
	cfg := server.DefaultConfig()
	cfg.Issuer = issuer
	srv, err := server.New(store, cfg, server.WithOAuth(auth), server.WithLogger(slog.New(slog.DiscardHandler)))
	must(b, err)
	hs.Config.Handler = srv.Handler()
	hs.Start()
	b.Cleanup(func() { hs.Close(); _ = srv.Close(ctx) })
	app := &valet.App{Name: "Bench", DeveloperName: "Bench", RedirectURIs: []string{redirectURI}, Scopes: scopes,
		IDTokenAlg: alg}
	secret, err := store.RegisterApp(ctx, app)
	must(b, err)
	grant, err := store.Consent(ctx, account.ID, user.ID, app.ID, app.Scopes)
	must(b, err)
	return &benchFixture{store: store, issuer: issuer, app: app, secret: secret, grant: grant,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// tokenRequest posts a token request with client_secret_basic and decodes
// the answer into out; it reports whether the answer was a 200.
func (f *benchFixture) tokenRequest(form url.Values, out any) bool {
	req, _ := http.NewRequest(http.MethodPost, f.issuer+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(f.app.ClientID, f.secret)
	resp, err := f.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(out)
	_, _ = io.Copy(io.Discard, resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK
}

func parallelism(b *testing.B) {
	if p, err := strconv.Atoi(os.Getenv("VALET_BENCH_PARALLELISM")); err == nil && p > 0 {
		b.SetParallelism(p)
	}
}

// BenchmarkRefreshGrant is one refresh grant (client_secret_basic, rotation)
// over a real HTTP connection to the whole server, each parallel client
// rotating its own chain, on SQLite or, with VALET_BENCH_DB=postgres, on
// the server VALET_TEST_POSTGRES names. bench/oauth measures the same
// against a ceiling; this one is for profiles:
//
//	go test ./authserver/ -run '^$' -bench RefreshGrant -cpuprofile /tmp/cpu.out
func BenchmarkRefreshGrant(b *testing.B) {
	f := newBenchFixture(b, valet.ScopeSet{"offline", "tickets:read"}, "")
	store, app, grant := f.store, f.app, f.grant
	// One chain per parallel client, started from a code each.
	newChain := func() string {
		code, err := store.CreateAuthCode(ctx, &valet.AuthCode{GrantID: grant.ID, RedirectURI: redirectURI, Scopes: app.Scopes})
		must(b, err)
		issued, err := store.ExchangeAuthCode(ctx, code, valet.CodeRedemption{AppID: app.ID, RedirectURI: redirectURI}, valet.DefaultAccessTTL)
		must(b, err)
		return issued.RefreshToken
	}
	var failures atomic.Int64
	b.ReportAllocs()
	parallelism(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		token := newChain()
		for pb.Next() {
			var out struct {
				RefreshToken string `json:"refresh_token"`
			}
			if !f.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}, &out) ||
				out.RefreshToken == "" {
				failures.Add(1)
				continue
			}
			token = out.RefreshToken
		}
	})
	if n := failures.Load(); n > 0 {
		b.Fatalf("%d refresh grants failed", n)
	}
}

// BenchmarkCodeExchange is one code exchange (client_secret_basic, PKCE,
// an ES256 ID token, access and refresh tokens) over a real HTTP
// connection to the whole server; the codes are stored before the timer
// starts. On SQLite, or on PostgreSQL with VALET_BENCH_DB=postgres:
//
//	go test ./authserver/ -run '^$' -bench CodeExchange -cpuprofile /tmp/cpu.out
func BenchmarkCodeExchange(b *testing.B) {
	f := newBenchFixture(b, valet.ScopeSet{"openid", "email", "offline", "tickets:read"}, valet.AlgES256)
	const verifier = "a-verifier-of-enough-length-for-pkce-0123456789"
	codes := make(chan string, b.N)
	for range b.N {
		code, err := f.store.CreateAuthCode(ctx, &valet.AuthCode{GrantID: f.grant.ID, RedirectURI: redirectURI,
			Scopes: f.app.Scopes, Nonce: "n", CodeChallenge: valet.PKCEChallenge(verifier), CodeChallengeMethod: "S256"})
		must(b, err)
		codes <- code
	}
	close(codes)
	var failures atomic.Int64
	b.ReportAllocs()
	parallelism(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var out struct {
				IDToken string `json:"id_token"`
			}
			if !f.tokenRequest(url.Values{"grant_type": {"authorization_code"}, "code": {<-codes},
				"redirect_uri": {redirectURI}, "code_verifier": {verifier}}, &out) || out.IDToken == "" {
				failures.Add(1)
			}
		}
	})
	if n := failures.Load(); n > 0 {
		b.Fatalf("%d code exchanges failed", n)
	}
}
