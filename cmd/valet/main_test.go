package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet/sqlstore/sqltest"
)

// cliEnv makes the test binary act as the valet binary when set, so tests
// can run a second process on the same database (see TestTwoProcesses).
const cliEnv = "VALET_TEST_ACT_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(NewMain().Execute(context.Background(), os.Args[1:]))
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe for a server goroutine to log into
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is one in-process run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// decode parses stdout (or, for a failure, stderr) as JSON into v.
func (r result) decode(t *testing.T, v any) {
	t.Helper()
	out := r.stdout
	if r.code != 0 {
		out = r.stderr
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output is not JSON (%v):\nstdout: %s\nstderr: %s", err, r.stdout, r.stderr)
	}
}

// runCLI runs valet in-process with args and the given environment only.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr syncBuffer
	m := NewMain()
	m.Stdout, m.Stderr = &stdout, &stderr
	m.Getenv = func(k string) string { return env[k] }
	code := m.Execute(context.Background(), args)
	return result{code, stdout.String(), stderr.String()}
}

// tempDB returns a fresh SQLite path.
func tempDB(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "valet.db")
}

// startServe runs serve in-process on 127.0.0.1:0 with the database db and
// returns its URL. Cleanup shuts it down gracefully and checks that Run
// returned nil.
func startServe(t *testing.T, db string, tune ...func(*Config)) (baseURL string, stop func()) {
	t.Helper()
	m := NewMain()
	m.Command = "serve"
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DB = db
	m.Config.ShutdownTimeout = 5 * time.Second
	for _, f := range tune {
		f(&m.Config)
	}
	logs := &syncBuffer{}
	m.Stdout, m.Stderr = io.Discard, logs
	listening := make(chan string, 1)
	m.OnListen = func(url string) { listening <- url }
	if err := m.Config.Validate(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case baseURL = <-listening:
	case err := <-done:
		cancel()
		t.Fatalf("serve exited before listening: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("serve did not start\n%s", logs)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve returned %v\n%s", err, logs)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("serve did not shut down\n%s", logs)
			}
			if t.Failed() {
				t.Logf("server log:\n%s", logs)
			}
		})
	}
	t.Cleanup(stop)
	return baseURL, stop
}

