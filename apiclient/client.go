package apiclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of a Client; each has an Option.
const (
	DefaultRetries = 3
	// DefaultBackoff is the first retry's delay; it doubles per retry up to
	// DefaultMaxBackoff, with jitter so that clients failed together by one
	// outage do not come back together.
	DefaultBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff = 8 * time.Second
	// DefaultMaxRetryAfter bounds how long a 429's Retry-After is waited
	// out; a longer one is returned as the error rather than silently
	// blocking the caller for minutes.
	DefaultMaxRetryAfter = 60 * time.Second
	// DefaultCallLimitPause is how long the client waits before its next
	// call once the call-limit header says the bucket is full. The server's
	// bucket drains continuously (one slot every 0.5 s with the API-key
	// default of 40/20 s, every 0.25 s for OAuth apps), while a 429 costs a
	// round trip and a Retry-After of at least a whole second, so a short
	// pause is both cheaper and sooner than earning the 429.
	DefaultCallLimitPause = 500 * time.Millisecond

	// CallLimitHeader carries the bucket's level after each call: "used/limit".
	CallLimitHeader = "X-Valet-Account-Api-Call-Limit"
)

// Client calls a valet server's /api/. It is safe for concurrent use.
type Client struct {
	base       string // scheme://host[/prefix] without a trailing slash
	hc         *http.Client
	userAgent  string
	authHeader string // Authorization for WithAPIKey, else ""
	src        TokenSource

	retries       int
	backoff       time.Duration
	maxBackoff    time.Duration
	maxRetryAfter time.Duration
	pause         time.Duration

	mu         sync.Mutex
	used       int // from the last answer's call-limit header
	limit      int
	pauseUntil time.Time // set when an answer said the bucket is full
}

// Option configures a Client made by New.
type Option func(*Client) error

// WithHTTPClient makes the client send its requests through hc (for its
// timeouts, proxy or TLS settings). With WithTokenSource, hc's transport is
// wrapped by a Transport; hc itself is not modified.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("apiclient: WithHTTPClient(nil)")
		}
		c.hc = hc
		return nil
	}
}

// WithTokenSource authenticates every call with a Bearer token from src,
// renewed through src after a 401 (see Transport). An OAuth access token
// (vat_) or an API key (vak_) can be sent this way.
func WithTokenSource(src TokenSource) Option {
	return func(c *Client) error {
		if src == nil {
			return errors.New("apiclient: WithTokenSource(nil)")
		}
		c.src = src
		return nil
	}
}

// WithAPIKey authenticates with an API key (vak_) for a private
// integration, as Gorgias does: Basic base64(email:key), where email is the
// key owner's. With an empty email the key is sent as a Bearer token.
func WithAPIKey(email, key string) Option {
	return func(c *Client) error {
		if key == "" {
			return errors.New("apiclient: WithAPIKey: empty key")
		}
		if email == "" {
			c.authHeader = "Bearer " + key
		} else {
			c.authHeader = "Basic " + base64.StdEncoding.EncodeToString([]byte(email+":"+key))
		}
		return nil
	}
}

// WithRetries sets how many times a failed call is retried after its first
// attempt (default DefaultRetries; 0 disables retries). See Client.do for
// which failures are retried.
func WithRetries(n int) Option {
	return func(c *Client) error {
		if n < 0 {
			return errors.New("apiclient: WithRetries: negative count")
		}
		c.retries = n
		return nil
	}
}

// WithBackoff sets the first retry's delay and the bound of the exponential
// backoff (defaults DefaultBackoff and DefaultMaxBackoff).
func WithBackoff(first, limit time.Duration) Option {
	return func(c *Client) error {
		if first <= 0 || limit < first {
			return errors.New("apiclient: WithBackoff: need 0 < first <= limit")
		}
		c.backoff, c.maxBackoff = first, limit
		return nil
	}
}

// WithMaxRetryAfter bounds how long a 429's Retry-After is waited out before
// retrying (default DefaultMaxRetryAfter); a longer wait is returned as the
// *Error, with RetryAfter set.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *Client) error {
		c.maxRetryAfter = d
		return nil
	}
}

