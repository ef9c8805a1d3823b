// Command listpage measures what DESIGN.md §6 sets targets for with a large
// account: the latency of listing a page of 30 tickets out of 1,000,000
// (GET /api/tickets?limit=30 through `valet serve` with an API key; target
// p99 under 10 ms) and the memory of the serving process (target under
// 150 MB RSS).
//
//	go run ./bench/listpage -db /tmp/bench.db -fresh -n 1000000
//	go run ./bench/listpage -db 'postgres://postgres@127.0.0.1:5432/valet_bench?sslmode=disable' -fresh -n 1000000
//
// It seeds the account "bench" (with -fresh, in a new SQLite file or a
// newly created PostgreSQL database; with -reuse, it keeps what an earlier
// run seeded), starts `valet serve` on it as a child process, sends
// -requests requests per query one at a time (and then -concurrency at
// once), and reads the child's VmRSS and VmHWM from /proc. Every loop is
// bounded by a request count and by -timeout.
package main

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to create the benchmark database
	_ "modernc.org/sqlite"             // the "sqlite" driver, to ANALYZE after seeding

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/seed"
	"github.com/valethq/valet/sqlstore"
)

type config struct {
	db          string
	fresh       bool
	reuse       bool
	n           int
	customers   int
	tokens      int
	requests    int
	concurrency int
	valetBin    string
	jsonOut     bool
	timeout     time.Duration
	queryBudget time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.db, "db", filepath.Join(os.TempDir(), "valet-bench-listpage.db"), "SQLite file or postgres:// DSN of the benchmark database")
	flag.BoolVar(&c.fresh, "fresh", false, "start from an empty database: delete the SQLite file, or drop and create the PostgreSQL database")
	flag.BoolVar(&c.reuse, "reuse", false, "keep the tickets an earlier run seeded (pass the same -n)")
	flag.IntVar(&c.n, "n", 1_000_000, "tickets to seed")
	flag.IntVar(&c.customers, "customers", 1000, "customers the tickets belong to")
	flag.IntVar(&c.tokens, "tokens", 0, "live OAuth access tokens to create (the memory target counts 100,000)")
	flag.IntVar(&c.requests, "requests", 3000, "requests per measured query")
	flag.IntVar(&c.concurrency, "concurrency", 8, "clients of the concurrent run (0 skips it)")
	flag.StringVar(&c.valetBin, "valet", "", "valet binary to serve with (default: go build ./cmd/valet)")
	flag.BoolVar(&c.jsonOut, "json", false, "print the results as JSON")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.DurationVar(&c.queryBudget, "query-budget", 90*time.Second, "stop measuring a query after this long (slow plans report fewer requests)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := run(ctx, c, log)
	if err != nil {
		log.Error("listpage failed", "err", err)
		os.Exit(1)
	}
	if c.jsonOut {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Println(string(b))
		return
	}
	res.printMarkdown(os.Stdout)
}

// results is what one run measured.
type results struct {
	Dialect      string        `json:"dialect"`
	Tickets      int           `json:"tickets"`
	Tokens       int           `json:"tokens"`
	SeedSeconds  float64       `json:"seed_seconds,omitempty"`
	Queries      []queryResult `json:"queries"`
	RSSIdleKiB   int64         `json:"rss_idle_kib"`
	RSSKiB       int64         `json:"rss_kib"`
	HWMKiB       int64         `json:"hwm_kib"`
	ServeCommand string        `json:"serve_command"`
}

