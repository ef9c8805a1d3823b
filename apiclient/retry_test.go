package apiclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valethq/valet/apiclient"
	"github.com/valethq/valet/server"
)

// TestRateLimited fills a tiny bucket (3 calls, draining one a second): a
// client that may not retry gets the 429 with its Retry-After; one that may
// waits it out and succeeds.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *server.Config) { c.APIKeyLimit = server.RateLimit{Requests: 3, Per: 3 * time.Second} })
	ctx := context.Background()

	impatient := e.client(t, apiclient.WithRetries(0), apiclient.WithCallLimitPause(0))
	for range 3 {
		_, err := impatient.Account(ctx)
		must(t, err)
	}
	if used, limit := impatient.CallLimit(); used != 3 || limit != 3 {
		t.Errorf("CallLimit = %d/%d, want 3/3", used, limit)
	}
	_, err := impatient.Account(ctx)
	if !apiclient.IsRateLimited(err) {
		t.Fatalf("4th call: %v, want 429", err)
	}
	if ae := apiError(t, err); ae.Code != apiclient.CodeRateLimited || ae.RetryAfter != time.Second {
		t.Errorf("429 = %#v", ae)
	}

	// Another key of the same account shares the bucket.
	rec := newRecorder()
	patient := e.client(t, apiclient.WithAPIKey(e.owner.Email, e.apiKey(t)),
		apiclient.WithHTTPClient(rec.httpClient()), apiclient.WithCallLimitPause(0))
	start := time.Now()
	_, err = patient.Account(ctx)
	must(t, err)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("succeeded after %v, before the Retry-After", d)
	}
	if st := rec.statuses(); !slices.Equal(st, []int{429, 200}) {
		t.Errorf("statuses = %v, want [429 200]", st)
	}

	// A Retry-After beyond the bound is returned rather than waited out.
	bounded := e.client(t, apiclient.WithMaxRetryAfter(100*time.Millisecond), apiclient.WithCallLimitPause(0))
	for {
		_, err := bounded.Account(ctx)
		if err != nil {
			if !apiclient.IsRateLimited(err) {
				t.Fatalf("bounded: %v", err)
			}
			break
		}
	}
	// So is one the context's deadline could not cover, at once.
	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = e.client(t, apiclient.WithCallLimitPause(0)).Account(dctx)
	if !apiclient.IsRateLimited(err) || errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 450*time.Millisecond {
		t.Errorf("with a short deadline: %v after %v, want the 429 at once", err, time.Since(start))
	}
}

// TestCallLimitPause: once an answer says the bucket is full, the next
// call waits the pause first (a fake server, so the timing is exact).
func TestCallLimitPause(t *testing.T) {
	t.Parallel()
	var (
		calls atomic.Int32
		mu    sync.Mutex
		gaps  []time.Duration // between a call's arrival and the previous one's
		last  = time.Now()
	)
	gap := func(i int) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return gaps[i]
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		mu.Lock()
		gaps = append(gaps, time.Since(last))
		last = time.Now()
		mu.Unlock()
		used := "4"
		if n == 1 {
			used = "5"
		}
		w.Header().Set(apiclient.CallLimitHeader, used+"/5")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":1,"name":"acme"}`))
	}))
	defer hs.Close()
	c := newClient(t, hs.URL, apiclient.WithCallLimitPause(300*time.Millisecond))
	ctx := context.Background()
	for range 3 {
		_, err := c.Account(ctx)
		must(t, err)
	}
	if gap(1) < 290*time.Millisecond {
		t.Errorf("call after a full bucket came %v later, want the 300ms pause", gap(1))
	}
	if gap(2) > 250*time.Millisecond {
		t.Errorf("call after 4/5 came %v later, want no pause", gap(2))
	}
	if used, limit := c.CallLimit(); used != 4 || limit != 5 {
		t.Errorf("CallLimit = %d/%d", used, limit)
	}

	// The pause gives way to the context.
	_, err := c.Account(ctx) // 4/5: no pause
	must(t, err)
	calls.Store(0)
	_, err = c.Account(ctx) // answers 5/5
	must(t, err)
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	if _, err := c.Account(cctx); !errors.Is(err, context.Canceled) || time.Since(start) > 250*time.Millisecond {
		t.Errorf("cancelled during the pause: %v after %v", err, time.Since(start))
	}
}

// flaky is a front for the real server that fails its first n requests
// with status, then proxies.
type flaky struct {
	fails  atomic.Int32
	status atomic.Int32
	seen   atomic.Int32
	proxy  *httputil.ReverseProxy
}

func newFlaky(t *testing.T, target string) (*flaky, *httptest.Server) {
	u, err := url.Parse(target)
	must(t, err)
	f := &flaky{proxy: httputil.NewSingleHostReverseProxy(u)}
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	return f, hs
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.seen.Add(1)
	if f.fails.Add(-1) >= 0 {
		status := int(f.status.Load())
		if status == http.StatusInternalServerError {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(`{"error":{"code":"internal_error","msg":"An internal error occurred (request x)."}}`))
			return
		}
		http.Error(w, "<html>bad gateway</html>", status) // a proxy's page, not the API's JSON
		return
	}
	f.proxy.ServeHTTP(w, r)
}

