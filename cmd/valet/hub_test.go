package main

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/helpdesktest"
	"github.com/valethq/valet/hub"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

const (
	testHubKey    = "the cmd tests' hub vault key, 32+ bytes long"
	testHubOldKey = "the cmd tests' previous hub key (32+ bytes)"
)

// hubEnv is the environment valet hub needs, with values to override.
func hubEnv(extra map[string]string) map[string]string {
	env := map[string]string{"VALET_HUB_HELPDESK": "https://help.example/", "VALET_HUB_CLIENT_ID": "hub",
		"VALET_HUB_CLIENT_SECRET": "s3cret", "VALET_HUB_KEY": testHubKey}
	for k, v := range extra {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	return env
}

func TestHubConfig(t *testing.T) {
	files := map[string]string{"/run/secrets/hub-key": testHubKey + "\n", "/run/secrets/client": "from-file\n",
		"/run/secrets/old": testHubOldKey + "\nanother old key (also 32+ bytes long)\n"}
	readFile := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, h HubConfig)
		err   string
	}{
		{name: "defaults", env: hubEnv(nil), args: []string{"hub"}, check: func(t *testing.T, h HubConfig) {
			if h.Addr != "127.0.0.1:8090" || h.DB != "valet-hub.db" || h.Helpdesk != "https://help.example" ||
				h.ClientID != "hub" || h.ClientSecret != "s3cret" || h.Key != testHubKey || h.PublicURL != "" {
				t.Errorf("%+v", h)
			}
		}},
		{name: "env", env: hubEnv(map[string]string{"VALET_HUB_ADDR": ":9090", "VALET_HUB_DB": "postgres://hub@db/hub",
			"VALET_HUB_PUBLIC_URL": "https://hub.example/", "VALET_DB": "helpdesk.db"}), args: []string{"hub"},
			check: func(t *testing.T, h HubConfig) {
				if h.Addr != ":9090" || h.DB != "postgres://hub@db/hub" || h.PublicURL != "https://hub.example" {
					t.Errorf("%+v", h)
				}
			}},
		{name: "flags over env", env: hubEnv(map[string]string{"VALET_HUB_ADDR": ":9090"}),
			args: []string{"hub", "--addr", "127.0.0.1:7000", "--db", "/var/lib/hub.db", "--helpdesk", "http://127.0.0.1:8080",
				"--client-id", "other", "--client-secret", "flag-secret", "--public-url", "http://127.0.0.1:7000"},
			check: func(t *testing.T, h HubConfig) {
				if h.Addr != "127.0.0.1:7000" || h.DB != "/var/lib/hub.db" || h.Helpdesk != "http://127.0.0.1:8080" ||
					h.ClientID != "other" || h.ClientSecret != "flag-secret" || h.PublicURL != "http://127.0.0.1:7000" {
					t.Errorf("%+v", h)
				}
			}},
		{name: "secrets from files", env: hubEnv(map[string]string{"VALET_HUB_KEY": "", "VALET_HUB_KEY_FILE": "/run/secrets/hub-key",
			"VALET_HUB_CLIENT_SECRET": "", "VALET_HUB_CLIENT_SECRET_FILE": "/run/secrets/client"}), args: []string{"hub"},
			check: func(t *testing.T, h HubConfig) {
				if h.Key != testHubKey || h.ClientSecret != "from-file" {
					t.Errorf("%+v", h)
				}
			}},
		{name: "secret twice", env: hubEnv(map[string]string{"VALET_HUB_KEY_FILE": "/run/secrets/hub-key"}), args: []string{"hub"},
			err: "not both"},
		{name: "no helpdesk", env: hubEnv(map[string]string{"VALET_HUB_HELPDESK": ""}), args: []string{"hub"}, err: "--helpdesk"},
		{name: "relative helpdesk", env: hubEnv(nil), args: []string{"hub", "--helpdesk", "help.example"}, err: "--helpdesk"},
		{name: "no client", env: hubEnv(map[string]string{"VALET_HUB_CLIENT_ID": ""}), args: []string{"hub"}, err: "--client-id"},
		{name: "no client secret", env: hubEnv(map[string]string{"VALET_HUB_CLIENT_SECRET": ""}), args: []string{"hub"}, err: "--client-secret"},
		{name: "no key", env: hubEnv(map[string]string{"VALET_HUB_KEY": ""}), args: []string{"hub"}, err: "VALET_HUB_KEY"},
		{name: "short key", env: hubEnv(map[string]string{"VALET_HUB_KEY": "short"}), args: []string{"hub"}, err: "at least 32 bytes"},
		{name: "bad addr", env: hubEnv(nil), args: []string{"hub", "--addr", "8090"}, err: "--addr"},
		{name: "scopes", env: hubEnv(map[string]string{"VALET_HUB_SCOPES": "offline tickets:read"}), args: []string{"hub"},
			check: func(t *testing.T, h HubConfig) {
				if h.Scopes != "offline tickets:read" {
					t.Errorf("%+v", h)
				}
			}},
		{name: "unknown scope", env: hubEnv(nil), args: []string{"hub", "--scopes", "offline tickets:delete"}, err: `unknown scope "tickets:delete"`},
		{name: "bad public URL", env: hubEnv(nil), args: []string{"hub", "--public-url", "ftp://hub"}, err: "--public-url"},
		{name: "rotate-key needs only the key", env: map[string]string{"VALET_HUB_KEY": testHubKey, "VALET_HUB_OLD_KEYS_FILE": "/run/secrets/old"},
			args: []string{"hub", "rotate-key", "--db", "/tmp/h.db", "--old-key", "a third old key: 32 bytes or longer"},
			check: func(t *testing.T, h HubConfig) {
				if old := h.oldKeys(); h.DB != "/tmp/h.db" || len(old) != 3 || old[0] != testHubOldKey || old[2] != "a third old key: 32 bytes or longer" {
					t.Errorf("%+v old keys %q", h, old)
				}
			}},
		{name: "rotate-key without key", env: map[string]string{}, args: []string{"hub", "rotate-key"}, err: "VALET_HUB_KEY"},
		{name: "rotate-key short old key", env: map[string]string{"VALET_HUB_KEY": testHubKey, "VALET_HUB_OLD_KEYS": "short"},
			args: []string{"hub", "rotate-key"}, err: "old key"},
		{name: "demo hub flags", env: map[string]string{"VALET_HUB_DB": "real-hub.db"}, args: []string{"demo", "--hub-addr", "127.0.0.1:0", "--no-hub"},
			check: func(t *testing.T, h HubConfig) {
				if h.Addr != "127.0.0.1:0" || !h.Off {
					t.Errorf("%+v", h)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMain()
			m.Getenv = func(k string) string { return tt.env[k] }
			m.ReadFile = readFile
			err := m.ParseFlags(context.Background(), tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.args[0]
			if len(tt.args) > 1 && tt.args[1] == "rotate-key" {
				want = "hub rotate-key"
			}
			if m.Command != want {
				t.Fatalf("command %q, want %q", m.Command, want)
			}
			tt.check(t, m.Config.Hub)
		})
	}
}

// TestHubHelp: the hub's commands are in the usage and have their own.
func TestHubHelp(t *testing.T) {
	r := runCLI(t, nil, "help")
	if r.code != 0 || !strings.Contains(r.stdout, "hub rotate-key") || !strings.Contains(r.stdout, "VALET_HUB_KEY") {
		t.Fatalf("help: %d\n%s", r.code, r.stdout)
	}
	r = runCLI(t, nil, "help", "hub", "rotate-key")
	if r.code != 0 || !strings.Contains(r.stdout, "-old-key") {
		t.Fatalf("help hub rotate-key: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, nil, "hub")
	if r.code != 2 || !strings.Contains(r.stderr, "VALET_HUB_KEY") {
		t.Fatalf("hub without configuration: %d\n%s", r.code, r.stderr)
	}
}

// TestHubRotateKey re-encrypts a real SQLite hub database: connections
// sealed under the old key open under the new one alone afterwards; a
// missing old key changes nothing.
func TestHubRotateKey(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "hub.db")
	store, err := sqlstore.OpenHub(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	old, err := hub.NewVault(testHubOldKey)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]hub.Secrets{}
	for i, account := range []string{"acme", "globex"} {
		c := &valet.Connection{Provider: hub.ProviderValet, BaseURL: "http://127.0.0.1:8080", Account: account,
			AccessExpires: time.Now().Add(time.Hour), NextRefresh: time.Now().Add(50 * time.Minute)}
		sec := hub.Secrets{AccessToken: "vat_access_" + account, RefreshToken: "vrt_refresh_" + account}
		if i == 0 {
			sec.WebhookSecret = "whsec_" + account
		}
		if err := store.SaveConnection(ctx, c, old.Seal(sec)); err != nil {
			t.Fatal(err)
		}
		want[account] = sec
	}
	store.Close()

	// Without the old key nothing can be opened: an error, nothing changed.
	r := runCLI(t, map[string]string{"VALET_HUB_KEY": testHubKey}, "hub", "rotate-key", "--db", db)
	if r.code != 1 || !strings.Contains(r.stderr, "nothing was changed") || !strings.Contains(r.stderr, "does not have") {
		t.Fatalf("rotate without the old key: %d\n%s", r.code, r.stderr)
	}
	check := func(v *hub.Vault) error {
		t.Helper()
		s, err := sqlstore.OpenHub(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		list, err := s.ListConnections(ctx, 0)
		if err != nil || len(list) != 2 {
			t.Fatalf("connections %v %v", list, err)
		}
		for _, c := range list {
			_, sealed, err := s.FindConnection(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Open(*sealed)
			if err != nil {
				return err
			}
			if got != want[c.Account] {
				t.Fatalf("%s: secrets changed", c.Account)
			}
		}
		return nil
	}
	if err := check(old); err != nil {
		t.Fatalf("after a failed rotation the old key no longer opens: %v", err)
	}

	r = runCLI(t, map[string]string{"VALET_HUB_KEY": testHubKey, "VALET_HUB_OLD_KEYS": testHubOldKey}, "hub", "rotate-key", "--db", db, "--json")
	var out struct {
		Resealed int    `json:"resealed"`
		KeyID    string `json:"key_id"`
	}
	r.decode(t, &out)
	current, err := hub.NewVault(testHubKey)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || out.Resealed != 2 || out.KeyID != current.KeyID() {
		t.Fatalf("rotate: %d %+v\n%s", r.code, out, r.stderr)
	}
	if err := check(current); err != nil {
		t.Fatalf("the new key alone does not open the rotated secrets: %v", err)
	}
	if err := check(old); err == nil {
		t.Fatal("the old key still opens the rotated secrets")
	}
	// Again: nothing left to do.
	r = runCLI(t, map[string]string{"VALET_HUB_KEY": testHubKey}, "hub", "rotate-key", "--db", db)
	if r.code != 0 || !strings.Contains(r.stdout, "re-encrypted 0 connection(s)") {
		t.Fatalf("second rotate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// startHubCLI runs valet hub in-process with env and args on 127.0.0.1:0
// and returns its URL; cleanup stops it and checks a clean shutdown.
func startHubCLI(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	m := NewMain()
	logs := &syncBuffer{}
	m.Stdout, m.Stderr = logs, logs
	m.Getenv = func(k string) string { return env[k] }
	if err := m.ParseFlags(context.Background(), append([]string{"hub", "--addr", "127.0.0.1:0", "--shutdown-timeout", "5s"}, args...)); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	m.OnListen = func(url string) { listening <- url }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var u string
	select {
	case u = <-listening:
	case err := <-done:
		cancel()
		t.Fatalf("hub exited: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("hub did not start\n%s", logs)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("hub returned %v\n%s", err, logs)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("hub did not shut down\n%s", logs)
		}
		for _, secret := range []string{"vat_", "vrt_"} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a token reached the hub's log:\n%s", logs)
			}
		}
	})
	return u
}

// TestHubServe runs valet hub as the CLI wires it (vault, refresher,
// poller, events) against a real helpdesk: sign in, connect, tickets.
func TestHubServe(t *testing.T) {
	h := helpdesktest.Start(t, helpdesktest.Options{})
	tk := &valet.Customer{AccountID: h.Account.ID, Email: "ana@example.com", Name: "Ana"}
	must(t, h.Store.CreateCustomer(context.Background(), tk))
	must(t, h.Store.CreateTicket(context.Background(), &valet.Ticket{AccountID: h.Account.ID, Subject: "Stove leaks gas", Customer: tk.Ref()},
		[]*valet.Message{{Public: true, BodyText: "It hisses."}}))
	// The hub's address must be known to register its redirect URIs: a
	// fixed public URL in front of a port chosen at start would not do, so
	// register after the start and pass the client through the env.
	app := &valet.App{Name: "Hub", RedirectURIs: []string{"http://127.0.0.1:1/callback"}}
	secret := h.RegisterApp(t, app)
	u := startHubCLI(t, map[string]string{"VALET_HUB_KEY": testHubKey, "VALET_HUB_CLIENT_SECRET": secret},
		"--db", filepath.Join(t.TempDir(), "hub.db"), "--helpdesk", h.URL, "--client-id", app.ClientID)
	cfg := hub.Config{PublicURL: u}
	app.RedirectURIs = cfg.RedirectURIs()
	must(t, h.Store.UpdateApp(context.Background(), app))

	resp, err := http.Get(u + "/healthz")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	b := h.NewBrowser(t, h.Owner.Email)
	_, body := b.Get(u + "/")
	resp, body = b.PostWalk(u+"/signin", url.Values{"csrf": {helpdesktest.CSRF(t, body)}}, "allow")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in as Olivia Owner") {
		t.Fatalf("sign in: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	resp, body = b.PostWalk(u+"/connect", url.Values{"csrf": {helpdesktest.CSRF(t, body)}}, "allow")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connected to acme.") {
		t.Fatalf("connect: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	resp, body = b.Get(u + "/connections/1")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Stove leaks gas") {
		t.Fatalf("tickets: %d\n%s", resp.StatusCode, body)
	}
}

// TestDemoHub: valet demo starts the hub beside the helpdesk with its app
// registered; a reader signs in to the hub, connects, approves and sees
// the demo's tickets.
func TestDemoHub(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds the demo")
	}
	db := filepath.Join(t.TempDir(), "demo.db")
	m := NewMain()
	var stdout, stderr syncBuffer
	m.Stdout, m.Stderr = &stdout, &stderr
	m.Getenv = func(string) string { return "" }
	if err := m.ParseFlags(context.Background(), []string{"demo", "--addr", "127.0.0.1:0", "--hub-addr", "127.0.0.1:0", "--db", db, "--json"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listening := make(chan string, 1)
	m.OnListen = func(url string) { listening <- url }
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-listening:
	case err := <-done:
		t.Fatalf("demo exited: %v\n%s", err, stderr.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("demo did not start\n%s", stderr.String())
	}
	var out struct {
		URL    string `json:"url"`
		HubURL string `json:"hub_url"`
		Users  []struct{ Email, Password string }
	}
	if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil || out.HubURL == "" {
		t.Fatalf("demo --json printed %q: %v", stdout.String(), err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(db), "demo-hub.db")); err != nil {
		t.Fatalf("the demo hub's database is not next to the demo's: %v", err)
	}
	// The hub's app is registered with issue 4's 30 s refresh reuse leeway.
	helpdesk, err := sqlstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	hubApp, err := helpdesk.FindApp(ctx, demoHubClientID)
	helpdesk.Close()
	if err != nil || hubApp.RefreshLeeway != 30 || hubApp.Public {
		t.Fatalf("the demo hub's app: %+v, %v", hubApp, err)
	}
	b := (&helpdesktest.Helpdesk{URL: out.URL}).NewBrowser(t, out.Users[0].Email)
	b.Password = out.Users[0].Password
	_, body := b.Get(out.HubURL + "/")
	resp, body := b.PostWalk(out.HubURL+"/signin", url.Values{"csrf": {helpdesktest.CSRF(t, body)}}, "allow")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in as") {
		t.Fatalf("sign in to the demo hub: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	resp, body = b.PostWalk(out.HubURL+"/connect", url.Values{"csrf": {helpdesktest.CSRF(t, body)}}, "allow")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connected to acme.") {
		t.Fatalf("connect the demo helpdesk: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	resp, body = b.Get(out.HubURL + "/connections/1")
	if resp.StatusCode != http.StatusOK || strings.Count(body, "data-ticket=") != 20 {
		t.Fatalf("the demo's tickets in the hub: %d\n%s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("demo returned %v\n%s", err, stderr.String())
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPurgeHubActivity: the feed forgets events after the retention, in
// batches, and keeps the newer ones.
func TestPurgeHubActivity(t *testing.T) {
	ctx := context.Background()
	store := sqltest.HubSQLite(t)
	user := &valet.HubUser{Issuer: "https://help.example", Subject: "1", Email: "ada@example.com"}
	if err := store.UpsertHubUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	conn := &valet.Connection{Provider: hub.ProviderValet, BaseURL: "https://help.example", Account: "acme", ConnectedBy: user.ID}
	if err := store.SaveConnection(ctx, conn, valet.ConnectionSecrets{KeyID: "k", AccessToken: []byte("sealed")}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old, recent := 2500, 3
	for i := range old + recent {
		received := now.Add(-hubActivityRetention - time.Hour)
		if i >= old {
			received = now.Add(-time.Hour)
		}
		if _, err := store.RecordActivity(ctx, &valet.Activity{ConnectionID: conn.ID, EventID: int64(i + 1),
			EventType: "ticket-created", Via: hub.ViaPoll, Received: received}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := purgeHubActivity(ctx, store, now)
	if err != nil || n != old {
		t.Fatalf("purged %d, %v; want %d", n, err, old)
	}
	left, err := store.ListActivity(ctx, 0, 200)
	if err != nil || len(left) != recent {
		t.Fatalf("%d left, %v; want %d", len(left), err, recent)
	}
}
