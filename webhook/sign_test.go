package webhook

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignFormat(t *testing.T) {
	at := time.Unix(1_700_000_000, 999_000_000)
	got := Sign("vws_secret", at, []byte(`{"id":1}`))
	if !regexp.MustCompile(`^t=1700000000,v1=[0-9a-f]{64}$`).MatchString(got) {
		t.Fatalf("Sign = %q", got)
	}
	// A fixed vector, so that receivers in other languages can check theirs:
	// HMAC-SHA256("vws_secret", "1700000000.{"id":1}").
	// (Checked with openssl dgst -sha256 -hmac.)
	const want = "t=1700000000,v1=af6d47f64e87164f0d92e8d2ceec61df4e95fa9431d73a04addec10aa4e24078"
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if Sign("vws_secret", at, []byte(`{"id":2}`)) == got || Sign("vws_other", at, []byte(`{"id":1}`)) == got ||
		Sign("vws_secret", at.Add(time.Second), []byte(`{"id":1}`)) == got {
		t.Fatal("the signature does not depend on secret, time and body")
	}
}

func TestVerify(t *testing.T) {
	const secret = "vws_secret"
	body := []byte(`{"id":42,"type":"ticket-created"}`)
	now := time.Unix(1_700_000_000, 0)
	good := Sign(secret, now, body)
	v1 := good[strings.Index(good, "v1="):]
	ts := "t=" + strconv.FormatInt(now.Unix(), 10)
	other := Sign("vws_old", now, body)
	otherV1 := other[strings.Index(other, "v1="):]

	cases := []struct {
		name   string
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", good, body, now, nil},
		{"spaces", ts + ", " + v1, body, now, nil},
		{"rotation: old then new", ts + "," + otherV1 + "," + v1, body, now, nil},
		{"unknown scheme ignored", ts + ",v0=zz," + v1, body, now, nil},
		{"within tolerance (old)", good, body, now.Add(5 * time.Minute), nil},
		{"within tolerance (ahead)", good, body, now.Add(-5 * time.Minute), nil},
		{"empty", "", body, now, ErrSignatureFormat},
		{"no t", v1, body, now, ErrSignatureFormat},
		{"no v1", ts, body, now, ErrSignatureFormat},
		{"two t", ts + "," + ts + "," + v1, body, now, ErrSignatureFormat},
		{"bad t", "t=abc," + v1, body, now, ErrSignatureFormat},
		{"negative t", "t=-5," + v1, body, now, ErrSignatureFormat},
		{"bad hex", ts + ",v1=xyz", body, now, ErrSignatureFormat},
		{"short hex", ts + ",v1=abcd", body, now, ErrSignatureFormat},
		{"no equals", ts + ",v1", body, now, ErrSignatureFormat},
		{"replayed (too old)", good, body, now.Add(5*time.Minute + time.Second), ErrSignatureExpired},
		{"from the future", good, body, now.Add(-5*time.Minute - time.Second), ErrSignatureExpired},
		{"tampered body", good, []byte(`{"id":43,"type":"ticket-created"}`), now, ErrSignatureMatch},
		{"wrong secret", other, body, now, ErrSignatureMatch},
		{"timestamp changed", "t=" + strconv.FormatInt(now.Unix()+1, 10) + "," + v1, body, now, ErrSignatureMatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(secret, c.header, c.body, c.now, 5*time.Minute)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
			if err != nil && !errors.Is(err, ErrInvalidSignature) {
				t.Fatalf("%v does not wrap ErrInvalidSignature", err)
			}
		})
	}
	// Tolerance 0 is the default, not "any age".
	if err := Verify(secret, good, body, now.Add(time.Hour), 0); !errors.Is(err, ErrSignatureExpired) {
		t.Fatalf("default tolerance: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the largest draw
	cases := []struct {
		attempt int
		ceiling time.Duration
	}{
		{1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second}, {4, 80 * time.Second},
		{5, 160 * time.Second}, {6, 320 * time.Second}, {7, 640 * time.Second}, {8, 1280 * time.Second},
		{9, 2560 * time.Second}, {10, time.Hour}, {11, time.Hour}, {50, time.Hour}, {1000, time.Hour},
	}
	for _, c := range cases {
		if got := backoff(c.attempt, top); got != c.ceiling-time.Nanosecond {
			t.Errorf("attempt %d: largest backoff %v, want just under %v", c.attempt, got, c.ceiling)
		}
		if got := backoff(c.attempt, func(int64) int64 { return 0 }); got != time.Second {
			t.Errorf("attempt %d: smallest backoff %v, want 1s", c.attempt, got)
		}
	}
	// With the real source, draws spread over [1s, ceiling).
	d := New(nil, Config{})
	seen := map[time.Duration]bool{}
	for range 100 {
		got := d.backoff(5)
		if got < time.Second || got >= 160*time.Second {
			t.Fatalf("backoff(5) = %v", got)
		}
		seen[got] = true
	}
	if len(seen) < 50 {
		t.Fatalf("no jitter: %d distinct values in 100", len(seen))
	}
}
