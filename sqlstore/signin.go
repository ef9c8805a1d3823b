package sqlstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math"
	"slices"
	"time"

	"github.com/valethq/valet"
)

// Failed sign-ins are counted in the database rather than in each node's
// memory: behind a load balancer, per-node buckets would let a password
// guesser try the limit once per node.

// ReserveSignIn implements valet.SessionService.
func (s *Store) ReserveSignIn(ctx context.Context, keys []string, limit valet.SignInLimit) (time.Duration, error) {
	if !limit.Enabled() || len(keys) == 0 {
		return 0, nil
	}
	retry, err := s.reserveSignIn(ctx, keys, limit)
	if err == nil {
		s.sweepSignIns(ctx, limit)
	}
	return retry, err
}

func (s *Store) reserveSignIn(ctx context.Context, keys []string, limit valet.SignInLimit) (time.Duration, error) {
	const op = "sqlstore.ReserveSignIn"
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, s.fail(op, err, "")
	}
	defer tx.rollback()
	hashes := signInHashes(keys)
	levels, touched, err := tx.lockSignIns(ctx, hashes, limit)
	if err != nil {
		return 0, s.fail(op, err, "")
	}
	capacity := float64(limit.Attempts)
	var retry time.Duration
	for _, level := range levels {
		// The epsilon keeps float drift from refusing the last attempt of
		// a bucket that is exactly full.
		if level+1 > capacity+1e-9 {
			retry = max(retry, time.Duration(math.Ceil((level+1-capacity)*float64(limit.Per)/capacity)))
		}
	}
	if retry > 0 {
		return retry, nil
	}
	for i, h := range hashes {
		if err := tx.setSignIns(ctx, h, levels[i]+1, touched[i]); err != nil {
			return 0, s.fail(op, err, "")
		}
	}
	if err := tx.commit(ctx); err != nil {
		return 0, s.fail(op, err, "")
	}
	return 0, nil
}

// ReleaseSignIn implements valet.SessionService. Each bucket is drained
// and given back its attempt by one UPDATE of its own: a release holds one
// row at a time, so it cannot deadlock with reservations, and a key that
// has no bucket (no failure to count) writes nothing. A bucket touched
// after this release's now (a sign-in that began later committed first)
// is not drained, and keeps its later time.
func (s *Store) ReleaseSignIn(ctx context.Context, keys []string, limit valet.SignInLimit) error {
	const op = "sqlstore.ReleaseSignIn"
	if !limit.Enabled() || len(keys) == 0 {
		return nil
	}
	now := micros(s.now())
	perMicro := float64(limit.Attempts) / float64(limit.Per.Microseconds())
	for _, h := range signInHashes(keys) {
		const drained = `(CASE WHEN $1 > touched_at THEN $1 - touched_at ELSE 0 END) * CAST($2 AS DOUBLE PRECISION)`
		if _, err := s.w.ExecContext(ctx, `UPDATE signin_buckets
			SET touched_at = CASE WHEN touched_at > $1 THEN touched_at ELSE $1 END,
			level = CASE WHEN level - `+drained+` > 1 THEN level - `+drained+` - 1 ELSE 0 END
			WHERE key_hash = $3`, now, perMicro, h); err != nil {
			return s.fail(op, err, "")
		}
	}
	return nil
}

// signInHashes are the keys' SHA-256 hashes, so the table holds no email
// or address, sorted so that concurrent transactions lock their rows in
// one order and cannot deadlock.
func signInHashes(keys []string) [][]byte {
	hashes := make([][]byte, 0, len(keys))
	for _, k := range keys {
		h := sha256.Sum256([]byte(k))
		hashes = append(hashes, h[:])
	}
	slices.SortFunc(hashes, bytes.Compare)
	return slices.CompactFunc(hashes, bytes.Equal)
}

// lockSignIns creates the buckets of hashes that do not exist yet, locks
// them until the transaction ends and returns their levels drained to now,
// with the time each is then at: now, or the bucket's own time when a
// sign-in whose clock ran ahead of this one's touched it (a bucket's time
// never goes back, so no time is drained twice). The no-op update is what
// locks an existing row in one statement on both databases.
func (tx *tx) lockSignIns(ctx context.Context, hashes [][]byte, limit valet.SignInLimit) (levels []float64, touched []int64, err error) {
	now := micros(tx.now)
	levels, touched = make([]float64, len(hashes)), make([]int64, len(hashes))
	for i, h := range hashes {
		var level float64
		var at int64
		err := tx.QueryRowContext(ctx, `INSERT INTO signin_buckets (key_hash, level, touched_at) VALUES ($1, 0, $2)
			ON CONFLICT (key_hash) DO UPDATE SET level = signin_buckets.level RETURNING level, touched_at`, h, now).
			Scan(&level, &at)
		if err != nil {
			return nil, nil, err
		}
		if elapsed := now - at; elapsed > 0 {
			level = max(0, level-float64(elapsed)*float64(limit.Attempts)/float64(limit.Per.Microseconds()))
		}
		levels[i], touched[i] = level, max(now, at)
	}
	return levels, touched, nil
}

func (tx *tx) setSignIns(ctx context.Context, hash []byte, level float64, touched int64) error {
	_, err := tx.ExecContext(ctx, `UPDATE signin_buckets SET level = $1, touched_at = $2 WHERE key_hash = $3`,
		level, touched, hash)
	return err
}

// sweepSignIns deletes, at most once per period on each node, the buckets
// nobody has touched for a whole period: they have drained empty. It runs
// after the reservation, in a statement of its own, and on PostgreSQL
// passes over rows a sign-in holds (SKIP LOCKED): a sweep inside the
// reservation, waiting for such a row while holding others, deadlocked
// with the sign-ins. A failed sweep only leaves empty buckets for the
// next one.
func (s *Store) sweepSignIns(ctx context.Context, limit valet.SignInLimit) {
	now := s.now()
	last := s.signInSwept.Load()
	if micros(now)-last < limit.Per.Microseconds() || !s.signInSwept.CompareAndSwap(last, micros(now)) {
		return
	}
	lock := s.d.forUpdate("b")
	if lock != "" {
		lock += " SKIP LOCKED"
	}
	_, _ = s.w.ExecContext(ctx, `DELETE FROM signin_buckets WHERE key_hash IN
		(SELECT key_hash FROM signin_buckets b WHERE touched_at < $1`+lock+`)`, micros(now.Add(-limit.Per)))
}
