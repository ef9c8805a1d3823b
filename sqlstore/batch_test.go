package sqlstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestBatchRunner: calls that queue while a batch runs go together into the
// next one, each gets its own answer, an error answers the whole batch,
// and a stopped runner refuses calls.
func TestBatchRunner(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	b := &batchRunner[int, int]{workers: 1, run: func(ctx context.Context, in []int) ([]int, error) {
		mu.Lock()
		first := len(sizes) == 0
		sizes = append(sizes, len(in))
		mu.Unlock()
		if first {
			<-release // the calls below queue meanwhile
		}
		if in[0] < 0 {
			return nil, errors.New("bad batch")
		}
		out := make([]int, len(in))
		for i, v := range in {
			out[i] = 2 * v
		}
		return out, nil
	}}
	const n = 20
	answers := make([]int, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		answers[0], _ = b.do(ctx, 0)
	}()
	for started := false; !started; {
		time.Sleep(time.Millisecond)
		mu.Lock()
		started = len(sizes) == 1
		mu.Unlock()
	}
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := b.do(ctx, i)
			if err != nil {
				t.Errorf("do(%d): %v", i, err)
			}
			answers[i] = v
		}()
	}
	for len(b.reqsOrNil()) < n-1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, v := range answers {
		if v != 2*i {
			t.Errorf("answer %d = %d, want %d", i, v, 2*i)
		}
	}
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != n-1 {
		t.Errorf("batch sizes %v, want [1 %d]", sizes, n-1)
	}

	if _, err := b.do(ctx, -1); err == nil || err.Error() != "bad batch" {
		t.Errorf("a failed batch answered %v", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.do(canceled, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("a canceled call answered %v", err)
	}
	b.stop()
	if _, err := b.do(ctx, 1); !errors.Is(err, errStoreClosed) {
		t.Errorf("after stop: %v", err)
	}
}

// reqsOrNil is the queue, for the test to watch it fill.
func (b *batchRunner[In, Out]) reqsOrNil() chan *batchCall[In, Out] {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reqs
}
