// Command oauth measures the authorization server against DESIGN.md §6's
// targets (issue 3, "What it must show"): refresh grants, code exchanges
// with ES256 and RS256 ID tokens, complete authorize -> consent -> code ->
// token flows for a signed-in user, and the same flows with a password
// sign-in, each as a share of a stdlib ceiling handler loaded by the same
// generator in the same run.
//
//	go run ./bench/oauth                        # SQLite and PostgreSQL, c=16 and 64, 10 s per case
//	go run ./bench/oauth -db sqlite -c 16 -duration 2s
//
// For each database it builds `valet serve` (or takes -valet), prepares an
// empty database (a temporary SQLite file, or a fresh schema on -pg),
// creates the account, users and apps with the child's own CLI (`valet
// admin ...`), starts `valet serve` as a child process, signs every user in
// through the sign-in page and consents once per app through the consent
// page, then loads each case for a fixed time at each concurrency. Every
// answer is checked; anything unexpected is an error. The output is a
// Markdown table per database, ready for BENCHMARKS.md. See README.md.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
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
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver: the benchmark schema, the stored hash
	_ "modernc.org/sqlite"             // the "sqlite" driver: the stored hash
)

// What the benchmark creates in each database.
const (
	benchAccount = "bench"
	ownerEmail   = "owner@bench.example"
	userPassword = "bench-password-not-secret"
	redirectURI  = "http://127.0.0.1/bench/callback"
	// The scopes of the exchange and flow apps: a typical installation
	// (an ID token, email in it, a refresh token, API access).
	flowScopes = "openid email offline tickets:read"
	// The refresh app has no openid: a refresh signs no ID token.
	refreshScopes = "offline tickets:read"
)

// The cases, in the order they run.
const (
	caseCeiling    = "ceiling"
	caseCeilingIn  = "ceiling-in-process" // with -ceiling both, not selectable with -cases
	caseRefresh    = "refresh"
	caseES256      = "exchange-es256"
	caseRS256      = "exchange-rs256"
	caseFlow       = "flow"
	caseFlowSignIn = "flow-signin"
)

var allCases = []string{caseCeiling, caseRefresh, caseES256, caseRS256, caseFlow, caseFlowSignIn}

// caseInfo is how a case is named in the table and what it aims for.
var caseInfo = map[string]struct {
	title  string
	unit   string
	target float64 // share of the ceiling; 0 means none
}{
	caseCeiling:    {"ceiling: stdlib handler (parse form, small JSON), own process", "req", 0},
	caseCeilingIn:  {"ceiling: the same handler in the generator's process", "req", 0},
	caseRefresh:    {"refresh grant (rotation, client_secret_basic)", "req", 0.20},
	caseES256:      {"code exchange, ES256 ID token (token request only)", "req", 0.20},
	caseRS256:      {"code exchange, RS256 ID token (token request only)", "req", 0.04},
	caseFlow:       {"complete flow, signed-in user, remembered consent, RS256", "flow", 0.02},
	caseFlowSignIn: {"complete flow with password sign-in (argon2id), RS256", "flow", 0},
}

type config struct {
	duration     time.Duration
	warmup       time.Duration
	concurrency  []int
	dbs          []string
	cases        []string
	pgDSN        string
	valetBin     string
	producers    int
	maxCodes     int
	ceiling      string // process, in-process or both
	keep         bool
	rounds       int
	timeout      time.Duration
	serveCeiling string // hidden: serve the ceiling handler on this address and nothing else
	cpuProfile   string
	debugAddr    string // valet serve's --debug-addr
}

func main() {
	var c config
	var conc, dbs, cases string
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measured time per case and concurrency")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured load before each measurement")
	flag.StringVar(&conc, "c", "16,64", "concurrencies (comma-separated)")
	flag.StringVar(&dbs, "db", "sqlite,postgres", "databases: sqlite, postgres (comma-separated)")
	flag.StringVar(&cases, "cases", strings.Join(allCases, ","), "cases (comma-separated); the ceiling always runs")
	flag.StringVar(&c.pgDSN, "pg", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server; the run works in a schema of its own, dropped afterwards")
	flag.StringVar(&c.valetBin, "valet", "", "valet binary to run (default: go build ./cmd/valet into a temporary directory)")
	flag.IntVar(&c.producers, "producers", 16, "clients minting codes (authorize -> consent -> callback) for the code exchange cases, between measurements")
	flag.IntVar(&c.maxCodes, "max-codes", 25000, "at most this many codes measured per code exchange case (minting them takes time outside the measurement)")
	flag.StringVar(&c.ceiling, "ceiling", ceilingProcess, "where the ceiling handler runs: process (its own, as valet serve), in-process (the load generator's), or both (shares of each; the verdict is on process)")
	flag.BoolVar(&c.keep, "keep", false, "keep the SQLite file or PostgreSQL schema afterwards")
	flag.IntVar(&c.rounds, "rounds", 1, "run every case this many times, alternating, and report the medians")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "give up after this long (default: 30m, or twice the run's planned load time when that is longer)")
	flag.StringVar(&c.serveCeiling, "serve-ceiling", "", "internal: serve only the ceiling handler on this address")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load generator's CPU profile (the whole run) to this file")
	flag.StringVar(&c.debugAddr, "valet-debug-addr", "", "start valet serve with --debug-addr this loopback address, to take its profiles (/debug/pprof/) during a run")
	flag.Parse()

	if c.serveCeiling != "" {
		ln, err := net.Listen("tcp", c.serveCeiling)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = newCeilingServer().Serve(ln)
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var err error
	if c.concurrency, err = parseInts(conc); err != nil {
		fail(log, fmt.Errorf("-c: %w", err))
	}
	c.dbs = splitList(dbs)
	for _, d := range c.dbs {
		if d != "sqlite" && d != "postgres" {
			fail(log, fmt.Errorf("-db: unknown database %q (want sqlite, postgres)", d))
		}
	}
	c.cases = []string{caseCeiling}
	for _, k := range splitList(cases) {
		if !slices.Contains(allCases, k) {
			fail(log, fmt.Errorf("-cases: unknown case %q (want %s)", k, strings.Join(allCases, ", ")))
		}
		if !slices.Contains(c.cases, k) {
			c.cases = append(c.cases, k)
		}
	}
	if c.ceiling != ceilingProcess && c.ceiling != ceilingInProcess && c.ceiling != ceilingBoth {
		fail(log, fmt.Errorf("-ceiling: unknown %q (want %s, %s or %s)", c.ceiling, ceilingProcess, ceilingInProcess, ceilingBoth))
	}
	slices.SortFunc(c.cases, func(a, b string) int { return slices.Index(allCases, a) - slices.Index(allCases, b) })
	if c.duration <= 0 || c.warmup < 0 || c.producers < 1 || c.maxCodes < 1 || c.rounds < 1 {
		fail(log, errors.New("-duration, -producers, -max-codes and -rounds must be positive, -warmup not negative"))
	}

	timeoutSet := false
	flag.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
	if !timeoutSet {
		c.timeout = max(c.timeout, 2*c.plannedLoad())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			fail(log, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(log, err)
		}
	}
	rep, err := run(ctx, c, log)
	if c.cpuProfile != "" {
		pprof.StopCPUProfile() // before fail's os.Exit
	}
	if rep != nil {
		rep.print(os.Stdout)
	}
	if err != nil {
		fail(log, err)
	}
}

