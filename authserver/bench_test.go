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

// BenchmarkRefreshGrant is one refresh grant (client_secret_basic, rotation)
// over a real HTTP connection to the whole server, each parallel client
// rotating its own chain, on SQLite or, with VALET_BENCH_DB=postgres, on
// the server VALET_TEST_POSTGRES names. bench/oauth measures the same
// against a ceiling; this one is for profiles:
//
//	go test ./authserver/ -run '^$' -bench RefreshGrant -cpuprofile /tmp/cpu.out
func BenchmarkRefreshGrant(b *testing.B) {
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
	app := &valet.App{Name: "Bench", DeveloperName: "Bench", RedirectURIs: []string{redirectURI},
		Scopes: valet.ScopeSet{"offline", "tickets:read"}}
	secret, err := store.RegisterApp(ctx, app)
	must(b, err)
	grant, err := store.Consent(ctx, account.ID, user.ID, app.ID, app.Scopes)
	must(b, err)

	// One chain per parallel client, started from a code each.
	newChain := func() string {
		code, err := store.CreateAuthCode(ctx, &valet.AuthCode{GrantID: grant.ID, RedirectURI: redirectURI, Scopes: app.Scopes})
		must(b, err)
		issued, err := store.ExchangeAuthCode(ctx, code, valet.CodeRedemption{AppID: app.ID, RedirectURI: redirectURI}, valet.DefaultAccessTTL)
		must(b, err)
		return issued.RefreshToken
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var failures atomic.Int64
	b.ReportAllocs()
	if p, err := strconv.Atoi(os.Getenv("VALET_BENCH_PARALLELISM")); err == nil && p > 0 {
		b.SetParallelism(p)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		token := newChain()
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, issuer+"/oauth/token", strings.NewReader(url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(app.ClientID, secret)
			resp, err := client.Do(req)
			if err != nil {
				failures.Add(1)
				continue
			}
			var out struct {
				RefreshToken string `json:"refresh_token"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || out.RefreshToken == "" {
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
