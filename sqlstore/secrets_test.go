package sqlstore

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// TestTokensStoredHashed: codes, access and refresh tokens and client
// secrets are in the database as their SHA-256 only; nothing stored holds
// the value itself.
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

	for _, c := range []struct{ table, column, value string }{
		{"auth_codes", "code_hash", code},
		{"access_tokens", "token_hash", issued.AccessToken},
		{"refresh_tokens", "token_hash", issued.RefreshToken},
		{"apps", "secret_hash", secret},
	} {
		sum := sha256.Sum256([]byte(c.value))
		var hashed, plain int
		must(s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+c.table+` WHERE `+c.column+` = $1`, sum[:]).Scan(&hashed))
		// The value anywhere in any text or blob column of the row.
		must(s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+c.table+` t WHERE instr(CAST(t.`+c.column+` AS TEXT), $1) > 0
			OR instr(quote(t.`+c.column+`), $1) > 0`, c.value).Scan(&plain))
		if hashed != 1 || plain != 0 {
			t.Errorf("%s.%s: %d rows hold the SHA-256, %d the value", c.table, c.column, hashed, plain)
		}
	}
}