// call makes an HTTP request and returns the status and body.
func call(t *testing.T, method, url, auth string, body string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// adminSetup creates the account acme with an owner and an API key through
// the admin commands, as an operator would, and returns the key's output.
func adminSetup(t *testing.T, db string) apiKeyJSON {
	t.Helper()
	env := map[string]string{"VALET_DB": db}
	r := runCLI(t, env, "admin", "account", "create", "--name", "acme", "--display-name", "Acme Outfitters",
		"--owner-email", "owner@acme.example", "--owner-password", "correct horse")
	if r.code != 0 {
		t.Fatalf("account create: %+v", r)
	}
	r = runCLI(t, env, "admin", "apikey", "create", "--account", "acme", "--user", "owner@acme.example", "--name", "ci")
	if r.code != 0 {
		t.Fatalf("apikey create: %+v", r)
	}
	var key apiKeyJSON
	r.decode(t, &key)
	return key
}

type apiKeyJSON struct {
	APIKey struct {
		ID     int64    `json:"id"`
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
		Hint   string   `json:"hint"`
	} `json:"api_key"`
	Secret    string `json:"secret"`
	BasicAuth string `json:"basic_auth"`
	Account   struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"account"`
	User struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	} `json:"user"`
}

func TestServe(t *testing.T) {
	db := tempDB(t)
	key := adminSetup(t, db)
	base, stop := startServe(t, db)

	for _, path := range []string{"/healthz", "/readyz"} {
		if status, body, _ := call(t, "GET", base+path, "", ""); status != 200 || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("GET %s = %d %q", path, status, body)
		}
	}

	// The key made by the admin command works with both header forms.
	for _, auth := range []string{"Bearer " + key.Secret, key.BasicAuth} {
		status, body, hdr := call(t, "GET", base+"/api/account", auth, "")
		if status != 200 || !strings.Contains(string(body), `"name":"acme"`) {
			t.Fatalf("GET /api/account with %.12s… = %d %s", auth, status, body)
		}
		if hdr.Get("X-Valet-Account-Api-Call-Limit") == "" {
			t.Error("no rate-limit header")
		}
	}
	status, body, _ := call(t, "POST", base+"/api/tickets", "Bearer "+key.Secret,
		`{"subject":"Where is my order?","customer":{"email":"jane@example.com"},"messages":[{"body_text":"Hello?"}]}`)
	if status != 201 && status != 200 {
		t.Fatalf("POST /api/tickets = %d %s", status, body)
	}
	status, body, _ = call(t, "GET", base+"/api/tickets?limit=30", "Bearer "+key.Secret, "")
	var list struct {
		Object string            `json:"object"`
		Data   []json.RawMessage `json:"data"`
	}
	if status != 200 || json.Unmarshal(body, &list) != nil || list.Object != "list" || len(list.Data) != 1 {
		t.Fatalf("GET /api/tickets = %d %s", status, body)
	}
	if status, _, _ := call(t, "GET", base+"/api/tickets", "", ""); status != 401 {
		t.Errorf("GET /api/tickets without a credential = %d, want 401", status)
	}

	status, body, _ = call(t, "GET", base+"/metrics", "", "")
	if status != 200 || !strings.Contains(string(body), `valet_http_requests_total{method="GET",route="GET /api/tickets",status="200"} 1`) {
		t.Errorf("GET /metrics = %d, want request counts by route:\n%.2000s", status, body)
	}

	stop() // cancels Run's ctx: a graceful shutdown that returns nil
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the server still answers after shutdown")
	}
}

// TestServeDebugAddr: --debug-addr serves the profiler on a loopback
// address of its own, never on the product's listener, and refuses any
// other address (profiles show the command line and memory).
func TestServeDebugAddr(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "10.1.2.3:6060", "example.com:6060", "127.0.0.1", "127.0.0.1:99999"} {
		c := DefaultConfig()
		c.DebugAddr = addr
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--debug-addr") {
			t.Errorf("--debug-addr %q: %v, want refused", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060", ""} {
		c := DefaultConfig()
		c.DebugAddr = addr
		if err := c.Validate(); err != nil {
			t.Errorf("--debug-addr %q: %v", addr, err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	debugAddr := ln.Addr().String()
	ln.Close()
	base, stop := startServe(t, tempDB(t), func(c *Config) { c.DebugAddr = debugAddr })
	status, body, _ := call(t, "GET", "http://"+debugAddr+"/debug/pprof/", "", "")
	if status != 200 || !strings.Contains(string(body), "goroutine") {
		t.Errorf("GET /debug/pprof/ on --debug-addr = %d %.300s", status, body)
	}
	if status, body, _ := call(t, "GET", "http://"+debugAddr+"/debug/pprof/cmdline", "", ""); status != 200 || len(body) == 0 {
		t.Errorf("GET /debug/pprof/cmdline = %d %q", status, body)
	}
	if status, _, _ := call(t, "GET", base+"/debug/pprof/", "", ""); status != 404 {
		t.Errorf("GET /debug/pprof/ on the product's address = %d, want 404", status)
	}
	stop()
	if _, err := http.Get("http://" + debugAddr + "/debug/pprof/"); err == nil {
		t.Error("the profiler still answers after shutdown")
	}
}

func TestServeJSONOutput(t *testing.T) {
	db := tempDB(t)
	m := NewMain()
	var stdout syncBuffer
	m.Stdout, m.Stderr = &stdout, io.Discard
	m.Getenv = func(string) string { return "" }
	if err := m.ParseFlags(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--json"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	m.OnListen = func(url string) { listening <- url }
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	url := <-listening
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var out struct{ URL, DB string }
	if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil || out.URL != url || out.DB != db {
		t.Errorf("serve --json printed %q (%v), want url %s", stdout.String(), err, url)
	}
}

func TestMigrate(t *testing.T) {
	db := tempDB(t)
	for range 2 { // idempotent
		r := runCLI(t, nil, "migrate", "--db", db, "--json")
		var out struct {
			Dialect       string `json:"dialect"`
			SchemaVersion int64  `json:"schema_version"`
		}
		r.decode(t, &out)
		if r.code != 0 || out.Dialect != "sqlite" || out.SchemaVersion < 1 {
			t.Fatalf("migrate = %+v", r)
		}
	}
	r := runCLI(t, nil, "migrate", "--db", db)
	if r.code != 0 || !strings.Contains(r.stdout, "schema version") {
		t.Errorf("migrate (text) = %+v", r)
	}
}

func TestDemo(t *testing.T) {
	db := filepath.Join(t.TempDir(), "demo.db")
	type demoOut struct {
		URL     string `json:"url"`
		Seeded  bool   `json:"seeded"`
		Tickets int    `json:"tickets"`
		Account struct {
			Name string `json:"name"`
		} `json:"account"`
		Users []struct {
			Email, Role, Password string
		} `json:"users"`
		APIKey struct {
			Secret    string `json:"secret"`
			BasicAuth string `json:"basic_auth"`
		} `json:"api_key"`
	}
	run := func(args ...string) demoOut {
		t.Helper()
		m := NewMain()
		var stdout, stderr syncBuffer
		m.Stdout, m.Stderr = &stdout, &stderr
		m.Getenv = func(string) string { return "" }
		if err := m.ParseFlags(context.Background(), append([]string{"demo", "--addr", "127.0.0.1:0", "--db", db, "--json"}, args...)); err != nil {
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
		case <-time.After(60 * time.Second):
			t.Fatalf("demo did not start\n%s", stderr.String())
		}
		var out demoOut
		if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil {
			t.Fatalf("demo --json printed %q: %v", stdout.String(), err)
		}
		status, body, _ := call(t, "GET", out.URL+"/api/tickets?limit=5&status=open", out.APIKey.BasicAuth, "")
		if status != 200 || strings.Count(string(body), `"subject"`) != 5 {
			t.Errorf("GET /api/tickets with the demo key = %d %.500s", status, body)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo returned %v", err)
		}
		return out
	}

	began := time.Now()
	first := run()
	t.Logf("first demo start (seeding) took %v", time.Since(began))
	if !first.Seeded || first.Tickets != 300 || first.Account.Name != "acme" || len(first.Users) != 3 || first.Users[0].Password == "" {
		t.Errorf("first demo: %+v", first)
	}
	second := run()
	if second.Seeded || second.APIKey.Secret == "" || second.APIKey.Secret == first.APIKey.Secret {
		t.Errorf("second demo reseeded or reused the key: %+v", second)
	}
	third := run("--reset")
	if !third.Seeded {
		t.Errorf("demo --reset did not reseed")
	}
}

// TestTwoProcesses runs the server in this process and the CLI as a second
// process on the same SQLite file while the server is serving and writing.
func TestTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	db := tempDB(t)
	key := adminSetup(t, db)
	base, _ := startServe(t, db)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	// The API writes tickets while the CLI process adds members.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	apiErrs := make(chan string, 100)
	wg.Go(func() {
		for i := range 20 {
			status, body, _ := call(t, "POST", base+"/api/tickets", "Bearer "+key.Secret,
				fmt.Sprintf(`{"subject":"ticket %d","customer":{"email":"c%d@example.com"}}`, i, i))
			if status != 201 && status != 200 {
				apiErrs <- fmt.Sprintf("POST /api/tickets = %d %s", status, body)
			}
		}
	})
	for i := range 3 {
		email := fmt.Sprintf("agent%d@acme.example", i)
		cmd := execCLI(ctx, exe, db, "admin", "user", "add", "--account", "acme", "--email", email,
			"--name", fmt.Sprintf("Agent %d", i), "--password", "correct horse")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("valet admin user add (a second process): %v\n%s", err, stderrOf(err))
		}
		var member struct {
			User struct{ Email, Role string } `json:"user"`
		}
		if err := json.Unmarshal(out, &member); err != nil || member.User.Email != email || member.User.Role != "agent" {
			t.Fatalf("user add printed %s (%v)", out, err)
		}
	}
	wg.Wait()
	close(apiErrs)
	for e := range apiErrs {
		t.Error(e)
	}

	// The server sees what the other process wrote, and a key the other
	// process creates works at once.
	status, body, _ := call(t, "GET", base+"/api/users?limit=10", "Bearer "+key.Secret, "")
	if status != 200 || strings.Count(string(body), "@acme.example") != 4 {
		t.Errorf("GET /api/users = %d %s; want the owner and 3 agents", status, body)
	}
	out, err := execCLI(ctx, exe, db, "admin", "apikey", "create", "--account", "acme", "--user", "agent1@acme.example",
		"--scopes", "tickets:read").Output()
	if err != nil {
		t.Fatalf("apikey create: %v\n%s", err, stderrOf(err))
	}
	var agentKey apiKeyJSON
	if err := json.Unmarshal(out, &agentKey); err != nil {
		t.Fatal(err)
	}
	if status, body, _ := call(t, "GET", base+"/api/tickets?limit=100", "Bearer "+agentKey.Secret, ""); status != 200 || strings.Count(string(body), `"subject":"ticket `) != 20 {
		t.Errorf("GET /api/tickets with the agent's key = %d %.300s", status, body)
	}
	if status, _, _ := call(t, "GET", base+"/api/customers", "Bearer "+agentKey.Secret, ""); status != 403 {
		t.Errorf("GET /api/customers with a tickets:read key = %d, want 403", status)
	}
}

