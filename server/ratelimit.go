package server

import (
	"math"
	"sync"
	"time"

	"github.com/valethq/valet"
)

// limiter is a set of leaky buckets, one per (account, credential kind), as
// Gorgias limits API calls. A bucket fills by one per request and drains
// continuously at Requests/Per; a request that would overflow it is refused
// with the time until it fits. Time comes from the server's clock so tests can
// move it.
type limiter struct {
	clock valet.Clock

	mu        sync.Mutex
	buckets   map[bucketKey]*bucket
	lastSweep time.Time
	sweepAge  time.Duration // the longest drain period seen: an untouched bucket is empty after it
}

type bucketKey struct {
	account int64
	kind    valet.CredentialKind
}

type bucket struct {
	level float64   // requests in the bucket at time at
	at    time.Time // when level was last computed
	rate  float64   // drain per second
}

// limitResult is what one take tells the caller.
type limitResult struct {
	ok    bool
	used  int           // requests in the bucket after this one (or the full bucket when refused)
	limit int           // the bucket's capacity
	retry time.Duration // when refused: how long until one more request fits
}

func newLimiter(clock valet.Clock) *limiter {
	return &limiter{clock: clock, buckets: make(map[bucketKey]*bucket)}
}

// take tries to add one request to the bucket of key. A limit with no
// requests or no period means unlimited.
func (l *limiter) take(key bucketKey, lim RateLimit) limitResult {
	if lim.Requests <= 0 || lim.Per <= 0 {
		return limitResult{ok: true}
	}
	now := l.clock.Now()
	rate := float64(lim.Requests) / lim.Per.Seconds()
	capacity := float64(lim.Requests)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now, lim.Per)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{at: now}
		l.buckets[key] = b
	}
	b.rate = rate
	if elapsed := now.Sub(b.at); elapsed > 0 {
		b.level = math.Max(0, b.level-elapsed.Seconds()*rate)
		b.at = now
	}
	res := limitResult{limit: lim.Requests}
	// The epsilon keeps float drift from refusing the last request of a
	// bucket that is exactly full.
	if b.level+1 > capacity+1e-9 {
		res.used = lim.Requests
		res.retry = time.Duration((b.level + 1 - capacity) / rate * float64(time.Second))
		return res
	}
	b.level++
	res.ok = true
	res.used = min(lim.Requests, int(math.Ceil(b.level-1e-9)))
	return res
}

// sweep drops buckets that have drained empty, so memory follows the number
// of accounts active in the last period rather than every account ever seen.
// It runs at most once per period, so its cost is amortised over requests.
func (l *limiter) sweep(now time.Time, per time.Duration) {
	l.sweepAge = max(l.sweepAge, per)
	if now.Sub(l.lastSweep) < l.sweepAge {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.level-now.Sub(b.at).Seconds()*b.rate <= 0 {
			delete(l.buckets, k)
		}
	}
}

// size reports how many buckets are held (for tests of the eviction).
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1, as
// Retry-After carries integers and 0 would invite an immediate retry.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
