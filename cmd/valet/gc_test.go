package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"github.com/valethq/valet/passwd"
)

// TestTuneGC: a server collects garbage at gcPercent within the memory
// limit, unless GOGC or GOMEMLIMIT say otherwise.
func TestTuneGC(t *testing.T) {
	defaultLimit := int64(baseMemoryLimit) + passwd.PeakMemory()
	for _, tc := range []struct {
		name, gogc, memlimit string
		wantPercent          int
		wantLimit            int64
	}{
		{"defaults", "", "", gcPercent, defaultLimit},
		{"GOGC set", "150", "", 100, defaultLimit},
		{"GOMEMLIMIT set", "", "1GiB", gcPercent, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldPercent, oldLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
			t.Cleanup(func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) })
			t.Setenv("GOGC", tc.gogc)
			t.Setenv("GOMEMLIMIT", tc.memlimit)
			tuneGC(slog.New(slog.DiscardHandler))
			// The runtime read GOGC and GOMEMLIMIT when the test started, so
			// what is left (100, no limit) shows tuneGC kept its hands off.
			if got := debug.SetGCPercent(100); got != tc.wantPercent {
				t.Errorf("GC percent %d, want %d", got, tc.wantPercent)
			}
			if got := debug.SetMemoryLimit(math.MaxInt64); got != tc.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tc.wantLimit)
			}
		})
	}
}
