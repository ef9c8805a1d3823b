package main

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/valethq/valet/passwd"
)

// gcPercent and baseMemoryLimit are a server's garbage collector settings
// when GOGC and GOMEMLIMIT are not set. At Go's default (GOGC=100) the
// collector runs whenever the heap has doubled, and a valet node's live
// heap is a few MiB, so it ran very often: a fifth of a token grant's CPU
// went to it (BENCHMARKS.md). Letting the heap grow to five times the live
// heap costs a few tens of MiB; the soft limit makes the collector work
// harder before memory passes it, whatever the live heap's growth, and
// leaves room for the password hashes that may run at once, each of which
// holds its memory until it is done.
const (
	gcPercent       = 400
	baseMemoryLimit = 256 << 20
)

// tuneGC applies gcPercent and the memory limit unless the environment
// sets its own.
func tuneGC(log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := baseMemoryLimit + passwd.PeakMemory()
		debug.SetMemoryLimit(limit)
		log.Debug("garbage collector", "gogc", gcPercent, "memory_limit_mib", limit>>20)
	}
}