// WithCallLimitPause sets how long the client waits before a call when the
// previous answer said the rate-limit bucket is full (default
// DefaultCallLimitPause; 0 never waits and lets the server answer 429).
func WithCallLimitPause(d time.Duration) Option {
	return func(c *Client) error {
		if d < 0 {
			return errors.New("apiclient: WithCallLimitPause: negative duration")
		}
		c.pause = d
		return nil
	}
}

// WithUserAgent sets the User-Agent header, so the server's operators can
// tell apps apart in their logs.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.userAgent = ua
		return nil
	}
}

// New returns a client of the valet server at baseURL (its issuer URL, such
// as https://help.example.com). Without WithAPIKey or WithTokenSource the
// client sends no credential, which only hc's transport could supply.
// Without WithHTTPClient it uses http.DefaultClient, which has no timeout:
// bound calls with their context.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("apiclient: base URL %q must be an absolute http(s) URL", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("apiclient: base URL %q must not have a query or fragment", baseURL)
	}
	c := &Client{
		base:          strings.TrimRight(u.String(), "/"),
		hc:            http.DefaultClient,
		userAgent:     "valet-apiclient",
		retries:       DefaultRetries,
		backoff:       DefaultBackoff,
		maxBackoff:    DefaultMaxBackoff,
		maxRetryAfter: DefaultMaxRetryAfter,
		pause:         DefaultCallLimitPause,
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.src != nil {
		if c.authHeader != "" {
			return nil, errors.New("apiclient: WithAPIKey and WithTokenSource are exclusive")
		}
		hc := *c.hc // a copy: the caller's client keeps its own transport
		hc.Transport = NewTransport(hc.Transport, c.src)
		c.hc = &hc
	}
	return c, nil
}

// HTTPClient returns the http.Client the client sends through; with
// WithTokenSource its transport injects and renews the token, so it can
// make calls this package has no method for.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// CallLimit returns the rate-limit bucket's level and capacity as the last
// answer reported them (X-Valet-Account-Api-Call-Limit); 0, 0 before any
// answer carried the header.
func (c *Client) CallLimit() (used, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.limit
}

// call is one API request.
type call struct {
	method  string
	path    string // under the base URL, starting with /api/
	query   url.Values
	body    any // JSON-encoded when not nil
	ifMatch string
	out     any // decoded from a 2xx body when not nil
}

// do sends cl and decodes the answer into cl.out, retrying:
//   - 429 after its Retry-After (at most maxRetryAfter), for every method:
//     the limiter refuses before the handler runs, so nothing was done;
//   - 500, 502, 503, 504 and network errors with backoff, for GET, PUT and
//     DELETE, which the API makes idempotent (500 too: the API answers it
//     for an outage, a database gone away, as much as for a bug);
//   - POST only when the connection could not even be made, which proves
//     the request was not processed;
//   - nothing else: repeating a 4xx cannot help.
//
// Any status other than 2xx is returned as an *Error.
func (c *Client) do(ctx context.Context, cl call) error {
	var body []byte
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("apiclient: encode %s %s: %w", cl.method, cl.path, err)
		}
	}
	u := c.base + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	idempotent := cl.method != http.MethodPost
	for attempt := 0; ; attempt++ {
		if err := c.pace(ctx); err != nil {
			return err
		}
		err := c.send(ctx, cl, u, body)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || attempt >= c.retries {
			return err
		}
		var apiErr *Error
		isAPI := errors.As(err, &apiErr)
		var wait time.Duration
		switch {
		case isAPI && apiErr.StatusCode == http.StatusTooManyRequests:
			wait = apiErr.RetryAfter
			if wait <= 0 { // not from valet's limiter: a proxy's, say
				wait = c.backoffFor(attempt)
			}
		case isAPI && retryableStatus(apiErr.StatusCode) && idempotent:
			// A 503's Retry-After, when given, beats guessing.
			wait = max(apiErr.RetryAfter, c.backoffFor(attempt))
		case !isAPI && retryableNetError(err, idempotent):
			wait = c.backoffFor(attempt)
		default:
			return err
		}
		if wait > c.maxRetryAfter {
			return err
		}
		// A wait the deadline cannot cover would only turn a clear error
		// into "context deadline exceeded".
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err
		}
		if werr := sleep(ctx, wait); werr != nil {
			return fmt.Errorf("%w; retry abandoned: %w", err, werr)
		}
	}
}

