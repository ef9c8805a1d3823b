package hub

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/helpdesktest"
	"github.com/valethq/valet/server"
	"github.com/valethq/valet/sqlstore"
)

// The hub's benchmarks for BENCHMARKS.md (issue 4). CI runs no -bench, so
// they cost nothing there. Run them on a quiet machine:
//
//	go test ./hub/ -run '^$' -bench ProxiedCall -benchtime 2000x
//	go test ./hub/ -run '^$' -bench RefreshDue -benchtime 1x -timeout 30m
//
// -hub.connections sets how many connections fall due at once (10,000).

var benchConnections = flag.Int("hub.connections", 10000, "connections falling due at once in BenchmarkRefreshDue")

// BenchmarkProxiedCall measures the hub's added latency per API call:
// GET /api/account on one helpdesk, interleaved call by call, (1) direct
// with net/http and the bearer token, (2) through Tokens.APIClient built for
// the call (as the web app does per request: provider lookup, token from
// the cache, the injecting transport), (3) through one APIClient reused.
// The helpdesk's API rate limit is lifted: this measures latency, not the
// limiter. ns/op is the mean of (2); the p50 metrics are medians per call,
// added-p50-ns the median of the paired differences (2)-(1), which cancels
// drift on a busy machine.
func BenchmarkProxiedCall(b *testing.B) {
	h := helpdesktest.Start(b, helpdesktest.Options{Config: func(c *server.Config) { c.OAuthLimit = server.RateLimit{} }})
	app := &valet.App{Name: "Hub"}
	secret := h.RegisterApp(b, app)
	issued := h.Install(b, app, valet.ScopeOffline, valet.ScopeAccountRead)
	vault, err := NewVault(testVaultKey)
	must(b, err)
	store, err := sqlstore.OpenHub(ctx, filepath.Join(b.TempDir(), "hub.db"))
	must(b, err)
	b.Cleanup(func() { store.Close() })
	conn := &valet.Connection{Provider: ProviderValet, BaseURL: h.URL, Account: issued.AccountName,
		Scopes: []string{"offline", "account:read"}, AccessExpires: issued.AccessExpires, NextRefresh: issued.AccessExpires.Add(-time.Hour)}
	must(b, store.SaveConnection(ctx, conn, vault.Seal(Secrets{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken})))
	tokens := NewTokens(store, vault, &Providers{Clients: map[string]Client{ProviderValet: {ID: app.ClientID, Secret: secret}}}, nil, nil, TokensConfig{})

	direct := func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/api/account", nil)
		req.Header.Set("Authorization", "Bearer "+issued.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var a valet.Account
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || a.Name != "acme" {
			b.Fatalf("direct: %d %v", resp.StatusCode, err)
		}
	}
	viaHub := func() {
		c, err := tokens.APIClient(ctx, conn)
		if err != nil {
			b.Fatal(err)
		}
		if a, err := c.Account(ctx); err != nil || a.Name != "acme" {
			b.Fatalf("via the hub: %v", err)
		}
	}
	reused, err := tokens.APIClient(ctx, conn)
	must(b, err)
	viaReused := func() {
		if a, err := reused.Account(ctx); err != nil || a.Name != "acme" {
			b.Fatalf("via a reused client: %v", err)
		}
	}
	for range 20 { // warm connections, discovery, the token cache
		direct()
		viaHub()
		viaReused()
	}
	timed := func(f func()) time.Duration {
		t0 := time.Now()
		f()
		return time.Since(t0)
	}
	d, hub, re, added := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	var hubTotal time.Duration
	b.ResetTimer()
	for range b.N {
		dd, hh, rr := timed(direct), timed(viaHub), timed(viaReused)
		d, hub, re, added = append(d, dd), append(hub, hh), append(re, rr), append(added, hh-dd)
		hubTotal += hh
	}
	b.StopTimer()
	b.ReportMetric(float64(hubTotal.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(median(d)), "direct-p50-ns")
	b.ReportMetric(float64(median(hub)), "hub-p50-ns")
	b.ReportMetric(float64(median(re)), "hub-reused-p50-ns")
	b.ReportMetric(float64(median(added)), "added-p50-ns")
}

func median(s []time.Duration) time.Duration {
	if len(s) == 0 {
		return 0
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

// observer counts what the hub sends the helpdesk: token requests in
// flight (their peak) and rate-limited answers (429).
type observer struct {
	base              http.RoundTripper
	inFlight, peak    atomic.Int64
	requests, limited atomic.Int64
}

func (o *observer) RoundTrip(r *http.Request) (*http.Response, error) {
	n := o.inFlight.Add(1)
	defer o.inFlight.Add(-1)
	for {
		p := o.peak.Load()
		if n <= p || o.peak.CompareAndSwap(p, n) {
			break
		}
	}
	o.requests.Add(1)
	resp, err := o.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		o.limited.Add(1)
	}
	return resp, err
}

// BenchmarkRefreshDue: -hub.connections (10,000) connections fall due at
// once and RunRefresher's loop (RefreshDue by 500) renews them all against
// a real helpdesk with its default limits. Each connection holds a real
// refresh token from its own code exchange (helpdesktest.Install: one
// grant, one token family per connection); the hub keeps one connection
// per account, so they are stored under distinct account labels of the one
// helpdesk account. Setup is not timed; run with -benchtime 1x. Reported:
// the wall time to renew them all (ns/op, s-total), refreshes per second,
// the peak of token requests in flight and the 429 answers seen (the
// helpdesk limits API calls per account; refreshing makes none, and the
// refresher bounds its parallel token requests by TokensConfig.Concurrency).
func BenchmarkRefreshDue(b *testing.B) {
	n := *benchConnections
	for range b.N {
		b.StopTimer()
		h := helpdesktest.Start(b, helpdesktest.Options{})
		app := &valet.App{Name: "Hub"}
		secret := h.RegisterApp(b, app)
		vault, err := NewVault(testVaultKey)
		must(b, err)
		store, err := sqlstore.OpenHub(ctx, filepath.Join(b.TempDir(), "hub.db"))
		must(b, err)
		b.Cleanup(func() { store.Close() })
		setup := time.Now()
		past := time.Now().Add(-time.Minute)
		for i := range n {
			issued := h.Install(b, app, valet.ScopeOffline, valet.ScopeAccountRead)
			c := &valet.Connection{Provider: ProviderValet, BaseURL: h.URL, Account: fmt.Sprintf("acme-%05d", i),
				Scopes: []string{"offline", "account:read"}, AccessExpires: time.Now().Add(4 * time.Minute), NextRefresh: past}
			must(b, store.SaveConnection(ctx, c, vault.Seal(Secrets{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken})))
		}
		b.Logf("setup of %d connections (installs and saves): %v", n, time.Since(setup).Round(time.Millisecond))
		obs := &observer{base: http.DefaultTransport}
		providers := &Providers{HTTP: &http.Client{Transport: obs, Timeout: 30 * time.Second},
			Clients: map[string]Client{ProviderValet: {ID: app.ClientID, Secret: secret}}}
		tokens := NewTokens(store, vault, providers, nil, nil, TokensConfig{})
		// Warm up with one refresh of a connection that is not due, alone:
		// the stores prepare each write statement on first use, and that
		// first use is not what is measured.
		issued := h.Install(b, app, valet.ScopeOffline, valet.ScopeAccountRead)
		warm := &valet.Connection{Provider: ProviderValet, BaseURL: h.URL, Account: "warm-up",
			Scopes: []string{"offline", "account:read"}, AccessExpires: past, NextRefresh: time.Now().Add(time.Hour)}
		must(b, store.SaveConnection(ctx, warm, vault.Seal(Secrets{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken})))
		_, err = tokens.Token(ctx, warm.ID)
		must(b, err)
		obs.peak.Store(0)
		before := h.TokenRequests("refresh_token")

		b.StartTimer()
		start := time.Now()
		renewed := 0
		for {
			r, err := tokens.RefreshDue(ctx, 500)
			must(b, err)
			renewed += r
			if r == 0 {
				break
			}
		}
		took := time.Since(start)
		b.StopTimer()

		due, err := store.DueConnections(ctx, time.Now(), 10)
		must(b, err)
		grants := h.TokenRequests("refresh_token") - before
		if renewed != n || len(due) != 0 || grants != int64(n) {
			b.Fatalf("renewed %d of %d, %d still due, %d refresh grants", renewed, n, len(due), grants)
		}
		b.ReportMetric(took.Seconds(), "s-total")
		b.ReportMetric(float64(n)/took.Seconds(), "refreshes/s")
		b.ReportMetric(float64(obs.peak.Load()), "peak-in-flight")
		b.ReportMetric(float64(obs.limited.Load()), "429s")
		b.ReportMetric(float64(took.Nanoseconds()), "ns/op")
	}
}