func (f *flaky) failNext(n int, status int) {
	f.status.Store(int32(status))
	f.fails.Store(int32(n))
	f.seen.Store(0)
}

func TestRetry5xx(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f, front := newFlaky(t, e.hs.URL)
	c := newClient(t, front.URL, apiclient.WithAPIKey(e.owner.Email, e.key))
	ctx := context.Background()

	// GET: two failures, then through.
	for _, status := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusInternalServerError} {
		f.failNext(2, status)
		tk, err := c.Ticket(ctx, e.ticket.ID)
		if err != nil || tk.ID != e.ticket.ID {
			t.Fatalf("GET through two %ds: %v", status, err)
		}
		if n := f.seen.Load(); n != 3 {
			t.Errorf("GET with %d: %d requests, want 3", status, n)
		}
	}
	// PUT is idempotent too, and its body is sent again.
	f.failNext(1, http.StatusBadGateway)
	up, err := c.UpdateTicket(ctx, e.ticket.ID, apiclient.TicketUpdate{Subject: new("Retried")})
	if err != nil || up.Subject != "Retried" || f.seen.Load() != 2 {
		t.Errorf("PUT through a 502: %v, %d requests", err, f.seen.Load())
	}

	// POST is not retried: the server may have acted.
	f.failNext(1, http.StatusBadGateway)
	_, err = c.CreateCustomer(ctx, apiclient.NewCustomer{Name: "Once"})
	if ae := apiError(t, err); ae.StatusCode != 502 || ae.Code != "" || ae.Message != "Bad Gateway" {
		t.Errorf("POST 502 = %#v", ae)
	}
	if n := f.seen.Load(); n != 1 {
		t.Errorf("POST: %d requests, want 1", n)
	}

	// Retries are bounded: 1 + WithRetries.
	f.failNext(100, http.StatusServiceUnavailable)
	_, err = newClient(t, front.URL, apiclient.WithAPIKey(e.owner.Email, e.key), apiclient.WithRetries(2)).Account(ctx)
	if apiclient.StatusCode(err) != 503 || f.seen.Load() != 3 {
		t.Errorf("always 503: %v after %d requests, want 503 after 3", err, f.seen.Load())
	}
}

// TestRetryNetwork: a refused connection is retried for every method, as
// the request provably never arrived; the attempts stay bounded.
func TestRetryNetwork(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	addr := dead.URL
	dead.Close()
	rec := newRecorder()
	c := newClient(t, addr, apiclient.WithHTTPClient(rec.httpClient()), apiclient.WithAPIKey("", "vak_x"))
	ctx := context.Background()
	if _, err := c.Account(ctx); err == nil || apiclient.StatusCode(err) != 0 {
		t.Errorf("GET to a closed port: %v", err)
	}
	if n := rec.count(); n != 1+apiclient.DefaultRetries {
		t.Errorf("GET: %d attempts, want %d", n, 1+apiclient.DefaultRetries)
	}
	if _, err := c.CreateCustomer(ctx, apiclient.NewCustomer{Name: "x"}); err == nil {
		t.Error("POST to a closed port succeeded")
	}
	if n := rec.count(); n != 2*(1+apiclient.DefaultRetries) {
		t.Errorf("POST: %d attempts in all, want %d", n, 2*(1+apiclient.DefaultRetries))
	}
}

func TestContextCancellation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(t)

	// Cancelled before the call: no request.
	rec := newRecorder()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.client(t, apiclient.WithHTTPClient(rec.httpClient())).Account(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	for _, err := range c.Tickets(cancelled, apiclient.TicketListOptions{}) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("iterator with a cancelled context: %v", err)
		}
	}
	if rec.count() != 0 {
		t.Errorf("%d requests with a cancelled context", rec.count())
	}

	// A long poll ends with its context.
	ctx, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start := time.Now()
	_, err := c.EventsPage(ctx, apiclient.EventListOptions{After: 1 << 40, Wait: 20 * time.Second})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("long poll: %v after %v", err, time.Since(start))
	}

	// A backoff ends with its context, reporting both the failure and why
	// the retry was abandoned.
	f, front := newFlaky(t, e.hs.URL)
	f.failNext(100, http.StatusServiceUnavailable)
	slow := newClient(t, front.URL, apiclient.WithAPIKey(e.owner.Email, e.key), apiclient.WithBackoff(5*time.Second, 5*time.Second))
	ctx3, cancel3 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel3)
	start = time.Now()
	_, err = slow.Account(ctx3)
	if !errors.Is(err, context.Canceled) || apiclient.StatusCode(err) != 503 || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled backoff: %v after %v", err, time.Since(start))
	}
}