// TestServePostgresTwoNodes runs two servers on one PostgreSQL schema, as
// two nodes behind a load balancer: what one writes, the other serves.
// It needs VALET_TEST_POSTGRES and skips without it.
func TestServePostgresTwoNodes(t *testing.T) {
	dsn := sqltest.PostgresDSN(t)
	key := adminSetup(t, dsn)
	nodeA, _ := startServe(t, dsn)
	nodeB, _ := startServe(t, dsn)
	status, body, _ := call(t, "POST", nodeA+"/api/tickets", "Bearer "+key.Secret,
		`{"subject":"Two nodes","customer":{"email":"jane@example.com"},"messages":[{"body_text":"Hi"}]}`)
	if status != 201 {
		t.Fatalf("POST on node A = %d %s", status, body)
	}
	var created struct{ URI string }
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	status, body, _ = call(t, "GET", nodeB+created.URI, key.BasicAuth, "")
	if status != 200 || !strings.Contains(string(body), `"subject":"Two nodes"`) {
		t.Fatalf("GET on node B = %d %s", status, body)
	}
	if status, body, _ := call(t, "GET", nodeB+"/api/events?types=ticket-created", "Bearer "+key.Secret, ""); status != 200 || !strings.Contains(string(body), `"type":"ticket-created"`) {
		t.Errorf("events on node B = %d %s", status, body)
	}
}
