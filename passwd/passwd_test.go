package passwd

import "testing"

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
