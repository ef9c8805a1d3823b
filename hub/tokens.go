package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/valethq/valet"
	"github.com/valethq/valet/apiclient"
)

// ErrRevoked is returned for a connection the helpdesk no longer honours:
// it refused the refresh token, or refused a token fresh from a refresh. It
// needs a Reconnect; nothing retries it.
var ErrRevoked = errors.New("hub: the helpdesk revoked this connection; reconnect it")

// TokensConfig tunes Tokens; the zero value of a field means its default.
type TokensConfig struct {
	// LeaseTTL bounds how long a process may hold a connection's refresh
	// lease; a process that dies holding it blocks refreshes that long.
	LeaseTTL time.Duration // 30 s
	// Early is how long before expiry the background refresher renews.
	Early time.Duration // 5 min
	// Margin is how much life a token must have left to be handed out.
	Margin time.Duration // 30 s
	// FreshWindow: a 401 for a token refreshed less than this ago means
	// the grant is gone, not that the token aged.
	FreshWindow time.Duration // 1 min
	// WaitPoll is how often a process waiting for another's refresh looks.
	WaitPoll time.Duration // 20 ms
	// Concurrency bounds the background refresher's parallel refreshes.
	Concurrency int // 8
}

func (c *TokensConfig) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.LeaseTTL, 30*time.Second)
	set(&c.Early, 5*time.Minute)
	set(&c.Margin, 30*time.Second)
	set(&c.FreshWindow, time.Minute)
	set(&c.WaitPoll, 20*time.Millisecond)
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
}

// Tokens hands out a connection's access token and renews it exactly once
// per connection however many goroutines and hub processes ask at once:
// within a process callers with the same need share one flight and
// refreshes of one connection take turns (refreshing), across processes
// the store's refresh lease admits one refresher and the others wait for
// its result.
// The rotated refresh token is stored before the new access token is
// handed to anyone.
type Tokens struct {
	store     valet.HubStore
	vault     *Vault
	providers *Providers
	clock     valet.Clock
	log       *slog.Logger
	cfg       TokensConfig
	owner     string // this process, as lease holder

	flights singleflight.Group
	mu      sync.Mutex
	cache   map[int64]cachedToken
	used    map[int64]time.Time // last-used times, flushed by FlushLastUsed
	// refreshing holds a one-slot semaphore per connection: flights of
	// different needs (a page's Token, an API client's Renew, the
	// background refresher) must not refresh one connection at once. The
	// store's lease does not keep them apart, as it is this process's
	// whichever goroutine asks, and two refreshes with one refresh token
	// trip the helpdesk's reuse detection, which revokes the grant.
	refreshing map[int64]chan struct{}

	// afterTokenAnswer, when set (tests), runs after the token endpoint
	// answered and before the answer is stored; an error abandons the
	// refresh there, as a crash would.
	afterTokenAnswer func(connectionID int64) error
}

type cachedToken struct {
	generation int64
	access     string
	expires    time.Time
}

