package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the signature of a delivery.
const SignatureHeader = "X-Valet-Signature"

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock when Verify is given no tolerance: wide enough for clock
// skew, narrow enough that a captured delivery cannot be replayed later.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify; each wraps ErrInvalidSignature.
var (
	ErrInvalidSignature = errors.New("webhook: invalid signature")
	ErrSignatureFormat  = fmt.Errorf("%w: malformed header", ErrInvalidSignature)
	ErrSignatureExpired = fmt.Errorf("%w: timestamp outside the tolerance", ErrInvalidSignature)
	ErrSignatureMatch   = fmt.Errorf("%w: no signature matches", ErrInvalidSignature)
)

// Sign returns the X-Valet-Signature value of body sent at t:
// "t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>". The timestamp is
// inside the MAC, so a receiver checking its age refuses replays.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks header (an X-Valet-Signature value) against body and
// secret. It refuses a header without exactly one t= or without v1=, a
// malformed timestamp or hex value, and a timestamp more than tolerance
// (DefaultTolerance when 0) before or after now. Several v1= values are
// accepted, any one matching, so a sender may sign with an old and a new
// secret while they rotate. Unknown keys are ignored, for later schemes.
// Comparisons are constant-time.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	seenT := false
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrSignatureFormat
		}
		switch k {
		case "t":
			if seenT {
				return ErrSignatureFormat
			}
			ts, seenT = v, true
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return ErrSignatureFormat
			}
			sigs = append(sigs, sig)
		}
	}
	if !seenT || len(sigs) == 0 {
		return ErrSignatureFormat
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || unix < 0 || strconv.FormatInt(unix, 10) != ts {
		return ErrSignatureFormat
	}
	if age := now.Sub(time.Unix(unix, 0)); age > tolerance || age < -tolerance {
		return ErrSignatureExpired
	}
	want := mac(secret, ts, body)
	ok := false
	for _, sig := range sigs {
		// Every value is compared, matching or not, so the time taken says
		// nothing about which one matched.
		if hmac.Equal(sig, want) {
			ok = true
		}
	}
	if !ok {
		return ErrSignatureMatch
	}
	return nil
}
