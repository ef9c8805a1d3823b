// Package passwd hashes user passwords with argon2id (golang.org/x/crypto)
// in the PHC string format, so parameters can be raised later without
// invalidating stored hashes.
package passwd

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// Default follows OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane).
var Default = Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
	// MinLength and MaxLength bound passwords; the upper bound keeps a
	// sign-in form from being a CPU amplifier.
	MinLength = 8
	MaxLength = 256
)

// slots bound the hashes computed at once. Each holds MemoryKiB of memory
// for its whole run and keeps one core busy, so more at once than twice
// the cores only adds memory (64 sign-ins at once: 1.2 GiB) without
// finishing any sooner; the others wait their turn.
var slots = make(chan struct{}, 2*runtime.GOMAXPROCS(0))

// PeakMemory is the most memory the hashes at once hold with the default
// parameters.
func PeakMemory() int64 { return int64(cap(slots)) * int64(Default.MemoryKiB) << 10 }

// running counts hashes in progress, for the test of the bound.
var running, peak atomic.Int64

func idKey(password, salt []byte, p Params, keyLen uint32) []byte {
	slots <- struct{}{}
	defer func() { <-slots }()
	n := running.Add(1)
	defer running.Add(-1)
	for {
		if old := peak.Load(); n <= old || peak.CompareAndSwap(old, n) {
			break
		}
	}
	return argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
}

// ErrMalformed means a stored hash could not be parsed.
var ErrMalformed = errors.New("passwd: malformed hash")

// Hash returns the PHC-encoded argon2id hash of password with Default params.
func Hash(password string) (string, error) { return Default.Hash(password) }

// Hash returns the PHC-encoded argon2id hash of password.
func (p Params) Hash(password string) (string, error) {
	if len(password) < MinLength || len(password) > MaxLength {
		return "", fmt.Errorf("passwd: password must be %d to %d characters", MinLength, MaxLength)
	}
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt)
	key := idKey([]byte(password), salt, p, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches encoded, in constant time.
func Verify(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, ErrMalformed
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, ErrMalformed
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return false, ErrMalformed
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || p.Time == 0 || p.Threads == 0 {
		return false, ErrMalformed
	}
	if len(password) > MaxLength {
		return false, nil
	}
	got := idKey([]byte(password), salt, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
