package sqlstore

import (
	"context"
	"errors"
	"runtime"
	"sync"

	"github.com/valethq/valet"
)

// Group commit for the token endpoint's writes on SQLite.
//
// A refresh grant or code exchange is a handful of indexed statements and
// one commit, and the commit is most of its cost: the WAL takes every page
// the transaction changed, two writes each, and a rotation changes about
// thirteen. Under load these transactions queue for SQLite's one writer
// anyway, so the committer runs whatever has queued in one transaction, each
// in a savepoint of its own, and commits once: the pages they share (the
// tables' and most indexes' newest leaves) are written once for all of
// them. Nothing waits for company: a batch is what queued while the previous
// one ran, and what the goroutines already runnable in this process queue
// when the committer, woken by the first, lets them run once before it
// starts (runCommitter). A lone request is not delayed by a timer.
//
// A savepoint makes each piece atomic on its own: a piece that fails rolls
// back to its savepoint and reports its error, and the others commit. A
// failed commit fails every piece that would have committed. On PostgreSQL,
// whose writers run in parallel, grouped is a plain transaction.

// groupBatchMax bounds a batch, and so the wait of its last member.
const groupBatchMax = 64

// keepErr marks the error of a piece whose changes must commit all the
// same: a replayed code or reused refresh token revokes the family and
// still answers invalid_grant.
type keepErr struct{ err error }

func (k keepErr) Error() string { return k.err.Error() }
func (k keepErr) Unwrap() error { return k.err }

// keep makes err a keepErr.
func keep(err error) error { return keepErr{err} }

type groupReq struct {
	ctx  context.Context
	fn   func(context.Context, *tx) error
	fast *fastCall // instead of fn
	done chan error
}

type fastKind int

const (
	fastRotation fastKind = iota
	fastRedemption
)

// fastCall is a rotation or redemption that the committer runs with the
// others of its kind in its batch.
type fastCall struct {
	kind fastKind
	call *issuing
	out  *valet.IssuedTokens // the answer (nil: undecided), set before done
}

type committer struct {
	once sync.Once
	reqs chan *groupReq

	mu     sync.Mutex
	closed bool
	quit   chan struct{}
	exited chan struct{}
}

