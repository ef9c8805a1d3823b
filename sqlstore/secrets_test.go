package sqlstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// TestTokensStoredHashed: codes, access and refresh tokens and client
// secrets are in the database as their SHA-256 only (codes and tokens
// after the time they were made); nothing stored holds the value itself.
func TestTokensStoredHashed(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "hashed.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	account := &valet.Account{Name: "acme", DisplayName: "Acme"}
	user := &valet.User{Email: "o@acme.test", Name: "O"}
	app := &valet.App{Name: "App", RedirectURIs: []string{"https://app.example/cb"}, Scopes: valet.ScopeSet{"offline", "tickets:read"}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateAccount(ctx, account))
	must(s.CreateUser(ctx, user))
	must(s.AddMember(ctx, account.ID, user.ID, valet.RoleOwner))
	secret, err := s.RegisterApp(ctx, app)
	must(err)
	g, err := s.Consent(ctx, account.ID, user.ID, app.ID, app.Scopes)
	must(err)
	code, err := s.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: app.RedirectURIs[0], Scopes: app.Scopes})
	must(err)
	issued, err := s.ExchangeAuthCode(ctx, code, valet.CodeRedemption{AppID: app.ID, RedirectURI: app.RedirectURIs[0]}, time.Hour)
	must(err)

	for _, c := range []struct {
		table, column, value string
		ordered              bool // stored after its time (valet.NewOrderedSecret)
	}{
		{"auth_codes", "code_hash", code, true},
		{"access_tokens", "token_hash", issued.AccessToken, true},
		{"refresh_tokens", "token_hash", issued.RefreshToken, true},
		{"apps", "secret_hash", secret, false},
	} {
		sum := sha256.Sum256([]byte(c.value))
		var stored []byte
		var plain int
		// The row the value finds, which must keep only its SHA-256 (after
		// the time it was made, for an ordered secret).
		must(s.r.QueryRowContext(ctx, `SELECT `+c.column+` FROM `+c.table+` WHERE `+c.column+` = $1`,
			valet.HashSecret(c.value)).Scan(&stored))
		// The value anywhere in any text or blob column of the row.
		must(s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+c.table+` t WHERE instr(CAST(t.`+c.column+` AS TEXT), $1) > 0
			OR instr(quote(t.`+c.column+`), $1) > 0`, c.value).Scan(&plain))
		want := sum[:]
		if c.ordered {
			if len(stored) != 8+sha256.Size {
				t.Fatalf("%s.%s: %d bytes stored, want the time and the SHA-256", c.table, c.column, len(stored))
			}
			made := time.UnixMicro(int64(binary.BigEndian.Uint64(stored[:8])))
			if time.Since(made) < 0 || time.Since(made) > time.Minute {
				t.Errorf("%s.%s: stored time %v", c.table, c.column, made)
			}
			stored = stored[8:]
		}
		if !bytes.Equal(stored, want) || plain != 0 {
			t.Errorf("%s.%s: stored %x, want the SHA-256 %x; %d rows hold the value", c.table, c.column, stored, want, plain)
		}
	}
}