type queryResult struct {
	Name        string  `json:"name"`
	Path        string  `json:"path"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	PerSecond   float64 `json:"per_second"`
}

func run(ctx context.Context, c config, log *slog.Logger) (*results, error) {
	res := &results{Tokens: c.tokens}
	if c.fresh {
		if err := freshDatabase(ctx, c.db); err != nil {
			return nil, err
		}
	}
	auth, bearerTokens, seeding, err := prepare(ctx, c, log, res)
	if err != nil {
		return nil, err
	}
	res.SeedSeconds = math.Round(seeding.Seconds())

	bin := c.valetBin
	if bin == "" {
		dir, err := os.MkdirTemp("", "valet-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "valet")
		log.Info("building valet", "out", bin)
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/valethq/valet/cmd/valet")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("go build: %w", err)
		}
	}
	child, base, err := startServe(ctx, bin, c.db, log, res)
	if err != nil {
		return nil, err
	}
	defer child.stop(log)
	res.RSSIdleKiB, _, _ = procMemory(child.cmd.Process.Pid)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: max(c.concurrency, 1) + 1}, Timeout: 30 * time.Second}
	first, err := getPage(ctx, client, base+"/api/tickets?limit=30", auth)
	if err != nil {
		return nil, err
	}
	deep, err := deepCursor(ctx, client, base, auth, first)
	if err != nil {
		return nil, err
	}
	queries := []struct{ name, path string }{
		{"default order (newest first)", "/api/tickets?limit=30"},
		{"status=open", "/api/tickets?limit=30&status=open"},
		{"deep cursor (middle of the account)", "/api/tickets?limit=30&cursor=" + url.QueryEscape(deep)},
		{"status=closed + deep cursor", "/api/tickets?limit=30&status=closed&cursor=" + url.QueryEscape(deep)},
	}
	// A warm-up the size of one query run, so the first measured query does
	// not pay for cold caches the others do not.
	if _, err := load(ctx, client, base+queries[0].path, []string{auth}, min(c.requests, 1000), 1, c.queryBudget); err != nil {
		return nil, err
	}
	for _, q := range queries {
		log.Info("measuring", "query", q.name, "requests", c.requests)
		r, err := load(ctx, client, base+q.path, []string{auth}, c.requests, 1, c.queryBudget)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.name, err)
		}
		r.Name, r.Path = q.name, shorten(q.path)
		res.Queries = append(res.Queries, r)
	}
	if c.concurrency > 1 {
		log.Info("measuring concurrently", "clients", c.concurrency)
		r, err := load(ctx, client, base+queries[0].path, []string{auth}, c.requests, c.concurrency, c.queryBudget)
		if err != nil {
			return nil, err
		}
		r.Name, r.Path = queries[0].name, queries[0].path
		res.Queries = append(res.Queries, r)
	}
	if len(bearerTokens) > 0 {
		log.Info("measuring with OAuth access tokens", "distinct", len(bearerTokens))
		r, err := load(ctx, client, base+queries[0].path, bearerTokens, c.requests, 1, c.queryBudget)
		if err != nil {
			return nil, err
		}
		r.Name, r.Path = "default order, OAuth tokens (rotating)", queries[0].path
		res.Queries = append(res.Queries, r)
	}
	res.RSSKiB, res.HWMKiB, err = procMemory(child.cmd.Process.Pid)
	return res, err
}

// freshDatabase empties the benchmark database: a SQLite file is deleted; a
// PostgreSQL database is dropped and created again through the server's
// postgres database.
func freshDatabase(ctx context.Context, dsn string) error {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(dsn + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" || strings.ContainsAny(name, `"/`) {
		return fmt.Errorf("-fresh needs a DSN naming a database of its own, not %q", name)
	}
	u.Path = "/postgres"
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	if _, err := db.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

const benchAccount = "bench"

// prepare seeds the account (unless reused), refreshes the planner's
// statistics and returns a Basic header for a new API key, and bearer
// headers for a sample of the OAuth tokens it created.
func prepare(ctx context.Context, c config, log *slog.Logger, res *results) (auth string, bearers []string, seeding time.Duration, err error) {
	store, err := sqlstore.Open(ctx, c.db)
	if err != nil {
		return "", nil, 0, err
	}
	defer store.Close()
	res.Dialect = store.Dialect()

	acct, err := store.FindAccountByName(ctx, benchAccount)
	switch {
	case err == nil && !c.reuse:
		return "", nil, 0, fmt.Errorf("%s already has a %q account: pass -fresh to start over or -reuse to keep it", c.db, benchAccount)
	case err != nil && valet.ErrorCode(err) != valet.ENOTFOUND:
		return "", nil, 0, err
	}
	var user *valet.User
	if acct == nil {
		began := time.Now()
		acct, user, err = seedAccount(ctx, store, c, log)
		if err != nil {
			return "", nil, 0, err
		}
		seeding = time.Since(began)
		log.Info("refreshing planner statistics (ANALYZE)")
		if err := analyze(ctx, c.db); err != nil {
			return "", nil, 0, err
		}
	} else if user, err = store.FindUserByEmail(ctx, "bench@bench.example"); err != nil {
		return "", nil, 0, err
	}
	res.Tickets = c.n // with -reuse, as the earlier run was told

	key := &valet.APIKey{AccountID: acct.ID, UserID: user.ID, Name: "listpage", Scopes: valet.ScopeSet{valet.ScopeTicketsRead}}
	secret, err := store.CreateAPIKey(ctx, key)
	if err != nil {
		return "", nil, 0, err
	}
	if c.tokens > 0 {
		if bearers, err = createTokens(ctx, store, acct.ID, user.ID, c.tokens, log); err != nil {
			return "", nil, 0, err
		}
	}
	return "Bearer " + secret, bearers, seeding, nil
}