// grouped runs fn in a write transaction and commits it, sharing the commit
// with other grouped pieces on SQLite. fn must not commit or roll back; it
// returns nil to commit, keep(err) to commit and still return err, or any
// other error to undo its changes. Its context does not cancel a statement
// once started (on SQLite an interrupted write would roll back the whole
// batch), but a piece whose context ends before it runs does not run.
func (s *Store) grouped(ctx context.Context, fn func(context.Context, *tx) error) error {
	if s.d != sqliteDialect {
		tx, err := s.begin(ctx)
		if err != nil {
			return err
		}
		defer tx.rollback()
		err = fn(ctx, tx)
		var k keepErr
		if err != nil && !errors.As(err, &k) {
			return err
		}
		if cerr := tx.commit(ctx); cerr != nil {
			return cerr
		}
		return k.err
	}
	return s.submit(&groupReq{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// groupedFast runs one rotation or redemption (fastRotation,
// fastRedemption) with the others of its kind that queued with it, as one
// group of statements in the committer's transaction (batch_sqlite.go).
// It returns nil tokens and no error when the call needs its
// transaction's decisions.
func (s *Store) groupedFast(ctx context.Context, kind fastKind, call *issuing) (*valet.IssuedTokens, error) {
	r := &groupReq{ctx: ctx, fast: &fastCall{kind: kind, call: call}, done: make(chan error, 1)}
	if err := s.submit(r); err != nil {
		return nil, err
	}
	return r.fast.out, nil
}

// submit queues r for the committer and waits for its answer.
func (s *Store) submit(req *groupReq) error {
	c := &s.group
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errStoreClosed
	}
	c.once.Do(func() {
		c.reqs = make(chan *groupReq, groupBatchMax)
		c.quit, c.exited = make(chan struct{}), make(chan struct{})
		go s.runCommitter()
	})
	c.mu.Unlock()
	ctx := req.ctx
	select {
	case c.reqs <- req:
	case <-c.quit:
		return errStoreClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the piece may already be running: its answer is the
	// only truth about whether it committed.
	select {
	case err := <-req.done:
		return err
	case <-c.exited:
		select {
		case err := <-req.done:
			return err
		default:
			return errStoreClosed
		}
	}
}

func (s *Store) runCommitter() {
	c := &s.group
	defer close(c.exited)
	batch := make([]*groupReq, 0, groupBatchMax)
	for {
		select {
		case <-c.quit:
			// Answer what is still queued.
			for {
				select {
				case r := <-c.reqs:
					r.done <- errStoreClosed
				default:
					return
				}
			}
		case r := <-c.reqs:
			batch = append(batch[:0], r)
		}
		// The first request woke the committer, often while handlers that
		// are about to queue theirs wait for a P. Yielding once lets them
		// (it returns at once when nothing else is runnable), so they join
		// this commit instead of each starting a small one of their own:
		// on 2 cores at 16 clients, ~10% less CPU per code exchange
		// (BENCHMARKS.md, 2026-11-29 18:13). PostgreSQL's batches
		// (batch.go) gained nothing from it.
		runtime.Gosched()
	drain:
		for len(batch) < groupBatchMax {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitBatch(batch)
	}
}

// commitBatch runs the pieces in one transaction and answers each.
func (s *Store) commitBatch(batch []*groupReq) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	committing := make([]bool, len(batch))
	tx, err := s.begin(ctx)
	if err != nil {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	defer tx.rollback()
	for _, kind := range []fastKind{fastRotation, fastRedemption} {
		if broken := s.runFast(tx, batch, kind, errs, committing); broken != nil {
			for _, r := range batch {
				r.done <- broken
			}
			return
		}
	}
	for i, r := range batch {
		if r.fast != nil {
			continue
		}
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		var broken error
		errs[i], committing[i], broken = s.runPiece(tx, r)
		if broken != nil {
			// A piece could not be undone: nothing of the batch commits,
			// and the pieces not run yet are not started.
			for j := range batch {
				if committing[j] || j >= i {
					errs[j] = broken
				}
			}
			for j, r := range batch {
				r.done <- errs[j]
			}
			return
		}
	}
	if err := tx.Commit(); err != nil {
		for i := range batch {
			if committing[i] {
				errs[i] = err
			}
		}
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// runFast runs the batch's fast calls of one kind as one group of
// statements in a savepoint of tx, and notes which of them commit. A
// group that fails is undone and its calls left undecided: each then takes
// its own transaction. broken reports a group that could not be undone.
func (s *Store) runFast(tx *tx, batch []*groupReq, kind fastKind, errs []error, committing []bool) (broken error) {
	var idx []int
	var calls []*issuing
	for i, r := range batch {
		if r.fast == nil || r.fast.kind != kind {
			continue
		}
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		idx, calls = append(idx, i), append(calls, r.fast.call)
	}
	if len(calls) == 0 {
		return nil
	}
	ctx := context.Background()
	if _, err := tx.ExecContext(ctx, `SAVEPOINT fast`); err != nil {
		return err
	}
	group := *tx
	group.now = s.now()
	var out []*valet.IssuedTokens
	var err error
	if kind == fastRotation {
		out, err = group.rotateRows(ctx, calls)
	} else {
		out, err = group.redeemRows(ctx, calls)
	}
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO fast`); rerr != nil {
			return errors.Join(err, rerr)
		}
		out = nil
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE fast`); rerr != nil {
		return errors.Join(err, rerr)
	}
	for j, i := range idx {
		if out != nil && out[j] != nil {
			batch[i].fast.out, committing[i] = out[j], true
		}
	}
	return nil
}

// runPiece runs one piece in its own savepoint of tx and reports its error
// and whether its changes stay for the commit; broken reports a piece that
// could not be undone.
func (s *Store) runPiece(tx *tx, r *groupReq) (err error, committing bool, broken error) {
	ctx := context.WithoutCancel(r.ctx)
	if _, err := tx.ExecContext(ctx, `SAVEPOINT piece`); err != nil {
		return nil, false, err
	}
	piece := *tx
	piece.now, piece.actor, piece.events = s.now(), valet.ActorFromContext(r.ctx), nil
	err = r.fn(ctx, &piece)
	var k keepErr
	if err == nil || errors.As(err, &k) {
		if ferr := piece.insertEvents(ctx); ferr != nil {
			err = ferr
		} else if _, rerr := tx.ExecContext(ctx, `RELEASE piece`); rerr != nil {
			err = rerr
		} else {
			return k.err, true, nil
		}
	}
	// Undo the piece; if even that fails, the transaction is in an unknown
	// state and the whole batch must not commit.
	if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO piece`); rerr != nil {
		return err, false, errors.Join(err, rerr)
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE piece`); rerr != nil {
		return err, false, errors.Join(err, rerr)
	}
	return err, false, nil
}

// stop ends the committer after its batch; later pieces get errStoreClosed.
func (c *committer) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if c.quit != nil {
		close(c.quit)
		<-c.exited
	}
}
