package helpdesktest

import (
	"context"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
)

// AddAccount creates another account whose owner is a new user, for tests
// that need connections to several accounts of one helpdesk (the hub keeps
// one connection per account).
func (h *Helpdesk) AddAccount(tb testing.TB, name string) (*valet.Account, *valet.User) {
	tb.Helper()
	ctx := context.Background()
	a := &valet.Account{Name: name, DisplayName: name}
	must(tb, h.Store.CreateAccount(ctx, a))
	hash, err := passwd.Params{MemoryKiB: 512, Time: 1, Threads: 1}.Hash(Password)
	must(tb, err)
	u := &valet.User{Email: "owner@" + name + ".test", Name: "Owner of " + name, PasswordHash: hash}
	must(tb, h.Store.CreateUser(ctx, u))
	must(tb, h.Store.AddMember(ctx, a.ID, u.ID, valet.RoleOwner))
	return a, u
}

// InstallOn is Install on another account, as user (one of its members).
func (h *Helpdesk) InstallOn(tb testing.TB, account *valet.Account, user *valet.User, app *valet.App, scopes ...valet.Scope) *valet.IssuedTokens {
	tb.Helper()
	ctx := context.Background()
	g, err := h.Store.Consent(ctx, account.ID, user.ID, app.ID, scopes)
	must(tb, err)
	code, err := h.Store.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: app.RedirectURIs[0],
		Scopes: scopes, AuthTime: time.Now(), CodeChallenge: valet.PKCEChallenge(installVerifier), CodeChallengeMethod: "S256"})
	must(tb, err)
	issued, err := h.Store.ExchangeAuthCode(ctx, code, valet.CodeRedemption{AppID: app.ID, PublicClient: app.Public,
		RedirectURI: app.RedirectURIs[0], CodeVerifier: installVerifier}, valet.DefaultAccessTTL)
	must(tb, err)
	return issued
}