func seedAccount(ctx context.Context, store *sqlstore.Store, c config, log *slog.Logger) (*valet.Account, *valet.User, error) {
	acct := &valet.Account{Name: benchAccount, DisplayName: "Benchmark"}
	if err := store.CreateAccount(ctx, acct); err != nil {
		return nil, nil, err
	}
	hash, err := passwd.Params{MemoryKiB: 1024, Time: 1, Threads: 1}.Hash("bench-password")
	if err != nil {
		return nil, nil, err
	}
	user := &valet.User{Email: "bench@bench.example", Name: "Bench Agent", PasswordHash: hash}
	if err := store.CreateUser(ctx, user); err != nil {
		return nil, nil, err
	}
	if err := store.AddMember(ctx, acct.ID, user.ID, valet.RoleAgent); err != nil {
		return nil, nil, err
	}
	log.Info("seeding customers", "n", c.customers)
	ids := make([]int64, 0, c.customers)
	for i := range c.customers {
		cu := &valet.Customer{AccountID: acct.ID, Email: fmt.Sprintf("customer%d@example.com", i), Name: fmt.Sprintf("Customer %d", i)}
		if err := store.CreateCustomer(ctx, cu); err != nil {
			return nil, nil, err
		}
		ids = append(ids, cu.ID)
	}
	log.Info("seeding tickets", "n", c.n)
	began, last := time.Now(), time.Now()
	err = seed.Tickets(ctx, store, acct.ID, ids, c.n, seed.WithAssignees(user.ID), seed.WithBatchSize(5000),
		seed.WithProgress(func(done int) {
			if time.Since(last) > 10*time.Second || done == c.n {
				last = time.Now()
				log.Info("seeded", "tickets", done, "per_second", int(float64(done)/time.Since(began).Seconds()))
			}
		}))
	return acct, user, err
}

// analyze refreshes the planner's statistics, as autovacuum (PostgreSQL)
// or PRAGMA optimize (SQLite) would some time after a bulk load.
func analyze(ctx context.Context, dsn string) error {
	driver, name := "sqlite", dsn
	if strings.HasPrefix(dsn, "postgres") {
		driver = "pgx"
	}
	db, err := sql.Open(driver, name)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "ANALYZE")
	return err
}

// createTokens issues n OAuth access tokens for one grant, so the server
// is measured with that many live tokens in its database, and returns a
// sample of them as bearer headers.
func createTokens(ctx context.Context, store *sqlstore.Store, accountID, userID int64, n int, log *slog.Logger) ([]string, error) {
	scopes := valet.ScopeSet{valet.ScopeTicketsRead}
	app := &valet.App{ClientID: fmt.Sprintf("bench-%d", time.Now().UnixNano()), Name: "Bench app", Scopes: scopes}
	if err := store.CreateApp(ctx, app); err != nil {
		return nil, err
	}
	grant := &valet.Grant{AccountID: accountID, UserID: userID, AppID: app.ID, Scopes: scopes}
	if err := store.CreateGrant(ctx, grant); err != nil {
		return nil, err
	}
	log.Info("creating access tokens", "n", n)
	// PostgreSQL takes concurrent writers; SQLite serialises them anyway.
	workers := 8
	if store.Dialect() == "sqlite" {
		workers = 1
	}
	var (
		mu     sync.Mutex
		sample []string
		first  error
		wg     sync.WaitGroup
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				secret, err := store.CreateAccessToken(ctx, grant.ID, scopes, 24*time.Hour)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if i%max(n/1000, 1) == 0 {
					sample = append(sample, "Bearer "+secret)
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return sample, cmp.Or(first, ctx.Err())
}

// child is the `valet serve` process under test.
type child struct {
	cmd  *exec.Cmd
	done chan error
}

func startServe(ctx context.Context, bin, dsn string, log *slog.Logger, res *results) (*child, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	// The limits are raised so the benchmark measures listing, not 429s.
	args := []string{"serve", "--addr", addr, "--db", dsn, "--log-level", "warn",
		"--api-key-rate-limit", "1000000000/1s", "--oauth-rate-limit", "1000000000/1s"}
	shown := slices.Clone(args)
	shown[4] = redact(dsn)
	res.ServeCommand = "valet " + strings.Join(shown, " ")
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	c := &child{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				log.Info("valet serve is ready", "pid", cmd.Process.Pid, "url", base)
				return c, base, nil
			}
		}
		select {
		case err := <-c.done:
			return nil, "", fmt.Errorf("valet serve exited: %v", err)
		case <-ctx.Done():
			c.stop(log)
			return nil, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop(log)
			return nil, "", errors.New("valet serve did not become ready in 60s")
		}
	}
}

// stop asks the child to shut down gracefully and kills it if it will not.
func (c *child) stop(log *slog.Logger) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			log.Warn("valet serve exited", "err", err)
		}
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

type page struct {
	Data []json.RawMessage `json:"data"`
	Meta struct {
		NextCursor *string `json:"next_cursor"`
	} `json:"meta"`
}