// plannedLoad is roughly how long the run's load lasts: every case with
// the ceiling run(s) before it, each for -warmup and -duration, one more
// such span per case for minting codes (which only the exchange cases
// need), and a minute of set-up per database. The
// default -timeout follows it, so that a long verdict (-rounds 3 -duration
// 10s) is not cut short while a hung run still ends.
func (c config) plannedLoad() time.Duration {
	ceilings := 1
	if c.ceiling == ceilingBoth {
		ceilings = 2
	}
	runs := time.Duration(len(c.dbs) * len(c.concurrency) * c.rounds * (len(c.cases) - 1))
	return runs*time.Duration(ceilings+2)*(c.warmup+c.duration) + time.Duration(len(c.dbs))*time.Minute
}

func fail(log *slog.Logger, err error) {
	log.Error("oauth benchmark failed", "err", err)
	os.Exit(1)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no concurrency given")
	}
	return out, nil
}

// ---------------------------------------------------------------- report

type report struct {
	Command   string
	Started   time.Time
	Took      time.Duration
	GoVersion string
	Machine   machine
	LoadStart string
	LoadEnd   string
	Ceiling   string
	Valet     string
	Config    config
	DBs       []*dbReport
}

type machine struct {
	NProc  int
	CPU    string
	MemGiB float64
	Kernel string
}

type dbReport struct {
	Name         string // SQLite, PostgreSQL
	Version      string
	ServeCommand string
	Argon2       string
	Users        int
	Setup        time.Duration
	HWMKiB       int64
	Results      []*caseResult
}

