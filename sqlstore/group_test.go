package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit: pieces queued while the writer is busy commit together,
// and each keeps its own outcome: a failed piece leaves nothing behind, a
// kept error commits its changes and still reports the error, a piece whose
// context ended never runs, and the rest commit.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "group.db"))
	if err != nil {
		t.Fatal(err)
	}

	const n = 40
	errFailed, errKept := errors.New("failed piece"), errors.New("kept piece")
	release := make(chan struct{})
	firstRunning := make(chan struct{})
	// The first piece holds the writer until every other piece is queued,
	// so they all share the next commit.
	go func() {
		_ = s.grouped(ctx, func(ctx context.Context, tx *tx) error {
			close(firstRunning)
			<-release
			return tx.audit(ctx, 0, 0, "piece", map[string]int{"i": -1})
		})
	}()
	<-firstRunning

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			pctx := ctx
			if i == 7 {
				pctx = cancelled
			}
			results[i] = s.grouped(pctx, func(ctx context.Context, tx *tx) error {
				if err := tx.audit(ctx, 0, 0, "piece", map[string]int{"i": i}); err != nil {
					return err
				}
				switch i % 4 {
				case 1:
					return errFailed
				case 2:
					return keep(errKept)
				}
				return nil
			})
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.group.reqs) < n-1 { // the cancelled one may not queue
		if time.Now().After(deadline) {
			t.Fatalf("%d pieces queued", len(s.group.reqs))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()

	entries, err := s.ListAudit(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, e := range entries {
		stored[string(e.Details)] = true
	}
	for i, err := range results {
		in := stored[fmt.Sprintf(`{"i":%d}`, i)]
		switch {
		case i == 7:
			if !errors.Is(err, context.Canceled) || in {
				t.Errorf("cancelled piece: %v, stored %v", err, in)
			}
		case i%4 == 1:
			if !errors.Is(err, errFailed) || in {
				t.Errorf("piece %d: %v, stored %v; want its error and nothing stored", i, err, in)
			}
		case i%4 == 2:
			if !errors.Is(err, errKept) || in != true {
				t.Errorf("piece %d: %v, stored %v; want its error and its changes", i, err, in)
			}
		default:
			if err != nil || !in {
				t.Errorf("piece %d: %v, stored %v", i, err, in)
			}
		}
	}
	if !stored[`{"i":-1}`] {
		t.Error("the first piece did not commit")
	}

	// After Close, a piece gets an error rather than waiting forever.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.grouped(ctx, func(context.Context, *tx) error { return nil }); !errors.Is(err, errStoreClosed) {
		t.Fatalf("grouped after Close: %v", err)
	}
}
