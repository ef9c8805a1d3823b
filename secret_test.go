package valet_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// TestHashSecret: a plain secret's key is its SHA-256; an ordered secret's
// is the time it was made and then its SHA-256, so that keys made one
// after the other sort in that order; anything shaped like an ordered
// secret whose time does not decode is hashed as a plain one.
func TestHashSecret(t *testing.T) {
	sum := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	before := time.Now()
	ordered := valet.NewOrderedSecret(valet.PrefixRefreshToken)
	code := valet.NewOrderedSecret("")
	for _, tc := range []struct {
		name, secret string
		timed        bool
	}{
		{"plain token", valet.NewSecret(valet.PrefixAccessToken), false},
		{"plain code", valet.NewSecret(""), false},
		{"client secret", valet.NewSecret(valet.PrefixClientSecret), false},
		{"ordered token", ordered, true},
		{"ordered code", code, true},
		{"ordered shape, time not base64", valet.PrefixRefreshToken + "!!!!!!!!!!!" + ordered[len(valet.PrefixRefreshToken)+11:], false},
		{"ordered length, no underscore", "vrtx" + ordered[4:], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := valet.HashSecret(tc.secret)
			if !tc.timed {
				if !bytes.Equal(key, sum(tc.secret)) {
					t.Fatalf("key %x, want the SHA-256", key)
				}
				return
			}
			if len(key) != 8+sha256.Size || !bytes.Equal(key[8:], sum(tc.secret)) {
				t.Fatalf("key %x, want 8 bytes of time and the SHA-256", key)
			}
			made := time.UnixMicro(int64(binary.BigEndian.Uint64(key[:8])))
			if made.Before(before.Add(-time.Millisecond)) || time.Since(made) > time.Minute {
				t.Fatalf("time %v, made after %v", made, before)
			}
		})
	}
	if !strings.HasPrefix(ordered, valet.PrefixRefreshToken) || len(ordered) != len(valet.PrefixRefreshToken)+54 || len(code) != 54 {
		t.Fatalf("ordered secrets %q, %q", ordered, code)
	}

	// Made one after the other, the keys sort in that order, and none is
	// made twice.
	prev := valet.HashSecret(valet.NewOrderedSecret(valet.PrefixAccessToken))
	for range 1000 {
		next := valet.HashSecret(valet.NewOrderedSecret(valet.PrefixAccessToken))
		if bytes.Compare(prev[:8], next[:8]) >= 0 {
			t.Fatalf("keys out of order: %x then %x", prev, next)
		}
		prev = next
	}
}
