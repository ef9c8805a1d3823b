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
// heap costs a few tens of MiB. The soft limit keeps what password hashes
// leave behind from growing with it: each argon2id hash allocates 19 MiB,
// garbage once done. Without a limit, 64 sign-ins at once took the peak
// RSS to 500 MiB (224 MiB at Go's defaults); the tighter the limit, the
// more often the runtime hands that memory back to the system and faults
// it in again for the next hash: sign-ins per second 58 at 140 MiB, 63 at
// 200, 68 at 256 (71 at the defaults), so the limit is 192 MiB plus the
// memory of the hashes that may run at once (256 MiB on two cores).
const (
	gcPercent       = 400
	baseMemoryLimit = 192 << 20
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
