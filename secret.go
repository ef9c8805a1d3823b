package valet

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"time"
)

// Prefixes of the secrets valet issues, so leaked ones are easy to scan for.
const (
	PrefixAPIKey       = "vak_"
	PrefixAccessToken  = "vat_"
	PrefixRefreshToken = "vrt_"
	PrefixSession      = "vss_"
)

// NewSecret returns a random 256-bit secret with the given prefix.
func NewSecret(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// NewOrderedSecret is NewSecret for the secrets every token grant stores
// and looks up (OAuth access and refresh tokens, authorization codes): the
// random part follows the time it was made, in microseconds, which
// HashSecret puts in front of the secret's hash. Keys made one after the
// other then sort together, so an index of them grows at its end as its
// table does. With plain hashes every grant wrote a random page of each
// token table's hash index: on SQLite those pages were most of a commit's
// WAL writes, and the pages a checkpoint copies back. The time is no
// secret, and the 256 random bits stay as they were.
func NewOrderedSecret(prefix string) string {
	var b [orderedTimeLen + 32]byte
	binary.BigEndian.PutUint64(b[:orderedTimeLen], uint64(orderedClock()))
	_, _ = rand.Read(b[orderedTimeLen:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:orderedTimeLen]) +
		base64.RawURLEncoding.EncodeToString(b[orderedTimeLen:])
}

const (
	orderedTimeLen  = 8
	orderedTimeText = 11                   // base64 of the time
	orderedLen      = orderedTimeText + 43 // a secret's text after its prefix
)

var lastOrdered atomic.Int64

// orderedClock is the time in microseconds, never the same twice in a
// process, so that a process's keys sort in the order it made them.
func orderedClock() int64 {
	now := time.Now().UnixMicro()
	for {
		last := lastOrdered.Load()
		next := max(now, last+1)
		if lastOrdered.CompareAndSwap(last, next) {
			return next
		}
	}
}

// HashSecret returns the key a store keeps for a secret: its SHA-256
// (secrets are high-entropy random values, not passwords, so one hash
// suffices and stores keep only it), after the time of an ordered secret
// (NewOrderedSecret).
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	if t, ok := orderedTime(secret); ok {
		return append(t, h[:]...)
	}
	return h[:]
}

// orderedTime is the time bytes of an ordered secret: 54 characters after
// a prefix of four ending in _ (vat_, vrt_), or with no prefix (codes).
// Other secrets are 43 characters after their prefix.
func orderedTime(secret string) ([]byte, bool) {
	body := secret
	if len(secret) == len(PrefixAccessToken)+orderedLen && secret[len(PrefixAccessToken)-1] == '_' {
		body = secret[len(PrefixAccessToken):]
	}
	if len(body) != orderedLen {
		return nil, false
	}
	t := make([]byte, orderedTimeLen, orderedTimeLen+sha256.Size)
	if n, err := base64.RawURLEncoding.Decode(t, []byte(body[:orderedTimeText])); err != nil || n != orderedTimeLen {
		return nil, false
	}
	return t, true
}

// SecretHint is the last four characters, shown so people can tell keys apart.
func SecretHint(secret string) string {
	if len(secret) < 8 {
		return ""
	}
	return "…" + secret[len(secret)-4:]
}

// HasSecretPrefix reports whether s looks like a secret of the given kind.
func HasSecretPrefix(s, prefix string) bool { return strings.HasPrefix(s, prefix) }
