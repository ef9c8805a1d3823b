package sqlstore

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Batched one-statement paths on PostgreSQL.
//
// A refresh grant or a code exchange that needs no decision is one
// statement (rotateBatch, redeemBatch). Under load most of what it
// costs is not its rows but the statement around them: a round trip, two
// socket writes and reads, a transaction, a commit that waits for the WAL.
// A batchRunner sends what queued while its previous statement ran as one
// statement over arrays, so N grants share one of each; the rows are
// checked and written exactly as one alone would be. Nothing waits for
// company: an idle batchRunner takes a lone call at once, and several
// statements may run in parallel (batchWorkers).
//
// A batch is all or nothing like any statement, and its failure is every
// member's error (a server error; the client may retry). Members do not
// fall back to their own transactions then: a statement whose answer was
// lost (a dropped connection) may have committed, and a member would find
// its token used and take itself for a replay, revoking its own grant.

// batchMax bounds a batch, and so the wait of its last member.
const batchMax = 64

// batchTimeout bounds a batch's statement. A batch runs on behalf of all
// its members, so no member's context may cancel it; a statement that
// hangs (a lost connection) fails after this, with its members.
const batchTimeout = 10 * time.Second

// batchWorkers is how many batches of one kind run at a time by default:
// one per two cores. More statements in flight make smaller batches, and
// on two cores PostgreSQL's backends then take the CPU the HTTP side
// needs (bench/oauth, refresh grants/s at 16 and 64 clients: one worker
// 7,000 and 9,300, two 4,800 and 8,300).
func batchWorkers() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// batchRunner runs calls of one batch function together.
type batchRunner[In, Out any] struct {
	// run answers every input, out[i] for in[i]; an error answers all.
	run func(ctx context.Context, in []In) ([]Out, error)
	// workers is how many batches run at a time (0: batchWorkers()).
	workers int

	once   sync.Once
	reqs   chan *batchCall[In, Out]
	mu     sync.Mutex
	closed bool
	quit   chan struct{}
	wg     sync.WaitGroup
}

type batchCall[In, Out any] struct {
	ctx  context.Context
	in   In
	out  Out
	err  error
	done chan struct{}
}

// do runs in in the next batch and returns its answer.
func (b *batchRunner[In, Out]) do(ctx context.Context, in In) (Out, error) {
	var zero Out
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return zero, errStoreClosed
	}
	b.once.Do(func() {
		b.reqs, b.quit = make(chan *batchCall[In, Out], batchMax), make(chan struct{})
		if b.workers <= 0 {
			b.workers = batchWorkers()
		}
		b.wg.Add(b.workers)
		for range b.workers {
			go b.work()
		}
	})
	b.mu.Unlock()
	c := &batchCall[In, Out]{ctx: ctx, in: in, done: make(chan struct{})}
	select {
	case b.reqs <- c:
	case <-b.quit:
		return zero, errStoreClosed
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	// Once queued the call may be running; a caller that stops waiting
	// leaves its answer to nobody, as a client that hangs up does.
	select {
	case <-c.done:
		return c.out, c.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func (b *batchRunner[In, Out]) work() {
	defer b.wg.Done()
	batch := make([]*batchCall[In, Out], 0, batchMax)
	in := make([]In, 0, batchMax)
	for {
		select {
		case <-b.quit:
			return
		case c := <-b.reqs:
			batch = append(batch[:0], c)
		}
	drain:
		for len(batch) < batchMax {
			select {
			case c := <-b.reqs:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		in = in[:0]
		live := batch[:0]
		for _, c := range batch {
			if err := c.ctx.Err(); err != nil {
				c.err = err
				close(c.done)
				continue
			}
			in = append(in, c.in)
			live = append(live, c)
		}
		if len(live) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), batchTimeout)
		out, err := b.run(ctx, in)
		cancel()
		for i, c := range live {
			if err != nil {
				c.err = err
			} else {
				c.out = out[i]
			}
			close(c.done)
		}
	}
}

// stop ends the workers after their batches; later calls get
// errStoreClosed, and calls still queued are answered with it.
func (b *batchRunner[In, Out]) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	if b.quit == nil {
		return
	}
	close(b.quit)
	b.wg.Wait()
	for {
		select {
		case c := <-b.reqs:
			c.err = errStoreClosed
			close(c.done)
		default:
			return
		}
	}
}
