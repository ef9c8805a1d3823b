package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/valethq/valet"
	"github.com/valethq/valet/helpdesktest"
	"github.com/valethq/valet/sqlstore"
)

// TestServeOAuth starts serve with VALET_SECRET twice on one database: the
// first start creates the signing keys, the second opens them again.
func TestServeOAuth(t *testing.T) {
	db := tempDB(t)
	var kids []string
	for range 2 {
		m := NewMain()
		m.Command = "serve"
		m.Config.Addr = "127.0.0.1:0"
		m.Config.DB = db
		m.Config.Secret = "a long enough test server secret"
		m.Config.ShutdownTimeout = 5 * time.Second
		m.Stdout, m.Stderr = io.Discard, io.Discard
		if err := m.Config.Validate(); err != nil {
			t.Fatal(err)
		}
		listening := make(chan string, 1)
		m.OnListen = func(url string) { listening <- url }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		var url string
		select {
		case url = <-listening:
		case err := <-done:
			cancel()
			t.Fatalf("serve exited: %v", err)
		}
		var d struct {
			Issuer string `json:"issuer"`
			JWKS   string `json:"jwks_uri"`
		}
		getJSON(t, url+"/.well-known/openid-configuration", &d)
		if d.Issuer != url {
			t.Fatalf("issuer %q, want %q", d.Issuer, url)
		}
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		getJSON(t, d.JWKS, &set)
		if len(set.Keys) != 3 {
			t.Fatalf("JWKS has %d keys, want RS256, ES256 and EdDSA", len(set.Keys))
		}
		kids = append(kids, set.Keys[0].Kid)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if kids[0] != kids[1] {
		t.Fatalf("signing keys changed across restarts: %v", kids)
	}

	m := NewMain()
	m.Config.Secret = "short"
	if err := m.Config.Validate(); err == nil {
		t.Fatal("a short VALET_SECRET was accepted")
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestAdminApps(t *testing.T) {
	db := tempDB(t)
	env := map[string]string{"VALET_DB": db}
	r := runCLI(t, env, "admin", "app", "create", "--name", "Hub", "--redirect-uri", "https://hub.example/cb",
		"--redirect-uri", "http://127.0.0.1:8081/cb", "--scopes", "openid email offline tickets:read", "--developer", "Hub Inc")
	var created struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		App          struct {
			RedirectURIs []string `json:"redirect_uris"`
		} `json:"app"`
	}
	r.decode(t, &created)
	if r.code != 0 || created.ClientID == "" || !strings.HasPrefix(created.ClientSecret, "vcs_") || len(created.App.RedirectURIs) != 2 {
		t.Fatalf("app create: %+v\n%s", created, r.stderr)
	}
	r = runCLI(t, env, "admin", "app", "create", "--name", "CLI", "--public", "--redirect-uri", "http://localhost/cb", "--scopes", "openid")
	var public struct {
		ClientSecret *string `json:"client_secret"`
	}
	r.decode(t, &public)
	if r.code != 0 || public.ClientSecret != nil {
		t.Fatalf("public app: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, env, "admin", "app", "create", "--name", "Bad", "--redirect-uri", "http://evil.example/cb", "--scopes", "openid")
	if r.code != 1 || !strings.Contains(r.stderr, "redirect_uris") {
		t.Fatalf("bad redirect: %d %s", r.code, r.stderr)
	}
	r = runCLI(t, env, "admin", "app", "create", "--name", "NoURI", "--scopes", "openid")
	if r.code != 2 {
		t.Fatalf("missing --redirect-uri: %d %s", r.code, r.stderr)
	}

	r = runCLI(t, env, "admin", "app", "list")
	var list struct {
		Data []struct {
			ClientID string `json:"client_id"`
		} `json:"data"`
	}
	r.decode(t, &list)
	if len(list.Data) != 2 {
		t.Fatalf("app list: %s", r.stdout)
	}

	r = runCLI(t, env, "admin", "app", "rotate-secret", "--client-id", created.ClientID)
	var rotated struct {
		ClientSecret string `json:"client_secret"`
	}
	r.decode(t, &rotated)
	if r.code != 0 || rotated.ClientSecret == created.ClientSecret || !strings.HasPrefix(rotated.ClientSecret, "vcs_") {
		t.Fatalf("rotate: %s %s", r.stdout, r.stderr)
	}

	// update changes only what it is given.
	r = runCLI(t, env, "admin", "app", "update", "--client-id", created.ClientID, "--name", "Hub 2",
		"--refresh-reuse-leeway", "30", "--id-token-alg", "ES256", "--description", "")
	var updated struct {
		ClientSecret *string `json:"client_secret"`
		App          struct {
			Name          string   `json:"name"`
			DeveloperName string   `json:"developer_name"`
			RedirectURIs  []string `json:"redirect_uris"`
			Leeway        int      `json:"refresh_reuse_leeway"`
			Alg           string   `json:"id_token_signed_response_alg"`
		} `json:"app"`
	}
	r.decode(t, &updated)
	if a := updated.App; r.code != 0 || a.Name != "Hub 2" || a.Leeway != 30 || a.Alg != "ES256" ||
		a.DeveloperName != "Hub Inc" || len(a.RedirectURIs) != 2 || updated.ClientSecret != nil {
		t.Fatalf("app update: %d %s %s", r.code, r.stdout, r.stderr)
	}
	for _, bad := range [][]string{{"--refresh-reuse-leeway", "90"}, {"--id-token-alg", "HS256"}, {"--redirect-uri", "http://evil.example/cb"}} {
		r = runCLI(t, env, append([]string{"admin", "app", "update", "--client-id", created.ClientID}, bad...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "invalid") {
			t.Fatalf("app update %v: %d %s", bad, r.code, r.stderr)
		}
	}
	if r = runCLI(t, env, "admin", "app", "update", "--client-id", created.ClientID, "--refresh-reuse-leeway", "x"); r.code != 2 {
		t.Fatalf("non-numeric leeway: %d %s", r.code, r.stderr)
	}
	if r = runCLI(t, env, "admin", "app", "update", "--client-id", "nope", "--name", "X"); r.code != 1 {
		t.Fatalf("update unknown app: %d %s", r.code, r.stderr)
	}

	r = runCLI(t, env, "admin", "account", "create", "--name", "acme", "--owner-email", "o@acme.test", "--owner-password", "a good long password")
	if r.code != 0 {
		t.Fatalf("account create: %s", r.stderr)
	}
	for _, args := range [][]string{{"grant", "list"}, {"audit", "list"}} {
		r = runCLI(t, env, append([]string{"admin"}, append(args, "--account", "acme")...)...)
		if r.code != 0 || !strings.Contains(r.stdout, `"data": []`) {
			t.Fatalf("%v: %d %s %s", args, r.code, r.stdout, r.stderr)
		}
	}
	r = runCLI(t, env, "admin", "grant", "revoke", "--account", "acme", "--id", "99")
	if r.code != 1 || !strings.Contains(r.stderr, "not_found") {
		t.Fatalf("revoke unknown grant: %d %s", r.code, r.stderr)
	}

	// An installation, listed and revoked from the CLI, with the audit
	// entry saying so; app-level entries (the secret rotation above) are
	// the audit list of no account.
	ctx := context.Background()
	store, err := sqlstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := store.FindUserByEmail(ctx, "o@acme.test")
	if err != nil {
		t.Fatal(err)
	}
	acme, err := store.FindAccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	hubApp, err := store.FindApp(ctx, created.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	grant, err := store.Consent(ctx, acme.ID, owner.ID, hubApp.ID, valet.ScopeSet{valet.ScopeTicketsRead})
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, env, "admin", "grant", "list", "--account", "acme")
	if r.code != 0 || !strings.Contains(r.stdout, `"scopes": [`) || !strings.Contains(r.stdout, fmt.Sprintf(`"id": %d`, grant.ID)) {
		t.Fatalf("grant list: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, env, "admin", "grant", "revoke", "--account", "acme", "--id", strconv.FormatInt(grant.ID, 10))
	if r.code != 0 {
		t.Fatalf("grant revoke: %d %s", r.code, r.stderr)
	}
	if r = runCLI(t, env, "admin", "grant", "list", "--account", "acme"); !strings.Contains(r.stdout, `"data": []`) {
		t.Fatalf("grant list after revoke: %s", r.stdout)
	}
	// A second revocation is refused, and not audited.
	r = runCLI(t, env, "admin", "grant", "revoke", "--account", "acme", "--id", strconv.FormatInt(grant.ID, 10))
	if r.code != 1 || !strings.Contains(r.stderr, "already revoked") {
		t.Fatalf("second grant revoke: %d %s", r.code, r.stderr)
	}
	r = runCLI(t, env, "admin", "audit", "list", "--account", "acme")
	if r.code != 0 || strings.Count(r.stdout, `"action": "grant.revoked"`) != 1 || !strings.Contains(r.stdout, `"action": "consent.given"`) ||
		!strings.Contains(r.stdout, fmt.Sprintf(`"app_id": %d`, hubApp.ID)) {
		t.Fatalf("audit list: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, env, "admin", "audit", "list")
	if r.code != 0 || !strings.Contains(r.stdout, `"action": "app.secret_rotated"`) || strings.Contains(r.stdout, "grant.revoked") {
		t.Fatalf("audit list of no account: %d %s %s", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, env, "admin", "app", "delete", "--client-id", created.ClientID)
	if r.code != 0 {
		t.Fatalf("delete: %s", r.stderr)
	}
	r = runCLI(t, env, "admin", "app", "delete", "--client-id", created.ClientID)
	if r.code != 1 {
		t.Fatalf("delete again: %d %s", r.code, r.stderr)
	}
}

func TestAdminKeysRotate(t *testing.T) {
	env := map[string]string{"VALET_DB": tempDB(t), "VALET_SECRET": "a long enough test server secret"}
	for range 2 {
		r := runCLI(t, env, "admin", "keys", "rotate")
		var out struct {
			Created []struct {
				Kid string `json:"kid"`
				Alg string `json:"alg"`
			} `json:"created"`
		}
		r.decode(t, &out)
		if r.code != 0 || len(out.Created) != 3 {
			t.Fatalf("keys rotate: %d %s %s", r.code, r.stdout, r.stderr)
		}
	}
	env["VALET_SECRET"] = "a different secret, not the one"
	if r := runCLI(t, env, "admin", "keys", "rotate"); r.code != 1 {
		t.Fatalf("rotate with the wrong secret: %d %s", r.code, r.stderr)
	}
	delete(env, "VALET_SECRET")
	if r := runCLI(t, env, "admin", "keys", "rotate"); r.code != 2 {
		t.Fatalf("rotate without a secret: %d %s", r.code, r.stderr)
	}
}

// TestServeTokenLifetimes: --access-token-ttl reaches the token answers of
// valet serve, and --refresh-idle-ttl the refresh tokens it stores.
func TestServeTokenLifetimes(t *testing.T) {
	ctx := context.Background()
	db := tempDB(t)
	store, err := sqlstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	// The app's callback: an httptest server standing in for the app.
	appSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer appSrv.Close()
	h := &helpdesktest.Helpdesk{Store: store}
	_, owner := h.AddAccount(t, "acme")
	app := &valet.App{Name: "TTL app", RedirectURIs: []string{appSrv.URL + "/cb"},
		Scopes: valet.ScopeSet{valet.ScopeOffline, valet.ScopeTicketsRead}}
	secret, err := store.RegisterApp(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	store.Close()

	m := NewMain()
	m.Getenv = func(k string) string {
		return map[string]string{"VALET_SECRET": "a long enough test server secret", "VALET_REFRESH_IDLE_TTL": "3h"}[k]
	}
	if err := m.ParseFlags(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--access-token-ttl", "2h"}); err != nil {
		t.Fatal(err)
	}
	m.Stdout, m.Stderr = io.Discard, io.Discard
	listening := make(chan string, 1)
	m.OnListen = func(url string) { listening <- url }
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var url string
	select {
	case url = <-listening:
	case err := <-done:
		t.Fatalf("serve exited: %v", err)
	}
	h.URL = url
	b := h.NewBrowser(t, owner.Email)
	conf := &oauth2.Config{ClientID: app.ClientID, ClientSecret: secret, RedirectURL: app.RedirectURIs[0],
		Scopes:   []string{"offline", "tickets:read"},
		Endpoint: oauth2.Endpoint{AuthURL: url + "/oauth/authorize", TokenURL: url + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
	resp, body := b.Get(conf.AuthCodeURL("st"))
	resp, _ = b.Walk(resp, body, "allow")
	code := resp.Request.URL.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %s", resp.Request.URL)
	}
	tok, err := conf.Exchange(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if ttl := tok.Extra("expires_in"); ttl != float64(7200) {
		t.Fatalf("expires_in = %v, want 7200 (--access-token-ttl 2h)", ttl)
	}
	var expires int64
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.QueryRowContext(ctx, `SELECT expires_at - created_at FROM refresh_tokens ORDER BY id DESC LIMIT 1`).
		Scan(&expires); err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(expires) * time.Microsecond; got != 3*time.Hour {
		t.Fatalf("refresh token lives %v, want 3h (VALET_REFRESH_IDLE_TTL)", got)
	}
}

// TestDemoWalkthrough follows the OAuth walk-through valet demo prints, as
// a reader would: open the authorize URL, sign in as the demo owner and
// allow, take the code from the address the browser lands on, run the
// printed token request, then call the API with the token.
func TestDemoWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds the demo")
	}
	m := NewMain()
	var stdout, stderr syncBuffer
	m.Stdout, m.Stderr = &stdout, &stderr
	m.Getenv = func(string) string { return "" }
	db := filepath.Join(t.TempDir(), "demo.db")
	if err := m.ParseFlags(context.Background(), []string{"demo", "--addr", "127.0.0.1:0", "--no-hub", "--db", db}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	authorizeRe := regexp.MustCompile(`(http://127\.0\.0\.1:\d+)/oauth/authorize\?\S+`)
	curlRe := regexp.MustCompile(`curl -u '([^:]+):([^']+)' -d grant_type=authorization_code -d redirect_uri=(\S+) -d code=CODE (\S+)`)
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(stdout.String(), "Stop with Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("demo printed no walk-through:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := stdout.String()
	authorize, curl := authorizeRe.FindStringSubmatch(out), curlRe.FindStringSubmatch(out)
	if authorize == nil || curl == nil {
		t.Fatalf("walk-through without its URLs:\n%s", out)
	}
	base := authorize[1]

	h := &helpdesktest.Helpdesk{URL: base}
	b := h.NewBrowser(t, "olivia@acme-outfitters.example")
	b.Password = "valet-demo"
	b.Client.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
		if "http://"+r.URL.Host != base {
			return http.ErrUseLastResponse // the demo app's callback is not running
		}
		return nil
	}
	resp, body := b.Get(authorize[0])
	resp, _ = b.Walk(resp, body, "allow")
	to, err := resp.Location()
	if err != nil || !strings.HasPrefix(to.String(), curl[3]+"?") || to.Query().Get("state") != "xyz" {
		t.Fatalf("after consent: %d %v %v", resp.StatusCode, to, err)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {curl[3]}, "code": {to.Query().Get("code")}}
	req, _ := http.NewRequest(http.MethodPost, curl[4], strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(curl[1], curl[2])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		Account     string `json:"account"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(tok.AccessToken, "vat_") || tok.Account != "acme" {
		t.Fatalf("token request: %d %+v %v", resp.StatusCode, tok, err)
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/api/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/tickets with the token: %d", resp.StatusCode)
	}
}