type caseResult struct {
	Case        string
	C           int
	Round       int
	Done        int
	Seconds     float64
	PerSec      float64
	P50, P99    time.Duration
	Errors      int
	FirstErrors []string
	Share       float64 // of the ceiling measured just before, at the same concurrency; -1 unknown
	// InProcessShare is of the in-process ceiling measured just before
	// (-ceiling both); -1 when not measured.
	InProcessShare float64
	Note           string
	CPU            cpuUse // over the measured windows
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\n# OAuth benchmark (bench/oauth)\n\n")
	fmt.Fprintf(w, "- command: `%s`\n", r.Command)
	fmt.Fprintf(w, "- date: %s (took %s)\n", r.Started.Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second))
	m := r.Machine
	fmt.Fprintf(w, "- machine: %d cores (`nproc`), %s, %.0f GiB RAM, Linux %s; load average %s at the start, %s at the end\n",
		m.NProc, m.CPU, m.MemGiB, m.Kernel, r.LoadStart, r.LoadEnd)
	fmt.Fprintf(w, "- %s; load generator: this process, plain net/http, keep-alive; %s measured per case after %s of warm-up\n",
		r.GoVersion, r.Config.duration, r.Config.warmup)
	fmt.Fprintf(w, "- valet: %s\n", r.Valet)
	fmt.Fprintf(w, "- ceiling: a stdlib net/http handler that parses the form and answers `%s`, %s, loaded with the same request shape as a refresh\n",
		ceilingBody, r.Ceiling)
	fmt.Fprintf(w, "- CPU µs per unit: the CPU time (user + system, in %s ticks) that valet serve, PostgreSQL's processes (none with SQLite) and this process used while a case was measured, over the units done; this process also runs the in-process ceiling's handler\n",
		clockTick)
	both := r.Config.ceiling == ceilingBoth
	for _, d := range r.DBs {
		fmt.Fprintf(w, "\n## %s\n\n", d.Name)
		fmt.Fprintf(w, "- database: %s\n", d.Version)
		fmt.Fprintf(w, "- served by: `%s` (VALET_DB and VALET_SECRET in the environment)\n", d.ServeCommand)
		fmt.Fprintf(w, "- data: account `%s`, %d users (one per client, each with its own session and grants), apps created with `valet admin app create`; set up in %s\n",
			benchAccount, d.Users, d.Setup.Round(100*time.Millisecond))
		fmt.Fprintf(w, "- password hashes: %s\n", d.Argon2)
		if d.HWMKiB > 0 {
			fmt.Fprintf(w, "- `valet serve` peak RSS (VmHWM) over the run: %.1f MiB\n", float64(d.HWMKiB)/1024)
		}
		fmt.Fprintln(w)
		inProcessHead, inProcessRule := "", ""
		if both {
			inProcessHead, inProcessRule = " share of the in-process ceiling |", "---:|"
		}
		fmt.Fprintln(w, "| round | case | c | done | per s | p50 ms | p99 ms | errors | share of the ceiling before it |"+inProcessHead+" target | CPU µs per unit: valet / db / generator |")
		fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|"+inProcessRule+"---|---:|")
		for _, res := range d.Results {
			info := caseInfo[res.Case]
			share, target := "", ""
			switch {
			case isCeiling(res.Case):
				share = "100%"
			case res.Share >= 0:
				share = fmt.Sprintf("%.1f%%", 100*res.Share)
			}
			if both {
				inProcess := ""
				if res.InProcessShare >= 0 {
					inProcess = fmt.Sprintf("%.1f%%", 100*res.InProcessShare)
				}
				share += " | " + inProcess
			}
			if info.target > 0 {
				target = verdict(info.target, res.Share, res.Errors)
			} else if res.Case == caseFlowSignIn {
				target = "reported"
			}
			db := perUnit(res.CPU.db, res.Done)
			if d.Name == "SQLite" { // inside valet serve; PostgreSQL's processes here are the idle server's
				db = "-"
			}
			cpu := fmt.Sprintf("%s / %s / %s", perUnit(res.CPU.valet, res.Done), db, perUnit(res.CPU.generator, res.Done))
			if isCeiling(res.Case) {
				cpu = "- / - / " + perUnit(res.CPU.generator, res.Done)
			}
			fmt.Fprintf(w, "| %d | %s | %d | %d | %s %s/s | %.2f | %.2f | %d | %s | %s | %s |\n",
				res.Round, info.title, res.C, res.Done, thousands(res.PerSec), info.unit, ms(res.P50), ms(res.P99), res.Errors, share, target, cpu)
		}
		if r.Config.rounds > 1 {
			d.printMedians(w, both)
		}
		var notes []string
		for _, res := range d.Results {
			if res.Note != "" {
				notes = append(notes, fmt.Sprintf("- round %d, %s, c=%d: %s", res.Round, res.Case, res.C, res.Note))
			}
			for _, e := range res.FirstErrors {
				notes = append(notes, fmt.Sprintf("- round %d, %s, c=%d, error: %s", res.Round, res.Case, res.C, e))
			}
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
		}
	}
	fmt.Fprintln(w)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func thousands(f float64) string {
	n := int64(math.Round(f))
	if f < 100 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func machineInfo() machine {
	m := machine{NProc: runtime.NumCPU(), CPU: "unknown CPU"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kib, _ := strconv.ParseFloat(f[1], 64)
				m.MemGiB = kib / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ---------------------------------------------------------------- run

func run(ctx context.Context, c config, log *slog.Logger) (*report, error) {
	rep := &report{Command: commandLine(), Started: time.Now(), GoVersion: runtime.Version(),
		Machine: machineInfo(), LoadStart: loadAverage(), Config: c}
	defer func() { rep.Took, rep.LoadEnd = time.Since(rep.Started), loadAverage() }()

	dir, err := os.MkdirTemp("", "valet-bench-oauth")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := c.valetBin
	if bin == "" {
		bin = filepath.Join(dir, "valet")
		log.Info("building valet", "out", bin)
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/valethq/valet/cmd/valet")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/valet: %w", err)
		}
	}

	rep.Valet = binaryInfo(bin)
	if c.valetBin == "" && strings.Contains(rep.Valet, "no VCS information") {
		rep.Valet = "built by this run from the working tree" + headCommit()
	}
	maxC := slices.Max(c.concurrency)
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: maxC + c.producers + 16,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
		// The generator is the browser: it follows redirects itself, and
		// never requests the app's redirect URI.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	ceilings := map[string]string{} // case -> the ceiling's token URL
	for _, k := range c.ceilingCases() {
		url, stop, err := startCeiling(ctx, k == caseCeiling)
		if err != nil {
			return nil, err
		}
		defer stop()
		ceilings[k] = url
	}
	switch c.ceiling {
	case ceilingProcess:
		rep.Ceiling = "served by a process of its own, as valet serve is (this program re-executed with -serve-ceiling)"
	case ceilingInProcess:
		rep.Ceiling = "served in the load generator's process (same Go runtime)"
	default:
		rep.Ceiling = "served by a process of its own, as valet serve is (this program re-executed with -serve-ceiling): the verdict's reference; also measured in the load generator's process (same Go runtime), each case's share of that in its own column"
	}

	for _, db := range c.dbs {
		d, err := runDatabase(ctx, c, log, bin, dir, db, client, ceilings)
		if d != nil {
			rep.DBs = append(rep.DBs, d)
		}
		if err != nil {
			return rep, fmt.Errorf("%s: %w", db, err)
		}
	}
	return rep, nil
}

// binaryInfo says which source the valet binary was built from, as the Go
// toolchain recorded it (vcs.revision, vcs.modified).
func binaryInfo(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "build information unreadable: " + err.Error()
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	rev := settings["vcs.revision"]
	if rev == "" {
		return fmt.Sprintf("built with %s, no VCS information", bi.GoVersion)
	}
	out := fmt.Sprintf("built with %s from commit %s", bi.GoVersion, rev[:min(len(rev), 12)])
	if settings["vcs.modified"] == "true" {
		out += " plus uncommitted changes"
	}
	return out
}

// headCommit names the checked-out commit, read-only (git rev-parse), for
// when the toolchain did not stamp the binary (GOFLAGS=-buildvcs=false).
func headCommit() string {
	cmd := exec.Command("git", "rev-parse", "--short=12", "HEAD")
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return " at commit " + strings.TrimSpace(string(out)) + " (uncommitted changes, if any, included)"
}

func commandLine() string {
	args := slices.Clone(os.Args[1:])
	for i, a := range args {
		if strings.ContainsAny(a, " '\"$") {
			args[i] = "'" + a + "'"
		}
	}
	return strings.TrimSpace("go run ./bench/oauth " + strings.Join(args, " "))
}

// runDatabase sets up one database, serves it and runs every case at every
// concurrency on it.
func runDatabase(ctx context.Context, c config, log *slog.Logger, bin, dir, db string, client *http.Client, ceilings map[string]string) (*dbReport, error) {
	began := time.Now()
	users := slices.Max(c.concurrency)
	d := &dbReport{Users: users}
	var dsn string
	switch db {
	case "sqlite":
		d.Name = "SQLite"
		dsn = filepath.Join(dir, "valet-bench.db")
		d.Version = "SQLite (modernc.org/sqlite " + moduleVersion("modernc.org/sqlite") + "), a new file in " + os.TempDir()
		defer func() {
			if c.keep {
				log.Info("keeping the SQLite database", "path", dsn)
				return
			}
			for _, suffix := range []string{"", "-wal", "-shm"} {
				_ = os.Remove(dsn + suffix)
			}
		}()
		if c.keep {
			// dir is removed at exit: keep the file elsewhere.
			dsn = filepath.Join(os.TempDir(), fmt.Sprintf("valet-bench-oauth-%d.db", time.Now().Unix()))
		}
	case "postgres":
		d.Name = "PostgreSQL"
		var drop func()
		var version string
		var err error
		dsn, version, drop, err = freshSchema(ctx, c.pgDSN)
		if err != nil {
			return nil, err
		}
		if c.keep {
			log.Info("keeping the PostgreSQL schema", "dsn", redact(dsn))
		} else {
			defer drop()
		}
		d.Version = "PostgreSQL " + version + " (" + redact(c.pgDSN) + "), a new schema; pgx " + moduleVersion("github.com/jackc/pgx/v5")
	}

	e := &env{client: client, bin: bin, dsn: dsn, log: log, ceilings: ceilings, producers: c.producers, debugAddr: c.debugAddr}
	if err := e.prepare(ctx, users); err != nil {
		return d, fmt.Errorf("prepare: %w", err)
	}
	var err error
	if d.Argon2, err = argon2Params(ctx, dsn, e.users[0].email); err != nil {
		return d, err
	}
	child, err := e.startServe(ctx)
	if err != nil {
		return d, err
	}
	d.ServeCommand = e.serveCommand
	defer child.stop(log)
	if err := e.signInAll(ctx); err != nil {
		return d, fmt.Errorf("signing the users in: %w", err)
	}
	if err := e.consentAll(ctx); err != nil {
		return d, fmt.Errorf("first consents: %w", err)
	}
	d.Setup = time.Since(began)
	log.Info("ready", "db", d.Name, "setup", d.Setup.Round(time.Millisecond).String())

	// Each case is measured right after a ceiling run of its own at the
	// same concurrency, and its share is of that ceiling: what else runs on
	// the machine changes the ceiling by a third from one minute to the
	// next, which a single ceiling run per concurrency passed on to every
	// share.
	measure := func(k string, conc, round int) *caseResult {
		log.Info("measuring", "db", d.Name, "case", k, "c", conc, "round", round)
		res := e.runCase(ctx, c, k, conc)
		res.Round = round
		for _, fe := range res.FirstErrors {
			log.Warn("error", "case", k, "c", conc, "err", fe)
		}
		d.Results = append(d.Results, res)
		return res
	}
	for round := 1; round <= c.rounds; round++ {
		for _, conc := range c.concurrency {
			for _, k := range c.cases {
				if ctx.Err() != nil {
					return d, ctx.Err()
				}
				if k == caseCeiling && len(c.cases) > 1 {
					continue // measured before each of the others
				}
				var ceiling, inProcess *caseResult
				for _, ck := range c.ceilingCases() {
					r := measure(ck, conc, round)
					r.Share, r.InProcessShare = 1, -1
					if ck == caseCeilingIn {
						inProcess = r
					}
					if ceiling == nil {
						ceiling = r // the verdict's reference: the first of ceilingCases
					}
				}
				if k == caseCeiling {
					continue
				}
				res := measure(k, conc, round)
				res.Share, res.InProcessShare = shareOf(res, ceiling), -1
				if inProcess != nil && inProcess != ceiling {
					res.InProcessShare = shareOf(res, inProcess)
				}
				log.Info("measured", "db", d.Name, "case", k, "c", conc, "round", round,
					"per_second", math.Round(res.PerSec), "p50_ms", ms(res.P50), "p99_ms", ms(res.P99),
					"errors", res.Errors, "ceiling", math.Round(ceiling.PerSec), "share", fmt.Sprintf("%.1f%%", 100*res.Share))
			}
		}
	}
	_, d.HWMKiB, _ = procMemory(child.cmd.Process.Pid)
	return d, nil
}

// Where the ceiling handler runs (-ceiling).
const (
	ceilingProcess   = "process"
	ceilingInProcess = "in-process"
	ceilingBoth      = "both"
)

// ceilingCases are the ceiling runs before each case, the verdict's
// reference first.
func (c config) ceilingCases() []string {
	switch c.ceiling {
	case ceilingInProcess:
		return []string{caseCeilingIn}
	case ceilingBoth:
		return []string{caseCeiling, caseCeilingIn}
	}
	return []string{caseCeiling}
}

// shareOf is res's rate as a share of ceiling's, -1 when unknown.
func shareOf(res, ceiling *caseResult) float64 {
	if ceiling.PerSec <= 0 {
		return -1
	}
	return res.PerSec / ceiling.PerSec
}

func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "(version unknown)"
}

