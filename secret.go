package valet

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
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

// HashSecret returns the SHA-256 of a secret: secrets are high-entropy
// random values, not passwords, so one hash suffices and stores keep only it.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
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