// NewTokens returns a token keeper for the connections in store.
func NewTokens(store valet.HubStore, vault *Vault, providers *Providers, clock valet.Clock, log *slog.Logger, cfg TokensConfig) *Tokens {
	cfg.defaults()
	if clock == nil {
		clock = valet.SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Tokens{store: store, vault: vault, providers: providers, clock: clock, log: log, cfg: cfg,
		owner: "hub-" + hex.EncodeToString(b), cache: make(map[int64]cachedToken), used: make(map[int64]time.Time),
		refreshing: make(map[int64]chan struct{})}
}

// need says when a connection's stored access token must be replaced.
type need struct {
	due   bool   // the background refresher: renew once NextRefresh has come
	stale string // a token the API refused: renew unless it was already replaced
}

func (t *Tokens) needsRefresh(n need, c *valet.Connection, access string) bool {
	now := t.clock.Now()
	switch {
	case n.stale != "":
		return access == n.stale
	case n.due:
		return !now.Before(c.NextRefresh) || !now.Add(t.cfg.Margin).Before(c.AccessExpires)
	}
	return !now.Add(t.cfg.Margin).Before(c.AccessExpires)
}

// Token returns a usable access token of the connection, renewing it if
// it has expired. Errors: ErrRevoked, and refresh failures.
func (t *Tokens) Token(ctx context.Context, connectionID int64) (string, error) {
	t.mu.Lock()
	c, ok := t.cache[connectionID]
	if ok {
		t.used[connectionID] = t.clock.Now()
	}
	t.mu.Unlock()
	if ok && t.clock.Now().Add(t.cfg.Margin).Before(c.expires) {
		return c.access, nil
	}
	return t.flight(ctx, connectionID, need{})
}

// Renew is called after the API answered 401 to stale: it returns the
// token to retry with. If stale had just come from a refresh, the grant is
// gone: the connection is marked revoked and ErrRevoked returned.
func (t *Tokens) Renew(ctx context.Context, connectionID int64, stale string) (string, error) {
	return t.flight(ctx, connectionID, need{stale: stale})
}

func (t *Tokens) flight(ctx context.Context, id int64, n need) (string, error) {
	key := strconv.FormatInt(id, 10)
	if n.stale != "" {
		key += " " + n.stale
	} else if n.due {
		key += " due"
	}
	v, err, _ := t.flights.Do(key, func() (any, error) { return t.load(ctx, id, n) })
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// load reads the connection and, if n says so, refreshes it.
func (t *Tokens) load(ctx context.Context, id int64, n need) (string, error) {
	conn, sealed, err := t.store.FindConnection(ctx, id)
	if err != nil {
		return "", err
	}
	if conn.Status == valet.ConnectionRevoked {
		t.forget(id)
		return "", ErrRevoked
	}
	sec, err := t.open(ctx, conn, *sealed)
	if err != nil {
		return "", err
	}
	if !t.needsRefresh(n, conn, sec.AccessToken) {
		t.remember(conn, sec.AccessToken)
		return sec.AccessToken, nil
	}
	if n.stale != "" && t.fresh(conn) {
		// The helpdesk refused a token it issued moments ago: the grant
		// is gone. Refreshing would only be refused too.
		if _, err := t.store.MarkConnection(ctx, id, conn.Generation, valet.ConnectionRevoked,
			"The helpdesk refused a freshly issued access token (401): access was revoked."); err != nil {
			return "", err
		}
		t.forget(id)
		return "", ErrRevoked
	}
	return t.refresh(ctx, conn, n)
}

// recheck reads conn again: a revoked connection is ErrRevoked, and a
// refresh stored since conn was read whose token serves n is returned as
// token. Otherwise latest is the connection as it is now.
func (t *Tokens) recheck(ctx context.Context, conn *valet.Connection, n need) (latest *valet.Connection, token string, err error) {
	latest, sealed, err := t.store.FindConnection(ctx, conn.ID)
	if err != nil {
		return nil, "", err
	}
	if latest.Status == valet.ConnectionRevoked {
		t.forget(conn.ID)
		return nil, "", ErrRevoked
	}
	if latest.Generation != conn.Generation {
		sec, err := t.open(ctx, latest, *sealed)
		if err != nil {
			return nil, "", err
		}
		if !t.needsRefresh(n, latest, sec.AccessToken) {
			t.remember(latest, sec.AccessToken)
			return latest, sec.AccessToken, nil
		}
	}
	return latest, "", nil
}

// open decrypts a connection's tokens. One that does not open (the hub's
// key changed, or the row was tampered with) is marked degraded and
// logged, so the dashboard and the operator say why it stopped working.
func (t *Tokens) open(ctx context.Context, conn *valet.Connection, sealed valet.ConnectionSecrets) (Secrets, error) {
	sec, err := t.vault.Open(sealed)
	if err == nil {
		return sec, nil
	}
	t.log.ErrorContext(ctx, "hub: cannot decrypt a connection's tokens; was VALET_HUB_KEY changed without --old-key?",
		"connection_id", conn.ID, "err", err)
	if _, merr := t.store.MarkConnection(ctx, conn.ID, conn.Generation, valet.ConnectionDegraded,
		"The hub cannot decrypt this connection's tokens: its key changed. Reconnect, or restart the hub with the old key."); merr != nil {
		t.log.ErrorContext(ctx, "hub: marking a connection degraded", "connection_id", conn.ID, "err", merr)
	}
	return Secrets{}, err
}

// fresh reports whether the connection's tokens were issued within
// FreshWindow.
func (t *Tokens) fresh(c *valet.Connection) bool {
	issued := c.CreatedDatetime
	if c.LastRefresh != nil {
		issued = *c.LastRefresh
	} else if c.UpdatedDatetime.After(issued) {
		issued = c.UpdatedDatetime
	}
	return t.clock.Now().Sub(issued) < t.cfg.FreshWindow
}

// refresh takes the connection's refresh lease and renews it, or, while
// another process holds the lease, waits for that process's result. Within
// the process it waits for its turn, then looks again: the refresh before
// it may have made its own unnecessary.
func (t *Tokens) refresh(ctx context.Context, conn *valet.Connection, n need) (string, error) {
	t.mu.Lock()
	turn := t.refreshing[conn.ID]
	if turn == nil {
		turn = make(chan struct{}, 1)
		t.refreshing[conn.ID] = turn
	}
	t.mu.Unlock()
	select {
	case turn <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-turn }()
	latest, token, err := t.recheck(ctx, conn, n)
	if err != nil || token != "" {
		return token, err
	}
	conn = latest
	for {
		lease, err := t.store.AcquireRefreshLease(ctx, conn.ID, t.owner, t.cfg.LeaseTTL)
		switch valet.ErrorCode(err) {
		case "":
		case valet.ECONFLICT:
			// Another process is refreshing. Wait a moment and look again:
			// either its result is stored, or its lease runs out.
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(t.cfg.WaitPoll + mrand.N(t.cfg.WaitPoll)):
			}
			if _, token, err := t.recheck(ctx, conn, n); err != nil || token != "" {
				return token, err
			}
			continue
		case valet.EUNAUTHORIZED:
			t.forget(conn.ID)
			return "", ErrRevoked
		default:
			return "", err
		}
		// Between our read and the lease another process may have finished
		// a refresh: then its token is ours too.
		sec, err := t.open(ctx, &lease.Connection, lease.Secrets)
		if err != nil {
			_ = t.store.ReleaseRefreshLease(ctx, lease)
			return "", err
		}
		if lease.Connection.Generation != conn.Generation && !t.needsRefresh(n, &lease.Connection, sec.AccessToken) {
			if err := t.store.ReleaseRefreshLease(ctx, lease); err != nil {
				return "", err
			}
			t.remember(&lease.Connection, sec.AccessToken)
			return sec.AccessToken, nil
		}
		return t.refreshUnderLease(ctx, lease, sec)
	}
}

// refreshUnderLease calls the token endpoint and stores its answer. From
// the request on it ignores the caller's cancellation: a refresh the
// helpdesk has answered must be stored, or the rotated refresh token is
// lost with it.
func (t *Tokens) refreshUnderLease(ctx context.Context, lease *valet.RefreshLease, sec Secrets) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	conn := &lease.Connection
	if sec.RefreshToken == "" {
		return "", t.fail(ctx, lease, valet.ConnectionRevoked, "The helpdesk issued no refresh token (was offline granted?); reconnect.", ErrRevoked)
	}
	p, err := t.providers.Resolve(ctx, conn.Provider, conn.BaseURL, conn.Account)
	if err != nil {
		return "", t.fail(ctx, lease, valet.ConnectionDegraded, "Cannot reach the helpdesk's OAuth configuration.", err)
	}
	cfg, err := t.providers.OAuth2(p)
	if err != nil {
		return "", t.fail(ctx, lease, valet.ConnectionDegraded, err.Error(), err)
	}
	started := t.clock.Now()
	tok, err := cfg.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, t.providers.httpClient()),
		&oauth2.Token{RefreshToken: sec.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return "", t.fail(ctx, lease, valet.ConnectionRevoked,
				"The helpdesk refused the refresh token (invalid_grant): access was revoked.", ErrRevoked)
		}
		return "", t.fail(ctx, lease, valet.ConnectionDegraded, refreshErrorText(err), err)
	}
	if t.afterTokenAnswer != nil {
		if err := t.afterTokenAnswer(conn.ID); err != nil {
			return "", err
		}
	}
	expires := tok.Expiry
	if expires.IsZero() {
		expires = started.Add(p.DefaultTTL)
	}
	sealed := t.vault.Seal(Secrets{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, WebhookSecret: sec.WebhookSecret})
	updated, err := t.store.CompleteRefresh(ctx, lease, sealed, expires, t.nextRefresh(started, expires))
	if err != nil {
		return "", fmt.Errorf("hub: store the refreshed tokens of connection %d: %w", conn.ID, err)
	}
	t.log.Info("connection refreshed", "connection", conn.ID, "account", conn.Account, "expires", expires)
	t.remember(updated, tok.AccessToken)
	return tok.AccessToken, nil
}