func getPage(ctx context.Context, client *http.Client, url, auth string) (*page, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// deepCursor builds a cursor into the middle of the account, in the list's
// default order. Keyset cursors are (sort key, id), so one half-way
// between the newest and the oldest ticket is what a client would hold
// after paging through half the account, without the 16,000 requests.
func deepCursor(ctx context.Context, client *http.Client, base, auth string, first *page) (string, error) {
	if first.Meta.NextCursor == nil || *first.Meta.NextCursor == "" {
		return "", errors.New("the first page has no next cursor: is the account seeded?")
	}
	c, err := valet.ParseCursor(*first.Meta.NextCursor)
	if err != nil {
		return "", err
	}
	keyOf := func(raw json.RawMessage) (int64, error) {
		var row map[string]any
		if err := json.Unmarshal(raw, &row); err != nil {
			return 0, err
		}
		s, _ := row[c.Order.Field].(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		return t.UnixMicro(), err
	}
	newest, err := keyOf(first.Data[0])
	if err != nil {
		return "", err
	}
	reverse := c.Order
	reverse.Desc = !reverse.Desc
	last, err := getPage(ctx, client, base+"/api/tickets?limit=1&order_by="+reverse.String(), auth)
	if err != nil {
		return "", err
	}
	oldest, err := keyOf(last.Data[0])
	if err != nil {
		return "", err
	}
	mid := valet.Cursor{Order: c.Order, Key: oldest + (newest-oldest)/2, ID: math.MaxInt64}
	if !c.Order.Desc {
		mid.ID = 0
	}
	return mid.String(), nil
}

// load sends n requests from clients goroutines, rotating through auths,
// and checks every answer is a full page. It stops early after budget, so
// a slow query plan costs a bounded time and reports fewer requests.
func load(ctx context.Context, client *http.Client, url string, auths []string, n, clients int, budget time.Duration) (queryResult, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		lat   = make([]time.Duration, 0, n)
		first error
	)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	began := time.Now()
	for range clients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, n/clients+1)
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for i := range next {
				if ctx.Err() != nil || time.Since(began) > budget {
					return
				}
				t0 := time.Now()
				p, err := getPage(ctx, client, url, auths[i%len(auths)])
				mine = append(mine, time.Since(t0))
				if err == nil && len(p.Data) != 30 {
					err = fmt.Errorf("GET %s: %d rows, want 30", url, len(p.Data))
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	if err := cmp.Or(first, ctx.Err()); err != nil {
		return queryResult{}, err
	}
	n = len(lat)
	if n == 0 {
		return queryResult{}, errors.New("no request completed")
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }
	q := func(p float64) time.Duration { return lat[min(int(p*float64(n)), n-1)] }
	return queryResult{Concurrency: clients, Requests: n, P50Ms: ms(q(0.50)), P90Ms: ms(q(0.90)), P99Ms: ms(q(0.99)),
		MaxMs: ms(lat[n-1]), PerSecond: math.Round(float64(n) / elapsed.Seconds())}, nil
}

// procMemory reads a process's resident set and its peak from /proc.
func procMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch name {
		case "VmRSS":
			rss = kib
		case "VmHWM":
			hwm = kib
		}
	}
	return rss, hwm, nil
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}

func shorten(path string) string {
	if i := strings.Index(path, "cursor="); i >= 0 {
		return path[:i] + "cursor=<middle>"
	}
	return path
}

func (r *results) printMarkdown(w io.Writer) {
	fmt.Fprintf(w, "%s, %d tickets in one account", r.Dialect, r.Tickets)
	if r.Tokens > 0 {
		fmt.Fprintf(w, ", %d live access tokens", r.Tokens)
	}
	if r.SeedSeconds > 0 {
		fmt.Fprintf(w, " (seeded in %.0f s)", r.SeedSeconds)
	}
	fmt.Fprintf(w, "\nserved by: %s\n\n", r.ServeCommand)
	fmt.Fprintln(w, "| query | clients | requests | p50 ms | p90 ms | p99 ms | max ms | req/s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, q := range r.Queries {
		fmt.Fprintf(w, "| %s `%s` | %d | %d | %.2f | %.2f | %.2f | %.1f | %.0f |\n",
			q.Name, q.Path, q.Concurrency, q.Requests, q.P50Ms, q.P90Ms, q.P99Ms, q.MaxMs, q.PerSecond)
	}
	fmt.Fprintf(w, "\nvalet serve memory: VmRSS %.1f MiB after the load (%.1f MiB idle before it), VmHWM %.1f MiB\n",
		float64(r.RSSKiB)/1024, float64(r.RSSIdleKiB)/1024, float64(r.HWMKiB)/1024)
}