// send makes one attempt.
func (c *Client) send(ctx context.Context, cl call, u string, body []byte) error {
	var rd io.Reader
	if body != nil {
		// A bytes.Reader gives the request a GetBody, which Transport
		// needs to replay the body after renewing a token.
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, rd)
	if err != nil {
		return fmt.Errorf("apiclient: %s %s: %w", cl.method, cl.path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if c.authHeader != "" {
		req.Header.Set("Authorization", c.authHeader)
	}
	if cl.ifMatch != "" {
		req.Header.Set("If-Match", cl.ifMatch)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		// url.Error adds nothing a caller needs but hides the cause from
		// a quick look; keep the method and path in our own words.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("apiclient: %s %s: %w", cl.method, cl.path, err)
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
		res.Body.Close()
	}()
	c.noteCallLimit(res.Header)
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return parseError(cl.method, cl.path, res)
	}
	if cl.out != nil && res.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(res.Body).Decode(cl.out); err != nil {
			return fmt.Errorf("apiclient: %s %s: decode answer: %w", cl.method, cl.path, err)
		}
	}
	return nil
}

// noteCallLimit remembers the bucket's level reported by an answer.
func (c *Client) noteCallLimit(h http.Header) {
	v := h.Get(CallLimitHeader)
	if v == "" {
		return
	}
	us, ls, ok := strings.Cut(v, "/")
	used, err1 := strconv.Atoi(strings.TrimSpace(us))
	limit, err2 := strconv.Atoi(strings.TrimSpace(ls))
	if !ok || err1 != nil || err2 != nil || limit <= 0 {
		return
	}
	c.mu.Lock()
	c.used, c.limit = used, limit
	if used >= limit && c.pause > 0 {
		c.pauseUntil = time.Now().Add(c.pause)
	}
	c.mu.Unlock()
}

// pace holds a call until c.pause after the last answer that said the
// bucket was full. Measuring from that answer, rather than pausing per
// call, makes the calls waiting together wait once rather than in turn, and
// adds nothing after a 429's Retry-After (always longer). If the bucket has
// not drained enough meanwhile, the server's 429 and Retry-After take over.
func (c *Client) pace(ctx context.Context) error {
	c.mu.Lock()
	d := time.Until(c.pauseUntil)
	c.mu.Unlock()
	return sleep(ctx, d)
}

// backoffFor returns the delay before retry number attempt+1: exponential,
// bounded, with "equal jitter" (half fixed, half random) so it never
// collapses to zero.
func (c *Client) backoffFor(attempt int) time.Duration {
	d := c.backoff << min(attempt, 30)
	if d <= 0 || d > c.maxBackoff {
		d = c.maxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryableNetError reports whether a failed round trip may be repeated:
// any transport failure for an idempotent request, and for others only a
// failure to connect, since then the server never saw the request. Token
// errors are never retried: the TokenSource already had its chance.
func retryableNetError(err error, idempotent bool) bool {
	var te *TokenError
	if errors.As(err, &te) {
		return false
	}
	if idempotent {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// get, post, put and del are do for each method.
func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	return c.do(ctx, call{method: http.MethodGet, path: path, query: q, out: out})
}

func (c *Client) post(ctx context.Context, path string, body, out any) error {
	return c.do(ctx, call{method: http.MethodPost, path: path, body: body, out: out})
}

func (c *Client) put(ctx context.Context, path, ifMatch string, body, out any) error {
	return c.do(ctx, call{method: http.MethodPut, path: path, body: body, ifMatch: ifMatch, out: out})
}

func (c *Client) del(ctx context.Context, path string, body any) error {
	return c.do(ctx, call{method: http.MethodDelete, path: path, body: body})
}

// idPath joins a collection path and an id.
func idPath(collection string, id int64) string {
	return collection + "/" + strconv.FormatInt(id, 10)
}