// fail records a failed refresh and returns err. Degraded connections are
// retried with exponential backoff and jitter; revoked ones never.
func (t *Tokens) fail(ctx context.Context, lease *valet.RefreshLease, status, text string, err error) error {
	next := time.Time{}
	if status == valet.ConnectionDegraded {
		next = t.clock.Now().Add(Backoff(lease.Connection.Failures + 1))
	}
	if ferr := t.store.FailRefresh(ctx, lease, status, text, next); ferr != nil {
		return errors.Join(err, ferr)
	}
	if status == valet.ConnectionRevoked {
		t.forget(lease.ConnectionID)
	}
	t.log.Warn("connection refresh failed", "connection", lease.ConnectionID, "status", status, "err", err)
	return err
}

// refreshErrorText says what went wrong without echoing the answer's body,
// which could hold anything.
func refreshErrorText(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		if re.ErrorCode != "" {
			return fmt.Sprintf("The helpdesk's token endpoint answered HTTP %d (%s); retrying.", re.Response.StatusCode, re.ErrorCode)
		}
		return fmt.Sprintf("The helpdesk's token endpoint answered HTTP %d; retrying.", re.Response.StatusCode)
	}
	return "The helpdesk's token endpoint could not be reached; retrying."
}

// Backoff is the wait before retry number n (from 1) of a failing
// connection: exponential from 10 s, capped at an hour, with full jitter
// over its upper half so that connections failing together spread out.
func Backoff(n int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	d = min(d, time.Hour)
	return d/2 + mrand.N(d/2+1)
}

