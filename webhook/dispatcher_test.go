package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/sqlstore/storetest"
)

var ctx = context.Background()

// receiver is a webhook endpoint that checks every request's signature
// and headers and counts what it accepted.
type receiver struct {
	t     *testing.T
	clock valet.Clock
	srv   *httptest.Server

	mu         sync.Mutex
	secret     string
	mode       string // ok, 503, 500, hangup, redirect
	calls      int
	accepted   map[int64]int // event id -> 2xx answers
	payloads   []Payload
	redirected int
}

func newReceiver(t *testing.T, clock valet.Clock) *receiver {
	r := &receiver{t: t, clock: clock, mode: "ok", accepted: map[int64]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks", r.serve)
	mux.HandleFunc("/elsewhere", func(http.ResponseWriter, *http.Request) {
		r.mu.Lock()
		r.redirected++
		r.mu.Unlock()
	})
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) set(mode string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = mode
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("receiver: %v", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if err := Verify(r.secret, req.Header.Get(SignatureHeader), body, r.clock.Now(), time.Minute); err != nil {
		r.t.Errorf("receiver: %v (header %q)", err, req.Header.Get(SignatureHeader))
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		r.t.Errorf("receiver: payload %s: %v", body, err)
	}
	h := req.Header
	if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != UserAgent ||
		h.Get("X-Valet-Event-Id") != strconv.FormatInt(p.ID, 10) || h.Get("X-Valet-Event-Type") != p.Type ||
		h.Get("X-Valet-Integration-Id") == "" || h.Get("X-Valet-Delivery-Id") == "" {
		r.t.Errorf("receiver: headers %v for %s", h, body)
	}
	switch r.mode {
	case "ok":
		r.accepted[p.ID]++
		r.payloads = append(r.payloads, p)
		w.WriteHeader(http.StatusNoContent)
	case "503":
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	case "500":
		http.Error(w, "broken", http.StatusInternalServerError)
	case "hangup":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	case "redirect":
		http.Redirect(w, req, "/elsewhere", http.StatusFound)
	}
}

// env is a helpdesk account on an SQLite file with one integration pointed
// at a receiver, all on a settable clock.
type env struct {
	t        *testing.T
	path     string
	clock    *storetest.Clock
	store    *sqlstore.Store
	account  *valet.Account
	customer *valet.Customer
	in       *valet.Integration
	recv     *receiver
}

func newEnv(t *testing.T, triggers ...string) *env {
	e := &env{t: t, path: filepath.Join(t.TempDir(), "valet.db"), clock: storetest.NewClock()}
	e.store = e.open()
	e.recv = newReceiver(t, e.clock)
	e.account = &valet.Account{Name: "acme", DisplayName: "ACME"}
	must(t, e.store.CreateAccount(ctx, e.account))
	e.customer = &valet.Customer{AccountID: e.account.ID, Email: "c@acme.test", Name: "C"}
	must(t, e.store.CreateCustomer(ctx, e.customer))
	on := map[string]bool{}
	for _, typ := range triggers {
		on[typ] = true
	}
	if len(on) == 0 {
		on = map[string]bool{valet.EventTicketCreated: true, valet.EventTicketUpdated: true, valet.EventTicketMessageCreated: true}
	}
	// The query string is the receiver's own business (a token, say): it
	// must survive, and never appear in the delivery log.
	e.in = &valet.Integration{AccountID: e.account.ID, Name: "Receiver",
		HTTP: valet.IntegrationHTTP{URL: e.recv.srv.URL + "/hooks?token=receivers-own", Triggers: on}}
	secret, err := e.store.CreateIntegration(ctx, e.in)
	must(t, err)
	e.recv.secret = secret
	return e
}

// open opens the environment's database, as a (re)started node would.
func (e *env) open() *sqlstore.Store {
	return sqltest.OpenSQLiteFile(e.t, e.path, sqlstore.WithClock(e.clock))
}

func (e *env) dispatcher(cfg Config) *Dispatcher {
	cfg.Clock = e.clock
	cfg.AllowPrivate = true // the receiver is an httptest server on loopback
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return New(e.store, cfg)
}

func (e *env) newTicket(subject string) *valet.Ticket {
	e.t.Helper()
	tk := &valet.Ticket{AccountID: e.account.ID, Subject: subject, Customer: valet.PersonRef{ID: e.customer.ID}}
	must(e.t, e.store.CreateTicket(ctx, tk, []*valet.Message{{Public: true, BodyText: "About " + subject}}))
	return tk
}

// events returns the ids of the account's events after the integration's
// cursor that it subscribes to.
func (e *env) events() []int64 {
	e.t.Helper()
	var ids []int64
	after := e.in.LastEventID
	for {
		evs, err := e.store.ListEvents(ctx, e.account.ID, valet.EventFilter{After: after, Limit: valet.MaxLimit})
		must(e.t, err)
		if len(evs) == 0 {
			return ids
		}
		for _, ev := range evs {
			if e.in.Subscribes(ev.Type) {
				ids = append(ids, ev.ID)
			}
		}
		after = evs[len(evs)-1].ID
	}
}

func (e *env) deliveries() []valet.Delivery {
	e.t.Helper()
	ds, err := e.store.ListDeliveries(ctx, e.account.ID, e.in.ID, valet.MaxLimit)
	must(e.t, err)
	return ds
}

func (e *env) integration() *valet.Integration {
	e.t.Helper()
	in, err := e.store.FindIntegration(ctx, e.account.ID, e.in.ID)
	must(e.t, err)
	return in
}

// wantExactlyOnce checks that the receiver accepted every event once.
func (e *env) wantExactlyOnce() {
	e.t.Helper()
	want := e.events()
	e.recv.mu.Lock()
	defer e.recv.mu.Unlock()
	if len(e.recv.accepted) != len(want) {
		e.t.Fatalf("receiver accepted %d events, want %d", len(e.recv.accepted), len(want))
	}
	for _, id := range want {
		if n := e.recv.accepted[id]; n != 1 {
			e.t.Fatalf("event %d accepted %d times", id, n)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func runOnce(t *testing.T, d *Dispatcher) int {
	t.Helper()
	n, err := d.RunOnce(ctx)
	must(t, err)
	return n
}

func TestDeliverSigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tk := e.newTicket("Printer on fire")
	e.newTicket("Second")
	_, err := e.store.UpdateTicket(ctx, e.account.ID, tk.ID, func(t *valet.Ticket) error { t.Status = valet.StatusClosed; return nil })
	must(t, err)
	d := e.dispatcher(Config{})
	if n := runOnce(t, d); n != 5 {
		t.Fatalf("sent %d, want 5", n)
	}
	e.wantExactlyOnce()
	if n := runOnce(t, d); n != 0 {
		t.Fatalf("sent %d again", n)
	}
	for _, dl := range e.deliveries() {
		if dl.Status != valet.DeliveryDelivered || dl.Attempts != 1 || dl.LastStatusCode != http.StatusNoContent {
			t.Fatalf("delivery %+v", dl)
		}
	}
	var created *Payload
	for i, p := range e.recv.payloads {
		if p.Account != "acme" || p.CreatedDatetime.IsZero() || !json.Valid(p.Data) {
			t.Fatalf("payload %+v", p)
		}
		if p.Type == valet.EventTicketCreated && p.ObjectID == tk.ID {
			created = &e.recv.payloads[i]
		}
	}
	if created == nil || created.ObjectType != "Ticket" || !strings.Contains(string(created.Data), "Printer on fire") {
		t.Fatalf("ticket-created payload %+v", created)
	}
}

// TestRestartExactlyOnce is issue 4's webhook story: the receiver is down
// (errors, then hanging up) while the helpdesk restarts; afterwards every
// event arrives, each exactly once, signed.
func TestRestartExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 5 {
		e.newTicket(fmt.Sprint("before ", i))
	}
	e.recv.set("503")
	d := e.dispatcher(Config{BatchSize: 4, Concurrency: 2})
	if n := runOnce(t, d); n != 4 {
		t.Fatalf("sent %d, want 4", n)
	}
	e.recv.set("hangup")
	if n := runOnce(t, d); n != 4 {
		t.Fatalf("sent %d, want 4", n)
	}
	failed := 0
	for _, dl := range e.deliveries() {
		if dl.Attempts == 1 {
			failed++
			if dl.Status != valet.DeliveryPending || dl.LastError == "" || strings.Contains(dl.LastError, "receivers-own") ||
				strings.Contains(dl.LastError, e.recv.secret) || !dl.NextAttempt.After(e.clock.Now()) {
				t.Fatalf("failed delivery %+v", dl)
			}
			if dl.LastStatusCode != 0 && dl.LastStatusCode != http.StatusServiceUnavailable {
				t.Fatalf("failed delivery %+v", dl)
			}
		}
	}
	if failed != 8 {
		t.Fatalf("%d failed deliveries, want 8", failed)
	}

	// The helpdesk restarts; events keep coming meanwhile.
	must(t, e.store.Close())
	e.store = e.open()
	for i := range 2 {
		e.newTicket(fmt.Sprint("after ", i))
	}
	e.recv.set("ok")
	e.clock.Advance(time.Minute) // past the first backoff (10 s at most)
	d = e.dispatcher(Config{BatchSize: 4, Concurrency: 2})
	for range 20 {
		if runOnce(t, d) == 0 {
			break
		}
	}
	e.wantExactlyOnce()
	if want := len(e.events()) + 8; e.recv.calls != want {
		t.Fatalf("receiver saw %d requests, want %d", e.recv.calls, want)
	}
	for _, dl := range e.deliveries() {
		if dl.Status != valet.DeliveryDelivered {
			t.Fatalf("delivery %+v", dl)
		}
	}
}

// TestRetryUntilWindowEnds follows one delivery to a receiver that never
// recovers: each wait is drawn below a doubling ceiling, and it gives up
// once the next attempt would fall past the retry window.
func TestRetryUntilWindowEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, valet.EventTicketCreated)
	e.recv.set("503")
	e.newTicket("doomed")
	d := e.dispatcher(Config{Jitter: func(n int64) int64 { return n / 2 }})
	var waits []time.Duration
	for attempt := 1; ; attempt++ {
		if n := runOnce(t, d); n != 1 {
			t.Fatalf("attempt %d: sent %d", attempt, n)
		}
		dl := e.deliveries()[0]
		if dl.Attempts != attempt || dl.LastStatusCode != 503 {
			t.Fatalf("attempt %d: %+v", attempt, dl)
		}
		if dl.Status == valet.DeliveryFailed {
			if !e.clock.Now().Add(backoff(attempt, d.cfg.Jitter)).After(dl.CreatedDatetime.Add(valet.DeliveryRetryWindow)) {
				t.Fatalf("gave up at attempt %d with time left", attempt)
			}
			break
		}
		waits = append(waits, dl.NextAttempt.Sub(e.clock.Now()))
		// Not due before its time.
		if n := runOnce(t, d); n != 0 {
			t.Fatalf("attempt %d: retried early", attempt)
		}
		e.clock.Advance(dl.NextAttempt.Sub(e.clock.Now()))
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second}
	for i, w := range want {
		if waits[i] != w {
			t.Fatalf("waits %v, want to start %v", waits, want)
		}
	}
	if last := waits[len(waits)-1]; last != 30*time.Minute {
		t.Fatalf("last wait %v, want the cap's half", last)
	}
	if n := len(waits) + 1; n < 40 || n > 60 {
		t.Fatalf("%d attempts in 24 h", n)
	}
	// Fewer than 100 failures: still active.
	if in := e.integration(); in.Status != valet.IntegrationActive || in.ConsecutiveFailures != len(waits)+1 {
		t.Fatalf("integration %+v", in)
	}
}

func TestDisabledAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 60 {
		e.newTicket(fmt.Sprint("t", i))
	}
	e.recv.set("500")
	d := e.dispatcher(Config{BatchSize: 50})
	for range 10 {
		if runOnce(t, d) == 0 {
			break
		}
		e.clock.Advance(time.Minute)
	}
	in := e.integration()
	if in.Status != valet.IntegrationDisabled || in.ConsecutiveFailures != valet.MaxConsecutiveFailures || in.DisabledDatetime == nil {
		t.Fatalf("integration %+v", in)
	}
	if e.recv.calls != valet.MaxConsecutiveFailures {
		t.Fatalf("receiver saw %d requests, want %d", e.recv.calls, valet.MaxConsecutiveFailures)
	}
	for _, dl := range e.deliveries() {
		if dl.Status != valet.DeliveryFailed {
			t.Fatalf("delivery of a disabled integration %+v", dl)
		}
	}
	// Re-enabled, it delivers what happens next.
	e.recv.set("ok")
	in.Status = valet.IntegrationActive
	must(t, e.store.UpdateIntegration(ctx, in))
	e.in = in
	e.newTicket("back")
	if n := runOnce(t, d); n != 2 {
		t.Fatalf("sent %d after re-enabling", n)
	}
	e.wantExactlyOnce()
}

func TestNoRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, valet.EventTicketCreated)
	e.recv.set("redirect")
	e.newTicket("moved")
	runOnce(t, e.dispatcher(Config{}))
	dl := e.deliveries()[0]
	if dl.Status != valet.DeliveryPending || dl.LastStatusCode != http.StatusFound || !strings.Contains(dl.LastError, "redirect") {
		t.Fatalf("delivery %+v", dl)
	}
	if e.recv.redirected != 0 {
		t.Fatal("the redirect was followed")
	}
	// Not even with a client of the caller's.
	e.clock.Advance(time.Minute)
	runOnce(t, New(e.store, Config{Client: &http.Client{}, Clock: e.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	if dl := e.deliveries()[0]; dl.Attempts != 2 || e.recv.redirected != 0 {
		t.Fatalf("redirect followed with a given client: %+v", dl)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.dispatcher(Config{PollInterval: 10 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx) }()
	e.newTicket("live")
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.recv.mu.Lock()
		n := len(e.recv.accepted)
		e.recv.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run delivered %d of 2 events in 5 s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	e.wantExactlyOnce()
}

func TestCheckAddress(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		addr                 string
		public, allowPrivate bool // allowed by default, allowed with AllowPrivate
	}{
		{"93.184.216.34:443", true, true},
		{"[2606:2800:220:1:248:1893:25c8:1946]:443", true, true},
		{"127.0.0.1:80", false, true},
		{"[::1]:443", false, true},
		{"[::ffff:127.0.0.1]:80", false, true},
		{"10.0.0.1:443", false, true},
		{"172.16.5.4:443", false, true},
		{"192.168.1.1:80", false, true},
		{"[fd00::1]:443", false, true},
		{"169.254.169.254:80", false, false},
		{"[fe80::1]:80", false, false},
		{"0.0.0.0:80", false, false},
		{"224.0.0.1:80", false, false},
	} {
		if err := checkAddress(c.addr, false); (err == nil) != c.public {
			t.Errorf("%s by default: %v", c.addr, err)
		}
		if err := checkAddress(c.addr, true); (err == nil) != c.allowPrivate {
			t.Errorf("%s with AllowPrivate: %v", c.addr, err)
		}
	}
}

// TestNoLoopbackByDefault: the default dispatcher does not deliver to a
// receiver on loopback; the attempt fails and says why.
func TestNoLoopbackByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.newTicket("Hello")
	d := New(e.store, Config{Clock: e.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	runOnce(t, d)
	e.recv.mu.Lock()
	calls := e.recv.calls
	e.recv.mu.Unlock()
	if calls != 0 {
		t.Fatalf("the loopback receiver got %d requests", calls)
	}
	list, err := e.store.ListDeliveries(ctx, e.account.ID, e.in.ID, 10)
	must(t, err)
	// Refused for good: trying again would be refused again.
	if len(list) == 0 || !strings.Contains(list[0].LastError, "loopback or private") || list[0].Status != valet.DeliveryFailed ||
		list[0].Attempts != 1 {
		t.Fatalf("deliveries: %+v", list)
	}
}
