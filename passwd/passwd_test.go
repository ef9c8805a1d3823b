package passwd

import (
	"errors"
	"testing"
)

func TestHashVerify(t *testing.T) {
	fast := Params{MemoryKiB: 1024, Time: 1, Threads: 1}
	h, err := fast.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		encoded  string
		password string
		ok       bool
		wantErr  bool
	}{
		{"match", h, "correct horse", true, false},
		{"mismatch", h, "correct horsE", false, false},
		{"too long", h, string(make([]byte, MaxLength+1)), false, false},
		{"not argon2id", "$argon2i$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA", "x", false, true},
		{"garbage", "plain-text", "plain-text", false, true},
		{"bad params", "$argon2id$v=19$m=x,t=1,p=1$c2FsdA$aGFzaA", "x", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Verify(tt.encoded, tt.password)
			if ok != tt.ok || (err != nil) != tt.wantErr {
				t.Fatalf("Verify = %v, %v; want %v, err %v", ok, err, tt.ok, tt.wantErr)
			}
		})
	}
	if _, err := fast.Hash("short"); err == nil {
		t.Fatal("short password accepted")
	}
	h2, _ := fast.Hash("correct horse")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

// TestConcurrencyBound: a burst of sign-ins computes at most cap(slots)
// hashes at once, each holding its memory, and every one still answers.
func TestConcurrencyBound(t *testing.T) {
	p := Params{MemoryKiB: 4 * 1024, Time: 1, Threads: 1}
	h, err := p.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	peak.Store(0)
	burst := 8 * cap(slots)
	errs := make(chan error, burst)
	for range burst {
		go func() {
			ok, err := Verify(h, "correct horse")
			if err == nil && !ok {
				err = errors.New("the right password did not verify")
			}
			errs <- err
		}()
	}
	for range burst {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := peak.Load(); got > int64(cap(slots)) || got < 2 {
		t.Fatalf("%d hashes ran at once; want 2 to %d", got, cap(slots))
	}
}
