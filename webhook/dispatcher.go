package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/valethq/valet"
)

// UserAgent identifies the dispatcher's requests.
const UserAgent = "valet-webhooks/1"

// Payload is the JSON body of a delivery: the event, named as the events API
// names it. ID is the event id, the same in every attempt and the key
// receivers de-duplicate by.
type Payload struct {
	ID              int64           `json:"id"`
	Type            string          `json:"type"`
	Account         string          `json:"account"`
	ObjectType      string          `json:"object_type"`
	ObjectID        int64           `json:"object_id"`
	CreatedDatetime time.Time       `json:"created_datetime"`
	Data            json.RawMessage `json:"data"`
}

// Backoff bounds: the first retry within BackoffBase, each next ceiling
// doubling up to BackoffMax, for valet.DeliveryRetryWindow in all.
const (
	BackoffBase = 10 * time.Second
	BackoffMax  = time.Hour
	// backoffMin keeps full jitter from retrying a failing receiver at once.
	backoffMin = time.Second
)

// Config tunes a Dispatcher; the zero value of each field means its default.
type Config struct {
	// Client sends the requests. Default: a client with Timeout whose
	// dialer refuses link-local addresses (cloud metadata endpoints) and,
	// unless AllowPrivate, loopback and private ones. A given client is
	// copied and made not to follow redirects.
	Client *http.Client
	// AllowPrivate lets the default client deliver to loopback and
	// private addresses: a receiver on the same host or network (the
	// demo's hub, development). Off, an app that may register webhooks
	// cannot use valet to reach, and through the delivery log probe, the
	// services beside it.
	AllowPrivate bool
	// Timeout bounds one attempt when Client is nil. Default 10 s.
	Timeout time.Duration
	// Clock stamps signatures and schedules retries; share the store's in
	// tests. Default valet.SystemClock.
	Clock valet.Clock
	// Logger records failed attempts and store errors. Default slog.Default().
	Logger *slog.Logger
	// BatchSize is how many deliveries one round claims. Default 50.
	BatchSize int
	// Concurrency is how many requests are in flight at once. Default 8.
	Concurrency int
	// Lease is how long a claimed delivery is reserved for this node; it
	// must outlast a whole batch (BatchSize/Concurrency rounds of Timeout).
	// Default 5 min.
	Lease time.Duration
	// PollInterval is the pause between rounds that found nothing to do.
	// Default 1 s.
	PollInterval time.Duration
	// EnqueueLimit is how many events per integration one round turns into
	// deliveries. Default 100.
	EnqueueLimit int
	// Jitter returns a random number in [0, n); default math/rand/v2's
	// Int64N. Tests make it deterministic.
	Jitter func(n int64) int64
}

// Dispatcher sends the outbox's deliveries. Run it on every node: the
// store's leases share the work out.
type Dispatcher struct {
	store  valet.IntegrationService
	cfg    Config
	client *http.Client
	log    *slog.Logger
}

// New returns a dispatcher over store with cfg's defaults filled in.
func New(store valet.IntegrationService, cfg Config) *Dispatcher {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = valet.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 5 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.EnqueueLimit <= 0 {
		cfg.EnqueueLimit = 100
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Int64N
	}
	var client http.Client
	if cfg.Client != nil {
		client = *cfg.Client
	} else {
		client = http.Client{Timeout: cfg.Timeout, Transport: newTransport(cfg.Concurrency, cfg.AllowPrivate)}
	}
	// A redirect is an answer, not a delivery: following it would send the
	// signed event to a URL nobody registered.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Dispatcher{store: store, cfg: cfg, client: &client, log: cfg.Logger.With("component", "webhook")}
}

// NewDispatcher is New.
func NewDispatcher(store valet.IntegrationService, cfg Config) *Dispatcher { return New(store, cfg) }

func newTransport(conns int, allowPrivate bool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error { return checkAddress(address, allowPrivate) }}
	t.DialContext = dialer.DialContext
	t.Proxy = nil // the address checked must be the receiver's, not a proxy's
	t.MaxIdleConnsPerHost = conns
	return t
}

// checkAddress keeps webhooks away from link-local addresses, where cloud
// providers serve instance metadata and credentials, and unless
// allowPrivate from loopback and private ones: anyone allowed to register
// a webhook could otherwise reach them and read the answers in the
// delivery log. It checks the address actually dialled, after DNS, so a
// name that resolves there (or is made to, later) is refused too.
func checkAddress(address string, allowPrivate bool) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil || valet.WebhookNeverDelivered(ip):
		return fmt.Errorf("%w: address %s is not allowed", errAddressRefused, host)
	case !allowPrivate && (ip.Unmap().IsLoopback() || ip.Unmap().IsPrivate()):
		return fmt.Errorf("%w: address %s is loopback or private, which this server does not deliver to (--webhook-allow-private)", errAddressRefused, host)
	}
	return nil
}

// errAddressRefused marks a delivery checkAddress refused: trying again
// would be refused again, so the delivery gives up at once instead of
// retrying for the whole window.
var errAddressRefused = errors.New("webhook")