// freshSchema creates a schema of its own on the server and returns a DSN
// whose search_path is that schema (as sqlstore/sqltest does), the server's
// version and a function dropping the schema.
func freshSchema(ctx context.Context, base string) (dsn, version string, drop func(), err error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", nil, fmt.Errorf("-pg %q: want a postgres:// DSN", redact(base))
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", "", nil, err
	}
	if err := admin.QueryRowContext(ctx, "SHOW server_version").Scan(&version); err != nil {
		admin.Close()
		return "", "", nil, fmt.Errorf("PostgreSQL at %s: %w", redact(base), err)
	}
	if v, _, ok := strings.Cut(version, " "); ok {
		version = v
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "valet_bench_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return "", "", nil, fmt.Errorf("create schema: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintf(os.Stderr, "drop schema %s: %v\n", schema, err)
		}
		admin.Close()
	}
	return u.String(), version, drop, nil
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}

// argon2Params reads the argon2id parameters from a user's stored hash, so
// the report states what `valet admin user add` really used. It reads the
// users table directly: the benchmark depends on the binary it runs, not on
// the store's Go API.
func argon2Params(ctx context.Context, dsn, email string) (string, error) {
	driver := "sqlite"
	if strings.HasPrefix(dsn, "postgres") {
		driver = "pgx"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var hash string
	if err := db.QueryRowContext(ctx, "SELECT password_hash FROM users WHERE email = $1", email).Scan(&hash); err != nil {
		return "", fmt.Errorf("reading %s's password hash: %w", email, err)
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return "", fmt.Errorf("unexpected password hash format for %s", email)
	}
	var m, t, p int
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return "", fmt.Errorf("password hash parameters %q: %w", parts[3], err)
	}
	return fmt.Sprintf("argon2id, memory %d KiB (%.0f MiB), %d passes, %d lane(s) (`%s`, as stored by `valet admin user add`)",
		m, float64(m)/1024, t, p, parts[3]), nil
}

// ---------------------------------------------------------------- set-up

type appInfo struct {
	kind     string // refresh, es256, rs256
	clientID string
	secret   string
	alg      string // expected ID token alg; "" for none
	scopes   string
	offline  bool
	openid   bool
}

type benchUser struct {
	email   string
	session string
}

// env is one database served by one `valet serve`.
type env struct {
	client       *http.Client
	bin          string
	dsn          string
	log          *slog.Logger
	ceilings     map[string]string // ceiling case -> its token URL
	producers    int
	secret       string
	base         string // the issuer, http://127.0.0.1:PORT
	serveCommand string
	servePID     int
	debugAddr    string

	users  []benchUser
	apps   map[string]*appInfo
	chains []string // each user's current refresh token (refresh app; worker i owns chains[i])
}

// valet runs a CLI command of the child binary on the benchmark database.
func (e *env) valet(ctx context.Context, extraEnv []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(childEnv(), "VALET_DB="+e.dsn)
	cmd.Env = append(cmd.Env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("valet %s: %w: %s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.Bytes(), nil
}

// childEnv is this process's environment without VALET_* variables, so a
// developer's own settings do not leak into the benchmark.
func childEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VALET_") {
			out = append(out, kv)
		}
	}
	return out
}

// prepare creates the account, the users and the apps with the CLI.
func (e *env) prepare(ctx context.Context, users int) error {
	pw := "VALET_PASSWORD=" + userPassword
	if _, err := e.valet(ctx, []string{pw}, "admin", "account", "create", "--name", benchAccount,
		"--display-name", "Benchmark", "--owner-email", ownerEmail); err != nil {
		return err
	}
	e.users = make([]benchUser, users)
	for i := range e.users {
		e.users[i].email = fmt.Sprintf("user%03d@bench.example", i)
	}
	// A few at a time: each command hashes a password with argon2id.
	e.log.Info("creating users with valet admin user add", "n", users)
	if err := parallel(ctx, 4, users, func(i int) error {
		_, err := e.valet(ctx, []string{pw}, "admin", "user", "add", "--account", benchAccount,
			"--email", e.users[i].email, "--name", fmt.Sprintf("Bench User %d", i))
		return err
	}); err != nil {
		return err
	}
	e.apps = map[string]*appInfo{
		"refresh": {kind: "refresh", scopes: refreshScopes, offline: true},
		"es256":   {kind: "es256", scopes: flowScopes, alg: "ES256", offline: true, openid: true},
		"rs256":   {kind: "rs256", scopes: flowScopes, alg: "RS256", offline: true, openid: true},
	}
	for _, kind := range []string{"refresh", "es256", "rs256"} {
		a := e.apps[kind]
		args := []string{"admin", "app", "create", "--name", "Bench " + kind, "--developer", "bench/oauth",
			"--redirect-uri", redirectURI, "--scopes", a.scopes}
		if a.alg != "" {
			args = append(args, "--id-token-alg", a.alg)
		}
		out, err := e.valet(ctx, nil, args...)
		if err != nil {
			return err
		}
		var created struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
			App          struct {
				IDTokenAlg string `json:"id_token_signed_response_alg"`
			} `json:"app"`
		}
		if err := json.Unmarshal(out, &created); err != nil {
			return fmt.Errorf("valet admin app create: %w: %s", err, out)
		}
		if created.ClientID == "" || created.ClientSecret == "" {
			return fmt.Errorf("valet admin app create printed no client_id or client_secret: %s", out)
		}
		if a.alg != "" && created.App.IDTokenAlg != a.alg {
			return fmt.Errorf("valet admin app create --id-token-alg %s registered %q", a.alg, created.App.IDTokenAlg)
		}
		a.clientID, a.secret = created.ClientID, created.ClientSecret
	}
	return nil
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
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
	return cmp.Or(first, ctx.Err())
}

// child is the `valet serve` process under test.
type child struct {
	cmd  *exec.Cmd
	done chan error
}

func (e *env) startServe(ctx context.Context) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	e.base = "http://" + addr
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	e.secret = hex.EncodeToString(secret)
	// Successful sign-ins are not limited, but the limiter reserves a unit
	// per attempt until the password is checked, so more than 10 sign-ins
	// in flight from one address (all of the generator's come from
	// 127.0.0.1) would be refused: the limit is raised, as listpage raises
	// the API limits.
	args := []string{"serve", "--addr", addr, "--issuer", e.base, "--log-level", "warn",
		"--sign-in-rate-limit", "1000000000/1s"}
	if e.debugAddr != "" {
		args = append(args, "--debug-addr", e.debugAddr)
	}
	e.serveCommand = "valet " + strings.Join(args, " ")
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(childEnv(), "VALET_DB="+e.dsn, "VALET_SECRET="+e.secret)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e.servePID = cmd.Process.Pid
	c := &child{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := e.client.Get(e.base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				e.log.Info("valet serve is ready", "pid", cmd.Process.Pid, "url", e.base)
				return c, nil
			}
		}
		select {
		case err := <-c.done:
			return nil, fmt.Errorf("valet serve exited: %v", err)
		case <-ctx.Done():
			c.stop(e.log)
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop(e.log)
			return nil, errors.New("valet serve did not become ready in 60 s")
		}
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
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