// nextRefresh picks when the background refresher renews a token that
// lives from issued to expires: Early before expiry (at most a fifth of
// its life), less up to a tenth of its life of jitter, so that tokens
// issued together do not all fall due together.
func (t *Tokens) nextRefresh(issued, expires time.Time) time.Time {
	life := expires.Sub(issued)
	if life <= 0 {
		return issued
	}
	early := min(t.cfg.Early, life/5)
	jitter := time.Duration(0)
	if life >= 10 {
		jitter = mrand.N(life / 10)
	}
	return expires.Add(-early - jitter)
}

func (t *Tokens) remember(c *valet.Connection, access string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.cache[c.ID]; ok && old.generation > c.Generation {
		return
	}
	t.cache[c.ID] = cachedToken{generation: c.Generation, access: access, expires: c.AccessExpires}
	t.used[c.ID] = t.clock.Now()
}

func (t *Tokens) forget(id int64) {
	t.mu.Lock()
	delete(t.cache, id)
	t.mu.Unlock()
}

// RefreshDue renews the connections that have fallen due, at most
// Concurrency at once, and returns how many it renewed. Failures are
// recorded on each connection (degraded, revoked), not returned.
func (t *Tokens) RefreshDue(ctx context.Context, limit int) (int, error) {
	due, err := t.store.DueConnections(ctx, t.clock.Now(), limit)
	if err != nil {
		return 0, err
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		renewed int
		slots   = make(chan struct{}, t.cfg.Concurrency)
	)
	for _, c := range due {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			_, err := t.flight(ctx, c.ID, need{due: true})
			switch {
			case err == nil:
				mu.Lock()
				renewed++
				mu.Unlock()
			case !errors.Is(err, ErrRevoked) && ctx.Err() == nil:
				t.log.WarnContext(ctx, "hub: refreshing a connection", "connection_id", c.ID, "err", err)
			}
		})
	}
	wg.Wait()
	return renewed, nil
}

// RunRefresher renews due connections every interval until ctx ends.
func (t *Tokens) RunRefresher(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for {
			n, err := t.RefreshDue(ctx, 500)
			if err != nil {
				t.log.Error("refresh due connections", "err", err)
			}
			if n < 500 || ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// FlushLastUsed stores the connections' last-used times collected in memory.
func (t *Tokens) FlushLastUsed(ctx context.Context) error {
	t.mu.Lock()
	m := t.used
	t.used = make(map[int64]time.Time)
	t.mu.Unlock()
	if len(m) == 0 {
		return nil
	}
	return t.store.TouchConnections(ctx, m)
}

// Source returns the connection's token source for apiclient.
func (t *Tokens) Source(connectionID int64) *ConnectionTokens {
	return &ConnectionTokens{t: t, id: connectionID}
}

// ConnectionTokens is one connection's apiclient.TokenSource.
type ConnectionTokens struct {
	t  *Tokens
	id int64
}

func (c *ConnectionTokens) Token(ctx context.Context) (string, error) { return c.t.Token(ctx, c.id) }
func (c *ConnectionTokens) Renew(ctx context.Context, stale string) (string, error) {
	return c.t.Renew(ctx, c.id, stale)
}

// APIClient returns an API client of the connection's helpdesk whose
// transport injects the connection's token and renews it on a 401.
// Errors from a revoked connection wrap ErrRevoked.
func (t *Tokens) APIClient(ctx context.Context, conn *valet.Connection, opts ...apiclient.Option) (*apiclient.Client, error) {
	p, err := t.providers.Resolve(ctx, conn.Provider, conn.BaseURL, conn.Account)
	if err != nil {
		return nil, err
	}
	client := *t.providers.httpClient()
	if client.Timeout == 0 {
		client.Timeout = 30 * time.Second
	}
	return apiclient.New(p.APIBase, append([]apiclient.Option{apiclient.WithHTTPClient(&client),
		apiclient.WithTokenSource(t.Source(conn.ID))}, opts...)...)
}