// Run delivers until ctx ends, then returns nil. A round that found work is
// followed at once by the next; an idle or failed one waits PollInterval.
// Attempts cut short by ctx are not recorded: their leases run out and
// they are sent again later.
func (d *Dispatcher) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		enqueued, claimed, _, err := d.round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := d.cfg.PollInterval
		if err != nil {
			d.log.Error("webhook round failed", "err", err)
		} else if enqueued > 0 || claimed == d.cfg.BatchSize {
			wait = 0
		}
		timer.Reset(wait)
	}
}

// RunOnce makes one round: turns new events into deliveries, claims up to
// BatchSize due ones, sends them and records the results. It returns how
// many attempts it recorded.
func (d *Dispatcher) RunOnce(ctx context.Context) (sent int, err error) {
	_, _, sent, err = d.round(ctx)
	return sent, err
}

func (d *Dispatcher) round(ctx context.Context) (enqueued, claimed, sent int, err error) {
	enqueued, err = d.store.EnqueueDeliveries(ctx, d.cfg.EnqueueLimit)
	if err != nil {
		return 0, 0, 0, err
	}
	jobs, err := d.store.ClaimDeliveries(ctx, d.cfg.BatchSize, d.cfg.Lease)
	if err != nil {
		return enqueued, 0, 0, err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, d.cfg.Concurrency)
	)
	for _, job := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r := d.attempt(ctx, job)
			if !r.OK && ctx.Err() != nil {
				return // shutting down: not the receiver's failure
			}
			// A finished attempt is recorded even while shutting down, or
			// it would be sent again.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			err := d.store.CompleteDelivery(cctx, r)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && valet.ErrorCode(err) != valet.ENOTFOUND { // deleted meanwhile
				errs = append(errs, err)
				return
			}
			sent++
		})
	}
	wg.Wait()
	return enqueued, len(jobs), sent, errors.Join(errs...)
}

// attempt sends job once and says what became of it.
func (d *Dispatcher) attempt(ctx context.Context, job valet.DeliveryJob) valet.DeliveryResult {
	r := valet.DeliveryResult{DeliveryID: job.ID}
	now := d.cfg.Clock.Now()
	status, err := d.send(ctx, job, now)
	r.StatusCode = status
	if err == nil {
		r.OK = true
		return r
	}
	r.Error = err.Error()
	next := now.Add(d.backoff(job.Attempts + 1))
	if !next.After(job.CreatedDatetime.Add(valet.DeliveryRetryWindow)) && !errors.Is(err, errAddressRefused) {
		r.NextAttempt = next
	}
	if ctx.Err() == nil {
		d.log.Warn("webhook delivery failed", "delivery_id", job.ID, "integration_id", job.IntegrationID,
			"event_id", job.EventID, "attempt", job.Attempts+1, "status", status, "err", r.Error,
			"giving_up", r.NextAttempt.IsZero())
	}
	return r
}

// send posts the event and returns the answer's status (0 without one) and
// an error unless it was 2xx. Errors are short and never carry the URL,
// whose query may hold the receiver's own token.
func (d *Dispatcher) send(ctx context.Context, job valet.DeliveryJob, now time.Time) (int, error) {
	data := job.Event.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	body, err := json.Marshal(Payload{ID: job.Event.ID, Type: job.Event.Type, Account: job.AccountName,
		ObjectType: job.Event.ObjectType, ObjectID: job.Event.ObjectID,
		CreatedDatetime: job.Event.CreatedDatetime, Data: data})
	if err != nil {
		return 0, fmt.Errorf("encoding the event: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, job.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("invalid URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("X-Valet-Event-Id", strconv.FormatInt(job.Event.ID, 10))
	req.Header.Set("X-Valet-Event-Type", job.Event.Type)
	req.Header.Set("X-Valet-Integration-Id", strconv.FormatInt(job.IntegrationID, 10))
	req.Header.Set("X-Valet-Delivery-Id", strconv.FormatInt(job.ID, 10))
	req.Header.Set(SignatureHeader, Sign(job.Secret, now, body))
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return 0, errors.New("timed out")
		}
		if errors.Is(err, errAddressRefused) {
			return 0, err // the dial's error names the address, not the URL
		}
		return 0, errors.New(truncate(err.Error(), 200))
	}
	// Draining a little lets the connection be reused; a receiver has no
	// reason to answer at length.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, fmt.Errorf("HTTP %s (redirects are not followed)", resp.Status)
	}
	return resp.StatusCode, fmt.Errorf("HTTP %s", truncate(resp.Status, 100))
}

// backoff is the wait before the next attempt after attempt failures:
// full jitter (a uniform draw below the ceiling, so that receivers coming
// back are not hit by every sender at once) under a ceiling of BackoffBase
// doubling per attempt, capped at BackoffMax, and never under a second.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	return backoff(attempt, d.cfg.Jitter)
}

func backoff(attempt int, jitter func(int64) int64) time.Duration {
	ceiling := BackoffBase
	for i := 1; i < attempt && ceiling < BackoffMax; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, BackoffMax)
	return max(time.Duration(jitter(int64(ceiling))), backoffMin)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