// cpuUse is the CPU time (user and system) spent by valet serve, by the
// PostgreSQL server's processes and by this process (the load generator,
// and the ceiling handler when it runs here). The machine's few cores are
// shared by all three, so each one's cost per request says where a
// result's time went, which the throughput alone does not.
type cpuUse struct{ valet, db, generator time.Duration }

func (a cpuUse) sub(b cpuUse) cpuUse {
	return cpuUse{a.valet - b.valet, a.db - b.db, a.generator - b.generator}
}

func (a cpuUse) add(b cpuUse) cpuUse {
	return cpuUse{a.valet + b.valet, a.db + b.db, a.generator + b.generator}
}

// clockTick is the unit of /proc/PID/stat's times (USER_HZ, 100 on every
// Linux the benchmark runs on).
const clockTick = 10 * time.Millisecond

// cpuNow reads the three processes' CPU times so far. PostgreSQL is every
// process whose name starts with "postgres" (the server and its
// backends); SQLite runs inside valet serve.
func (e *env) cpuNow() cpuUse {
	u := cpuUse{generator: procCPU("self")}
	if e.servePID > 0 {
		u.valet = procCPU(strconv.Itoa(e.servePID))
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + d.Name() + "/comm"); err == nil && bytes.HasPrefix(comm, []byte("postgres")) {
			u.db += procCPU(d.Name())
		}
	}
	return u
}

// procCPU is the process's utime + stime (fields 14 and 15 of
// /proc/PID/stat, counted after the parenthesised command name), 0 when
// it cannot be read.
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(f[11], 10, 64)
	system, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(user+system) * clockTick
}

// perUnit is d spread over n units, in microseconds.
func perUnit(d time.Duration, n int) string {
	if n == 0 {
		return "?"
	}
	return strconv.Itoa(int(d.Microseconds() / int64(n)))
}

// signInAll signs every user in through the sign-in page, as a person
// would, and keeps the session cookies.
func (e *env) signInAll(ctx context.Context) error {
	return parallel(ctx, 4, len(e.users), func(i int) error {
		session, _, err := e.signIn(ctx, e.base+"/signin", &e.users[i])
		e.users[i].session = session
		return err
	})
}

// consentAll gives every user's first consent to every app through the
// consent page (Allow), so the measured flows find it remembered; the
// refresh app's first code starts each user's refresh token chain.
func (e *env) consentAll(ctx context.Context) error {
	e.chains = make([]string, len(e.users))
	return parallel(ctx, 4, len(e.users), func(i int) error {
		for _, kind := range []string{"refresh", "es256", "rs256"} {
			app := e.apps[kind]
			pc, err := e.authorize(ctx, app, &e.users[i], modeFirstConsent)
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			tok, err := e.exchange(ctx, app, pc)
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			if kind == "refresh" {
				e.chains[i] = tok.RefreshToken
			}
		}
		return nil
	})
}

// ---------------------------------------------------------------- HTTP

// do sends one request and reads the whole answer (at most 1 MiB).
func (e *env) do(ctx context.Context, method, u string, form url.Values, cookie string, app *appInfo) (*http.Response, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if app != nil {
		// client_secret_basic (RFC 6749 §2.3.1: form-encoded, then Basic).
		req.SetBasicAuth(url.QueryEscape(app.clientID), url.QueryEscape(app.secret))
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, shortURL(u), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, shortURL(u), err)
	}
	return resp, b, nil
}

// shortURL keeps error messages readable: sealed request ids are long.
func shortURL(u string) string {
	if p, err := url.Parse(u); err == nil {
		u = p.Path
		if p.RawQuery != "" {
			u += "?…"
		}
	}
	return u
}

func unexpected(what string, resp *http.Response, body []byte, want string) error {
	snippet := strings.Join(strings.Fields(string(body)), " ")
	if len(snippet) > 300 {
		snippet = snippet[:300] + "…"
	}
	loc := ""
	if l := resp.Header.Get("Location"); l != "" {
		loc = " Location: " + shortURL(l)
	}
	return fmt.Errorf("%s: status %d, want %s;%s %s", what, resp.StatusCode, want, loc, snippet)
}

// redirect checks a 302/303 answer and returns its absolute Location, which
// must have the given path.
func redirect(what string, resp *http.Response, body []byte, path string) (*url.URL, error) {
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return nil, unexpected(what, resp, body, "a redirect to "+path)
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("%s: bad Location: %w", what, err)
	}
	if loc.Path != path {
		return nil, unexpected(what, resp, body, "a redirect to "+path)
	}
	return loc, nil
}

func cookieNamed(resp *http.Response, name string) string {
	for _, c := range resp.Cookies() {
		if c.Name == name && c.MaxAge >= 0 {
			return c.Value
		}
	}
	return ""
}

var (
	csrfField    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	idField      = regexp.MustCompile(`name="id" value="([^"]+)"`)
	accountField = regexp.MustCompile(`name="account" value="([^"]+)"`)
)

func formField(re *regexp.Regexp, body []byte) string {
	m := re.FindSubmatch(body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(string(m[1]))
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---------------------------------------------------------------- the flows

type flowMode int

const (
	// modeSession: the user's browser holds a session and consent is
	// remembered; a consent page is an error.
	modeSession flowMode = iota
	// modeSignIn: a browser without a session; the consent page sends it to
	// sign in with the password, then consent is remembered.
	modeSignIn
	// modeFirstConsent: signed in; a consent page is answered Allow.
	modeFirstConsent
)

// pendingCode is a code an app has received, with what it needs to redeem it.
type pendingCode struct {
	code, verifier, nonce string
}

// authorize drives a browser from the app's authorization request to the
// app's redirect URI (which it does not request) and returns the code, with
// PKCE S256, state and nonce as a real app sends them.
func (e *env) authorize(ctx context.Context, app *appInfo, u *benchUser, mode flowMode) (pendingCode, error) {
	pc := pendingCode{verifier: randomString(32), nonce: randomString(16)}
	state := randomString(16)
	sum := sha256.Sum256([]byte(pc.verifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {app.clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {app.scopes},
		"state":                 {state},
		"nonce":                 {pc.nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	resp, body, err := e.do(ctx, "GET", e.base+"/oauth/authorize?"+q.Encode(), nil, "", nil)
	if err != nil {
		return pc, err
	}
	consent, err := redirect("GET /oauth/authorize", resp, body, "/oauth/consent")
	if err != nil {
		return pc, err
	}
	session := u.session
	if mode == modeSignIn {
		session = ""
	}
	resp, body, err = e.do(ctx, "GET", consent.String(), nil, sessionCookie(session), nil)
	if err != nil {
		return pc, err
	}
	if mode == modeSignIn {
		signin, err := redirect("GET /oauth/consent (signed out)", resp, body, "/signin")
		if err != nil {
			return pc, err
		}
		var next *url.URL
		if session, next, err = e.signIn(ctx, signin.String(), u); err != nil {
			return pc, err
		}
		if next.Path != "/oauth/consent" || next.RawQuery != consent.RawQuery {
			return pc, fmt.Errorf("POST /signin: redirected to %s, want back to the consent page", shortURL(next.String()))
		}
		if resp, body, err = e.do(ctx, "GET", next.String(), nil, sessionCookie(session), nil); err != nil {
			return pc, err
		}
	}
	if mode == modeFirstConsent && resp.StatusCode == http.StatusOK {
		form := url.Values{"csrf": {formField(csrfField, body)}, "id": {formField(idField, body)},
			"account": {formField(accountField, body)}, "action": {"allow"}}
		if form.Get("csrf") == "" || form.Get("id") == "" {
			return pc, unexpected("GET /oauth/consent", resp, body, "a consent form")
		}
		if resp, body, err = e.do(ctx, "POST", e.base+"/oauth/consent", form, sessionCookie(session), nil); err != nil {
			return pc, err
		}
	}
	callback, err := redirect("/oauth/consent", resp, body, "/oauth/authorize/callback")
	if err != nil {
		return pc, err
	}
	resp, body, err = e.do(ctx, "GET", callback.String(), nil, sessionCookie(session), nil)
	if err != nil {
		return pc, err
	}
	if resp.StatusCode != http.StatusFound {
		return pc, unexpected("GET /oauth/authorize/callback", resp, body, "302 to the app")
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, redirectURI+"?") {
		return pc, unexpected("GET /oauth/authorize/callback", resp, body, "302 to "+redirectURI)
	}
	got, err := url.ParseQuery(loc[len(redirectURI)+1:])
	if err != nil {
		return pc, fmt.Errorf("the app's redirect: %w", err)
	}
	switch {
	case got.Get("error") != "":
		return pc, fmt.Errorf("the app's redirect: error=%s %s", got.Get("error"), got.Get("error_description"))
	case got.Get("state") != state:
		return pc, errors.New("the app's redirect: state does not match")
	case got.Get("iss") != e.base:
		return pc, fmt.Errorf("the app's redirect: iss=%q, want %q", got.Get("iss"), e.base)
	case got.Get("code") == "":
		return pc, errors.New("the app's redirect carries no code")
	}
	pc.code = got.Get("code")
	return pc, nil
}

func sessionCookie(session string) string {
	if session == "" {
		return ""
	}
	return "valet_session=" + session
}

// signIn loads the sign-in form at signinURL (which may carry next=),
// posts the user's email and password with its CSRF token, and returns the
// new session and where the page sent the browser.
func (e *env) signIn(ctx context.Context, signinURL string, u *benchUser) (string, *url.URL, error) {
	resp, body, err := e.do(ctx, "GET", signinURL, nil, "", nil)
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, unexpected("GET /signin", resp, body, "200")
	}
	csrfCookie, csrf := cookieNamed(resp, "valet_csrf"), formField(csrfField, body)
	if csrfCookie == "" || csrf == "" {
		return "", nil, errors.New("GET /signin: no CSRF cookie or form field")
	}
	form := url.Values{"csrf": {csrf}, "email": {u.email}, "password": {userPassword}}
	if p, err := url.Parse(signinURL); err == nil && p.Query().Get("next") != "" {
		form.Set("next", p.Query().Get("next"))
	}
	resp, body, err = e.do(ctx, "POST", e.base+"/signin", form, "valet_csrf="+csrfCookie, nil)
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != http.StatusSeeOther {
		return "", nil, unexpected("POST /signin", resp, body, "303")
	}
	session := cookieNamed(resp, "valet_session")
	if session == "" {
		return "", nil, errors.New("POST /signin: no session cookie")
	}
	next, err := resp.Location()
	if err != nil {
		return "", nil, fmt.Errorf("POST /signin: %w", err)
	}
	return session, next, nil
}

// tokenAnswer is the token endpoint's answer.
type tokenAnswer struct {
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    float64 `json:"expires_in"`
	RefreshToken string  `json:"refresh_token"`
	IDToken      string  `json:"id_token"`
	Scope        string  `json:"scope"`
	Account      string  `json:"account"`
}

// exchange redeems a code at the token endpoint and checks the answer.
func (e *env) exchange(ctx context.Context, app *appInfo, pc pendingCode) (*tokenAnswer, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {pc.code},
		"redirect_uri": {redirectURI}, "code_verifier": {pc.verifier}}
	resp, body, err := e.do(ctx, "POST", e.base+"/oauth/token", form, "", app)
	if err != nil {
		return nil, err
	}
	tok, err := checkToken("POST /oauth/token (code)", resp, body, app, app.openid)
	if err != nil {
		return nil, err
	}
	if app.openid {
		if err := e.checkIDToken(tok.IDToken, app, pc.nonce); err != nil {
			return nil, err
		}
	}
	return tok, nil
}

// refresh rotates a refresh token and checks the answer.
func (e *env) refresh(ctx context.Context, app *appInfo, rt string) (*tokenAnswer, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	resp, body, err := e.do(ctx, "POST", e.base+"/oauth/token", form, "", app)
	if err != nil {
		return nil, err
	}
	tok, err := checkToken("POST /oauth/token (refresh)", resp, body, app, false)
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken == rt {
		return nil, errors.New("POST /oauth/token (refresh): the refresh token did not rotate")
	}
	return tok, nil
}

func checkToken(what string, resp *http.Response, body []byte, app *appInfo, wantIDToken bool) (*tokenAnswer, error) {
	if resp.StatusCode != http.StatusOK {
		return nil, unexpected(what, resp, body, "200")
	}
	var tok tokenAnswer
	if err := json.Unmarshal(body, &tok); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case !strings.HasPrefix(tok.AccessToken, "vat_"):
		return nil, fmt.Errorf("%s: access_token %q is not a vat_ token", what, trim(tok.AccessToken))
	case !strings.EqualFold(tok.TokenType, "Bearer"):
		return nil, fmt.Errorf("%s: token_type %q", what, tok.TokenType)
	case tok.ExpiresIn <= 0:
		return nil, fmt.Errorf("%s: expires_in %v", what, tok.ExpiresIn)
	case tok.Account != benchAccount:
		return nil, fmt.Errorf("%s: account %q, want %q", what, tok.Account, benchAccount)
	case app.offline && !strings.HasPrefix(tok.RefreshToken, "vrt_"):
		return nil, fmt.Errorf("%s: refresh_token %q is not a vrt_ token", what, trim(tok.RefreshToken))
	case wantIDToken && tok.IDToken == "":
		return nil, fmt.Errorf("%s: no id_token", what)
	case !wantIDToken && tok.IDToken != "":
		return nil, fmt.Errorf("%s: an id_token nobody asked for", what)
	case resp.Header.Get("Cache-Control") != "no-store":
		return nil, fmt.Errorf("%s: Cache-Control %q, want no-store", what, resp.Header.Get("Cache-Control"))
	}
	return &tok, nil
}

func trim(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// checkIDToken checks the ID token's header and claims (not its signature:
// the generator would spend CPU the server needs; the end-to-end tests
// verify signatures with go-oidc).
func (e *env) checkIDToken(jwt string, app *appInfo, nonce string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("id_token is not a JWS")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss   string          `json:"iss"`
		Aud   json.RawMessage `json:"aud"`
		Nonce string          `json:"nonce"`
		Sub   string          `json:"sub"`
		Email string          `json:"email"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return fmt.Errorf("id_token header: %w", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return fmt.Errorf("id_token claims: %w", err)
	}
	switch {
	case header.Alg != app.alg:
		return fmt.Errorf("id_token alg %q, want %q", header.Alg, app.alg)
	case header.Kid == "":
		return errors.New("id_token has no kid")
	case claims.Iss != e.base:
		return fmt.Errorf("id_token iss %q", claims.Iss)
	case claims.Nonce != nonce:
		return errors.New("id_token nonce does not match")
	case claims.Sub == "" || claims.Email == "":
		return errors.New("id_token lacks sub or email")
	case !bytes.Contains(claims.Aud, []byte(strconv.Quote(app.clientID))):
		return fmt.Errorf("id_token aud %s", claims.Aud)
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ---------------------------------------------------------------- the ceiling

const ceilingBody = `{"access_token":"x","token_type":"Bearer","expires_in":86400}`

// ceilingHandler is what any token endpoint must at least do: parse a form
// and answer small JSON.
func ceilingHandler(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") == "" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, ceilingBody)
}

func newCeilingServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", ceilingHandler)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
}

// startCeiling serves the ceiling handler in this process, or in a copy of
// this program started with -serve-ceiling, and returns its token URL.
func startCeiling(ctx context.Context, separate bool) (string, func(), error) {
	if !separate {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		srv := newCeilingServer()
		go func() { _ = srv.Serve(ln) }()
		return "http://" + ln.Addr().String() + "/oauth/token", func() { _ = srv.Close() }, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "-serve-ceiling", addr)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for range 100 {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			return "http://" + addr + "/oauth/token", stop, nil
		}
		select {
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	return "", nil, errors.New("the ceiling process did not start")
}

// ceiling sends what a refresh sends, to the ceiling handler at tokenURL.
func (e *env) ceiling(ctx context.Context, tokenURL, rt string) error {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	resp, body, err := e.do(ctx, "POST", tokenURL, form, "", e.apps["refresh"])
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return unexpected("POST ceiling", resp, body, "200")
	}
	var tok tokenAnswer
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken != "x" {
		return fmt.Errorf("POST ceiling: unexpected answer %s", body)
	}
	return nil
}

// ---------------------------------------------------------------- load

// errLog counts errors and keeps the first few.
// verdict says whether share meets target with no errors.
func verdict(target, share float64, errors int) string {
	v := "missed"
	switch {
	case share < 0:
		v = "?"
	case share >= target && errors == 0:
		v = "met"
	}
	return fmt.Sprintf(">= %.0f%%: %s", 100*target, v)
}

// printMedians summarises the rounds: per case and concurrency, the median
// of the rounds' rates and of their shares (each of its own ceiling), and
// every round's errors.
func (d *dbReport) printMedians(w io.Writer, both bool) {
	type key struct {
		c    int
		name string
	}
	var order []key
	rates, shares, inProcess, errs := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}, map[key]int{}
	for _, res := range d.Results {
		k := key{res.C, res.Case}
		if _, ok := rates[k]; !ok {
			order = append(order, k)
		}
		rates[k] = append(rates[k], res.PerSec)
		shares[k] = append(shares[k], res.Share)
		inProcess[k] = append(inProcess[k], res.InProcessShare)
		errs[k] += res.Errors
	}
	slices.SortStableFunc(order, func(a, b key) int { return a.c - b.c })
	fmt.Fprintf(w, "\nMedians of the rounds:\n\n")
	inProcessHead, inProcessRule := "", ""
	if both {
		inProcessHead, inProcessRule = " median share of the in-process ceiling |", "---:|"
	}
	fmt.Fprintln(w, "| case | c | per s (each round) | median per s | share (each round) | median share |"+inProcessHead+" errors | target |")
	fmt.Fprintln(w, "|---|---:|---|---:|---|---:|"+inProcessRule+"---:|---|")
	for _, k := range order {
		info := caseInfo[k.name]
		var each, eachShare []string
		for i, r := range rates[k] {
			each = append(each, thousands(r))
			eachShare = append(eachShare, fmt.Sprintf("%.1f%%", 100*shares[k][i]))
		}
		target := ""
		if info.target > 0 {
			target = verdict(info.target, median(shares[k]), errs[k])
		}
		if isCeiling(k.name) { // one run before each case of each round
			each = []string{fmt.Sprintf("%d runs, %s to %s", len(rates[k]), thousands(slices.Min(rates[k])),
				thousands(slices.Max(rates[k])))}
			eachShare = nil
		}
		inProcessShare := ""
		if both {
			inProcessShare = " |"
			if m := median(inProcess[k]); m >= 0 {
				inProcessShare = fmt.Sprintf(" %.1f%% |", 100*m)
			}
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %.1f%% |%s %d | %s |\n", info.title, k.c, strings.Join(each, " · "),
			thousands(median(rates[k])), strings.Join(eachShare, " · "), 100*median(shares[k]), inProcessShare, errs[k], target)
	}
}

func isCeiling(k string) bool { return k == caseCeiling || k == caseCeilingIn }

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

type errLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (l *errLog) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if len(l.first) < 5 {
		l.first = append(l.first, err.Error())
	}
}

// samples gathers latencies of successful units.
type samples struct {
	mu  sync.Mutex
	lat []time.Duration
}

func (s *samples) add(l []time.Duration) {
	s.mu.Lock()
	s.lat = append(s.lat, l...)
	s.mu.Unlock()
}

func (s *samples) result(r *caseResult, seconds float64) {
	slices.Sort(s.lat)
	n := len(s.lat)
	r.Done, r.Seconds = n, seconds
	if seconds > 0 {
		r.PerSec = float64(n) / seconds
	}
	if n > 0 {
		q := func(p float64) time.Duration { return s.lat[min(int(p*float64(n)), n-1)] }
		r.P50, r.P99 = q(0.50), q(0.99)
	}
}

// runLoad keeps c clients busy with unit, one unit after the other, and
// measures the units that complete within a window of duration. The window
// opens once warmup has passed and every client has finished at least one
// unit (or after warmup + maxWarmup), so units slower than the warm-up, such
// as sign-ins with 64 argon2id computations at once, are measured in a
// steady state. Errors are counted over the whole run, warm-up included.
func runLoad(ctx context.Context, c int, warmup, duration time.Duration, errs *errLog, cpu func() cpuUse, unit func(ctx context.Context, worker int) error) (*samples, float64, cpuUse) {
	const maxWarmup = 30 * time.Second
	start := time.Now()
	var from, end atomic.Int64 // UnixNano; 0 until the window opens
	var warmed atomic.Int64    // clients that have finished a unit
	opened := make(chan struct{})
	var used cpuUse
	go func() {
		defer close(opened)
		for ctx.Err() == nil {
			since := time.Since(start)
			if since >= warmup && (warmed.Load() >= int64(c) || since >= warmup+maxWarmup) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		before := cpu()
		now := time.Now()
		end.Store(now.Add(duration).UnixNano())
		from.Store(now.UnixNano())
		select {
		case <-time.After(duration):
		case <-ctx.Done():
		}
		used = cpu().sub(before)
	}()
	s := &samples{}
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			var mine []time.Duration
			first := true
			for ctx.Err() == nil {
				t0 := time.Now()
				if e := end.Load(); e != 0 && t0.UnixNano() >= e {
					break
				}
				err := unit(ctx, w)
				t1 := time.Now()
				if first {
					first = false
					warmed.Add(1)
				}
				if err != nil {
					if ctx.Err() == nil {
						errs.add(err)
					}
					continue
				}
				if f, e := from.Load(), end.Load(); f != 0 && t1.UnixNano() >= f && t1.UnixNano() <= e {
					mine = append(mine, t1.Sub(t0))
				}
			}
			s.add(mine)
		})
	}
	wg.Wait()
	<-opened
	return s, duration.Seconds(), used
}

func (e *env) runCase(ctx context.Context, cfg config, k string, c int) *caseResult {
	res := &caseResult{Case: k, C: c}
	errs := &errLog{}
	var s *samples
	var seconds float64
	switch k {
	case caseCeiling, caseCeilingIn:
		rt, url := "vrt_"+randomString(32), e.ceilings[k]
		s, seconds, res.CPU = runLoad(ctx, c, cfg.warmup, cfg.duration, errs, e.cpuNow, func(ctx context.Context, _ int) error {
			return e.ceiling(ctx, url, rt)
		})
	case caseRefresh:
		app := e.apps["refresh"]
		s, seconds, res.CPU = runLoad(ctx, c, cfg.warmup, cfg.duration, errs, e.cpuNow, func(ctx context.Context, w int) error {
			tok, err := e.refresh(ctx, app, e.chains[w])
			if err != nil {
				// A failed rotation may have left the chain used: start a
				// new one so the worker goes on (the error still counts).
				if pc, err2 := e.authorize(ctx, app, &e.users[w], modeFirstConsent); err2 == nil {
					if tok2, err2 := e.exchange(ctx, app, pc); err2 == nil {
						e.chains[w] = tok2.RefreshToken
					}
				}
				return err
			}
			e.chains[w] = tok.RefreshToken
			return nil
		})
	case caseES256, caseRS256:
		app := e.apps["es256"]
		if k == caseRS256 {
			app = e.apps["rs256"]
		}
		s, seconds, res.CPU, res.Note = e.runExchange(ctx, cfg, app, c, errs)
	case caseFlow, caseFlowSignIn:
		app, mode := e.apps["rs256"], modeSession
		if k == caseFlowSignIn {
			mode = modeSignIn
		}
		s, seconds, res.CPU = runLoad(ctx, c, cfg.warmup, cfg.duration, errs, e.cpuNow, func(ctx context.Context, w int) error {
			pc, err := e.authorize(ctx, app, &e.users[w], mode)
			if err != nil {
				return err
			}
			_, err = e.exchange(ctx, app, pc)
			return err
		})
		if k == caseFlow {
			res.Note = "one flow = GET /oauth/authorize, GET /oauth/consent (remembered: redirects at once), GET /oauth/authorize/callback, POST /oauth/token: 4 requests"
		} else {
			res.Note = "one flow = GET /oauth/authorize, GET /oauth/consent (-> sign-in), GET /signin, POST /signin (argon2id), GET /oauth/consent (remembered), GET /oauth/authorize/callback, POST /oauth/token: 7 requests, a new browser each time"
		}
	}
	s.result(res, seconds)
	res.Errors, res.FirstErrors = errs.n, errs.first
	return res
}

// runExchange measures code exchanges alone. Codes live 60 s and are single
// use, so they are minted in batches by e.producers clients (authorize ->
// remembered consent -> callback, each as its own signed-in user) while
// nothing is measured, then c clients redeem the batch while the clock
// runs; batches are sized so each is redeemed well within the codes'
// lifetime. Throughput is codes redeemed over the time spent redeeming.
func (e *env) runExchange(ctx context.Context, cfg config, app *appInfo, c int, errs *errLog) (*samples, float64, cpuUse, string) {
	mint := func(k int) ([]pendingCode, time.Duration) {
		began := time.Now()
		var left atomic.Int64
		left.Store(int64(k))
		var mu sync.Mutex
		codes := make([]pendingCode, 0, k)
		var wg sync.WaitGroup
		for p := range min(e.producers, len(e.users)) {
			wg.Go(func() {
				for left.Add(-1) >= 0 && ctx.Err() == nil {
					pc, err := e.authorize(ctx, app, &e.users[p], modeSession)
					if err != nil {
						errs.add(fmt.Errorf("minting a code: %w", err))
						continue
					}
					mu.Lock()
					codes = append(codes, pc)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return codes, time.Since(began)
	}
	redeem := func(codes []pendingCode, s *samples) time.Duration {
		began := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range c {
			wg.Go(func() {
				var mine []time.Duration
				for ctx.Err() == nil {
					i := int(next.Add(1) - 1)
					if i >= len(codes) {
						break
					}
					t0 := time.Now()
					if _, err := e.exchange(ctx, app, codes[i]); err != nil {
						errs.add(err)
						continue
					}
					mine = append(mine, time.Since(t0))
				}
				s.add(mine)
			})
		}
		wg.Wait()
		return time.Since(began)
	}
	rate := func(n int, d time.Duration) float64 { return float64(max(n, 1)) / max(d.Seconds(), 1e-3) }

	// Warm-up: a small batch, unmeasured, which also estimates the rates.
	warm := max(20*c, 200)
	if cfg.warmup == 0 {
		warm = 5 * c
	}
	codes, took := mint(warm)
	mintRate := rate(len(codes), took)
	redeemRate := rate(len(codes), redeem(codes, &samples{}))

	s := &samples{}
	var measured, minting time.Duration
	var used cpuUse
	total, batches := 0, 0
	// Minting gets at most -duration per case too, so a whole run stays
	// bounded: when minting is slower than redeeming, fewer seconds of
	// redeeming are measured (the note says how many).
	for measured < cfg.duration && minting < cfg.duration && total < cfg.maxCodes && ctx.Err() == nil {
		phase := min(cfg.duration-measured, 20*time.Second)
		k := int(redeemRate * phase.Seconds())
		k = min(k, int(mintRate*30)) // minted in at most ~30 s: every code redeemed well within 60 s
		k = min(k, int(mintRate*(cfg.duration-minting).Seconds())+1)
		k = max(k, 10*c)
		k = min(k, cfg.maxCodes-total)
		e.log.Info("minting codes", "app", app.kind, "n", k)
		codes, took := mint(k)
		minting += took
		mintRate = rate(len(codes), took)
		if len(codes) == 0 {
			break
		}
		e.log.Info("redeeming codes", "app", app.kind, "n", len(codes), "c", c)
		before := e.cpuNow()
		d := redeem(codes, s)
		used = used.add(e.cpuNow().sub(before))
		measured += d
		total += len(codes)
		batches++
		redeemRate = rate(len(codes), d)
	}
	note := fmt.Sprintf("%d codes redeemed in %d batch(es) over %.1f s of measurement; minting them (3 requests each, %d clients) took %.1f s more, at %s codes/s",
		total, batches, measured.Seconds(), min(e.producers, len(e.users)), minting.Seconds(), thousands(mintRate))
	switch {
	case measured >= cfg.duration:
	case total >= cfg.maxCodes:
		note += fmt.Sprintf(" (stopped at -max-codes %d before -duration)", cfg.maxCodes)
	case minting >= cfg.duration:
		note += " (stopped when minting had taken -duration)"
	}
	return s, measured.Seconds(), used, note
}
