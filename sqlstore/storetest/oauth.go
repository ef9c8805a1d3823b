package storetest

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// Clock is a settable clock for the cases that move time (code expiry,
// refresh leeway and lifetimes).
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at the current time.
func NewClock() *Clock { return &Clock{t: time.Now().UTC().Truncate(time.Microsecond)} }

// Now implements valet.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// RunOAuth runs the authorization server's cases against stores made by
// open, which returns a fresh store whose clock is clock.
func RunOAuth(t *testing.T, open func(tb testing.TB, clock valet.Clock) valet.OAuthStore) {
	cases := []struct {
		name string
		fn   func(*testing.T, valet.OAuthStore, *Clock)
	}{
		{"Apps", testOAuthApps},
		{"Consent", testOAuthConsent},
		{"GrantLastUsed", testOAuthGrantLastUsed},
		{"ConcurrentConsent", testOAuthConcurrentConsent},
		{"CodeExchange", testOAuthCodeExchange},
		{"CodeReplay", testOAuthCodeReplay},
		{"CodeExpiry", testOAuthCodeExpiry},
		{"ConcurrentCodeExchange", testOAuthConcurrentCodeExchange},
		{"ConcurrentRefresh", testOAuthConcurrentRefresh},
		{"AsClient", testOAuthAsClient},
		{"RefreshRotation", testOAuthRefreshRotation},
		{"RefreshReuse", testOAuthRefreshReuse},
		{"RefreshReuseWiderScope", testOAuthRefreshReuseWiderScope},
		{"RefreshLeeway", testOAuthRefreshLeeway},
		{"RefreshLifetimes", testOAuthRefreshLifetimes},
		{"RevokeToken", testOAuthRevokeToken},
		{"NarrowedApp", testOAuthNarrowedApp},
		{"Purge", testOAuthPurge},
		{"SigningKeys", testOAuthSigningKeys},
		{"Audit", testOAuthAudit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock()
			c.fn(t, open(t, clock), clock)
		})
	}
}

func newApp(t *testing.T, s valet.OAuthStore, mod ...func(*valet.App)) (*valet.App, string) {
	t.Helper()
	a := &valet.App{Name: "Hub", DeveloperName: "Hub Inc", RedirectURIs: []string{"https://hub.example/cb"},
		Scopes: valet.ScopeSet{"openid", "email", "offline", "tickets:read", "tickets:write"}}
	for _, m := range mod {
		m(a)
	}
	secret, err := s.RegisterApp(ctx, a)
	must(t, err)
	return a, secret
}

// consentCode makes a grant for the fixture's owner and a code for scopes.
func consentCode(t *testing.T, f *fixture, s valet.OAuthStore, app *valet.App, scopes string) (*valet.Grant, string) {
	t.Helper()
	set, err := valet.ParseScopes(scopes)
	must(t, err)
	g, err := s.Consent(ctx, f.account.ID, f.owner.ID, app.ID, set)
	must(t, err)
	code, err := s.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: app.RedirectURIs[0],
		CodeChallenge: valet.PKCEChallenge(testVerifier), CodeChallengeMethod: "S256", Nonce: "n-0S6", Scopes: set})
	must(t, err)
	return g, code
}

// testVerifier is the PKCE verifier of consentCode's codes.
const testVerifier = "dBjftJeZ4CVP-mJ92K9rnGhS-1vC_1DkY0bMv2jQz6A"

// redeem is the redemption of consentCode's codes by app.
func redeem(app *valet.App) valet.CodeRedemption {
	return valet.CodeRedemption{AppID: app.ID, PublicClient: app.Public, RedirectURI: app.RedirectURIs[0],
		CodeVerifier: testVerifier}
}

func wantAuth(t *testing.T, s valet.OAuthStore, token string, ok bool) *valet.Credential {
	t.Helper()
	c, err := s.Authenticate(ctx, token)
	if ok {
		must(t, err)
		return c
	}
	wantCode(t, err, valet.EUNAUTHORIZED)
	return nil
}

func auditActions(t *testing.T, s valet.OAuthStore, accountID int64) []string {
	t.Helper()
	entries, err := s.ListAudit(ctx, accountID, 100)
	must(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Action)
	}
	return out
}

func testOAuthApps(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	conf, secret := newApp(t, s, func(a *valet.App) { a.OwnerUserID = f.owner.ID; a.RefreshLeeway = 5 })
	if !strings.HasPrefix(secret, valet.PrefixClientSecret) || len(conf.SecretHash) != 32 || conf.SecretHint == "" {
		t.Fatalf("confidential app: secret %q, hash %x, hint %q", secret, conf.SecretHash, conf.SecretHint)
	}
	pub, pubSecret := newApp(t, s, func(a *valet.App) { a.Public = true; a.Name = "CLI"; a.OwnerUserID = f.owner.ID })
	if pubSecret != "" || pub.SecretHash != nil {
		t.Fatalf("public app got a secret %q", pubSecret)
	}
	got, err := s.FindApp(ctx, conf.ClientID)
	must(t, err)
	wantEqual(t, got.SecretHash, valet.HashSecret(secret))
	wantEqual(t, got.RedirectURIs, conf.RedirectURIs)
	wantEqual(t, got.Scopes, conf.Scopes)
	wantEqual(t, got.RefreshLeeway, 5)
	wantEqual(t, got.IDTokenAlg, valet.AlgRS256)
	wantEqual(t, got.DeveloperName, "Hub Inc")
	wantTime(t, "created", got.CreatedDatetime)
	gotPub, err := s.FindApp(ctx, pub.ClientID)
	must(t, err)
	if !gotPub.Public || gotPub.SecretHash != nil {
		t.Fatalf("public app read back as %+v", gotPub)
	}
	_, err = s.FindApp(ctx, "nope")
	wantCode(t, err, valet.ENOTFOUND)

	apps, err := s.ListApps(ctx, f.owner.ID)
	must(t, err)
	wantEqual(t, len(apps), 2)
	wantEqual(t, apps[0].ID, pub.ID)
	newApp(t, s, func(a *valet.App) { a.Name = "Unowned" })
	all, err := s.ListApps(ctx, 0)
	must(t, err)
	wantEqual(t, len(all), 3)

	_, err = s.RegisterApp(ctx, &valet.App{Name: "Bad", RedirectURIs: []string{"http://evil.example/cb"}, Scopes: valet.ScopeSet{"openid"}})
	wantField(t, err, "redirect_uris")
	_, err = s.RegisterApp(ctx, &valet.App{ClientID: conf.ClientID, Name: "Dup", RedirectURIs: []string{"https://x.example/cb"}, Scopes: valet.ScopeSet{"openid"}})
	wantCode(t, err, valet.ECONFLICT)

	got.Name, got.RedirectURIs, got.IDTokenAlg = "Hub 2", []string{"https://hub.example/cb", "http://127.0.0.1:8080/cb"}, valet.AlgES256
	must(t, s.UpdateApp(ctx, got))
	again, err := s.FindApp(ctx, conf.ClientID)
	must(t, err)
	wantEqual(t, again.Name, "Hub 2")
	wantEqual(t, again.RedirectURIs, got.RedirectURIs)
	wantEqual(t, again.IDTokenAlg, valet.AlgES256)
	wantEqual(t, again.SecretHash, valet.HashSecret(secret))
	got.RefreshLeeway = 61
	wantField(t, s.UpdateApp(ctx, got), "refresh_reuse_leeway")

	rotated, err := s.RotateAppSecret(ctx, conf.ID)
	must(t, err)
	if rotated == secret || !strings.HasPrefix(rotated, valet.PrefixClientSecret) {
		t.Fatalf("rotated secret %q", rotated)
	}
	again, err = s.FindApp(ctx, conf.ClientID)
	must(t, err)
	wantEqual(t, again.SecretHash, valet.HashSecret(rotated))
	wantEqual(t, auditActions(t, s, 0), []string{valet.AuditSecretRotated, valet.AuditAppUpdated})
	_, err = s.RotateAppSecret(ctx, pub.ID)
	wantField(t, err, "public")

	// Deleting an app takes its grants and tokens.
	_, code := consentCode(t, f, s, conf, "openid tickets:read")
	tokens, err := s.ExchangeAuthCode(ctx, code, redeem(conf), time.Hour)
	must(t, err)
	must(t, s.DeleteApp(ctx, conf.ID))
	wantAuth(t, s, tokens.AccessToken, false)
	wantCode(t, s.DeleteApp(ctx, conf.ID), valet.ENOTFOUND)
	// The account that had it installed is told, and so is account 0.
	entries, err := s.ListAudit(ctx, f.account.ID, 1)
	must(t, err)
	wantEqual(t, entries[0].Action, valet.AuditAppDeleted)
	wantEqual(t, entries[0].AppID, conf.ID)
	var details map[string]any
	must(t, json.Unmarshal(entries[0].Details, &details))
	wantEqual[any](t, details["client_id"], conf.ClientID)
	wantEqual(t, auditActions(t, s, 0), []string{valet.AuditAppDeleted, valet.AuditSecretRotated, valet.AuditAppUpdated})
}

func testOAuthGrantLastUsed(t *testing.T, s valet.OAuthStore, clock *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	g, err := s.Consent(ctx, f.account.ID, f.owner.ID, app.ID, valet.ScopeSet{"tickets:read"})
	must(t, err)
	if g.LastUsedDatetime != nil {
		t.Fatalf("a new grant was used at %v", g.LastUsedDatetime)
	}
	used := clock.Now().Add(time.Minute)
	must(t, s.TouchGrants(ctx, map[int64]time.Time{g.ID: used, g.ID + 1000: used}))
	// An older time (a slower node's flush) never moves it backwards.
	must(t, s.TouchGrants(ctx, map[int64]time.Time{g.ID: used.Add(-time.Hour)}))
	must(t, s.TouchGrants(ctx, nil))
	grants, err := s.ListGrants(ctx, f.account.ID)
	must(t, err)
	if len(grants) != 1 || grants[0].LastUsedDatetime == nil || !grants[0].LastUsedDatetime.Equal(used) {
		t.Fatalf("grants after touch: %+v", grants)
	}
	found, err := s.FindActiveGrant(ctx, f.account.ID, f.owner.ID, app.ID)
	must(t, err)
	if found.LastUsedDatetime == nil || !found.LastUsedDatetime.Equal(used) {
		t.Fatalf("FindActiveGrant last used %v, want %v", found.LastUsedDatetime, used)
	}
}

func testOAuthConsent(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, err := s.FindActiveGrant(ctx, f.account.ID, f.owner.ID, app.ID)
	wantCode(t, err, valet.ENOTFOUND)
	g1, err := s.Consent(ctx, f.account.ID, f.owner.ID, app.ID, valet.ScopeSet{"openid", "tickets:read"})
	must(t, err)
	g2, err := s.Consent(ctx, f.account.ID, f.owner.ID, app.ID, valet.ScopeSet{"email", "tickets:read"})
	must(t, err)
	wantEqual(t, g2.ID, g1.ID)
	wantEqual(t, g2.Scopes.String(), "email openid tickets:read")
	found, err := s.FindActiveGrant(ctx, f.account.ID, f.owner.ID, app.ID)
	must(t, err)
	wantEqual(t, found.Scopes.String(), "email openid tickets:read")

	_, err = s.Consent(ctx, f.account.ID, f.owner.ID, app.ID, valet.ScopeSet{"customers:read"})
	wantField(t, err, "scopes")
	other := newFixture(t, s, "other")
	_, err = s.Consent(ctx, other.account.ID, f.owner.ID, app.ID, valet.ScopeSet{"openid"})
	wantCode(t, err, valet.ENOTFOUND)

	// The agent's consent is a grant of its own.
	ga, err := s.Consent(ctx, f.account.ID, f.agent.ID, app.ID, valet.ScopeSet{"openid"})
	must(t, err)
	if ga.ID == g1.ID {
		t.Fatal("agent shares the owner's grant")
	}
	grants, err := s.ListGrants(ctx, f.account.ID)
	must(t, err)
	wantEqual(t, len(grants), 2)

	// After a revocation, consent starts a new grant.
	must(t, s.RevokeGrant(ctx, f.account.ID, g1.ID))
	_, err = s.FindActiveGrant(ctx, f.account.ID, f.owner.ID, app.ID)
	wantCode(t, err, valet.ENOTFOUND)
	g3, err := s.Consent(ctx, f.account.ID, f.owner.ID, app.ID, valet.ScopeSet{"openid"})
	must(t, err)
	if g3.ID == g1.ID || g3.Scopes.String() != "openid" {
		t.Fatalf("consent after revocation: %+v", g3)
	}
	entries, err := s.ListAudit(ctx, f.account.ID, 10)
	must(t, err)
	wantEqual(t, len(entries), 4)
	e := entries[len(entries)-1]
	wantEqual(t, e.Action, valet.AuditConsentGiven)
	wantEqual(t, e.ActorUserID, f.owner.ID)
	wantEqual(t, e.AppID, app.ID)
	var details map[string]any
	must(t, json.Unmarshal(e.Details, &details))
	wantEqual[any](t, details["scopes"], "openid tickets:read")
}

func testOAuthCodeExchange(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	g, code := consentCode(t, f, s, app, "openid tickets:read")

	// A redemption that does not match is refused and does not consume
	// the code.
	other, _ := newApp(t, s, func(a *valet.App) { a.Name = "Other" })
	for _, c := range []struct {
		name string
		mod  func(*valet.CodeRedemption)
	}{
		{"another client", func(r *valet.CodeRedemption) { r.AppID = other.ID }},
		{"another redirect URI", func(r *valet.CodeRedemption) { r.RedirectURI = "https://hub.example/other" }},
		{"no verifier", func(r *valet.CodeRedemption) { r.CodeVerifier = "" }},
		{"wrong verifier", func(r *valet.CodeRedemption) { r.CodeVerifier = testVerifier + "x" }},
	} {
		r := redeem(app)
		c.mod(&r)
		_, err := s.ExchangeAuthCode(ctx, code, r, time.Hour)
		if valet.ErrorCode(err) != valet.EUNAUTHORIZED {
			t.Errorf("%s: %v, want EUNAUTHORIZED", c.name, err)
		}
	}

	tokens, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	if !strings.HasPrefix(tokens.AccessToken, valet.PrefixAccessToken) || tokens.RefreshToken != "" {
		t.Fatalf("tokens %+v: want an access token and no refresh token without offline", tokens)
	}
	wantEqual(t, tokens.AccountName, "acme")
	wantEqual(t, tokens.GrantID, g.ID)
	wantEqual(t, tokens.Nonce, "n-0S6")
	wantEqual(t, tokens.Scopes.String(), "openid tickets:read")
	c := wantAuth(t, s, tokens.AccessToken, true)
	wantEqual(t, c.AccountID, f.account.ID)
	wantEqual(t, c.AppID, app.ID)
	wantEqual(t, c.Scopes.String(), "openid tickets:read")

	_, offline := consentCode(t, f, s, app, "offline tickets:read")
	tokens, err = s.ExchangeAuthCode(ctx, offline, redeem(app), time.Hour)
	must(t, err)
	if !strings.HasPrefix(tokens.RefreshToken, valet.PrefixRefreshToken) {
		t.Fatalf("offline: no refresh token in %+v", tokens)
	}

	// A code issued without PKCE: a confidential client redeems it without
	// a verifier only, a public client not at all.
	withoutPKCE := func(a *valet.App) string {
		g, err := s.Consent(ctx, f.account.ID, f.owner.ID, a.ID, valet.ScopeSet{"tickets:read"})
		must(t, err)
		code, err := s.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: a.RedirectURIs[0],
			Scopes: valet.ScopeSet{"tickets:read"}})
		must(t, err)
		return code
	}
	plain := withoutPKCE(app)
	_, err = s.ExchangeAuthCode(ctx, plain, redeem(app), time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.ExchangeAuthCode(ctx, plain, valet.CodeRedemption{AppID: app.ID, RedirectURI: app.RedirectURIs[0]}, time.Hour)
	must(t, err)
	public, _ := newApp(t, s, func(a *valet.App) { a.Name = "Public"; a.Public = true })
	_, err = s.ExchangeAuthCode(ctx, withoutPKCE(public), valet.CodeRedemption{AppID: public.ID, PublicClient: true,
		RedirectURI: public.RedirectURIs[0]}, time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)

	_, err = s.ExchangeAuthCode(ctx, "unknown", redeem(app), time.Hour)
	wantCode(t, err, valet.ENOTFOUND)
	// Scopes beyond the grant and codes of revoked grants are refused.
	_, err = s.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: "https://hub.example/cb", Scopes: valet.ScopeSet{"tickets:write"}})
	wantField(t, err, "scopes")
	_, later := consentCode(t, f, s, app, "openid")
	must(t, s.RevokeGrant(ctx, f.account.ID, g.ID))
	_, err = s.ExchangeAuthCode(ctx, later, redeem(app), time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: "https://hub.example/cb", Scopes: valet.ScopeSet{"openid"}})
	wantCode(t, err, valet.ENOTFOUND)
}

func testOAuthCodeReplay(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "offline tickets:read")
	first, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	second, err := s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	// Another family of the same grant survives the replay.
	_, otherCode := consentCode(t, f, s, app, "tickets:read")
	other, err := s.ExchangeAuthCode(ctx, otherCode, redeem(app), time.Hour)
	must(t, err)

	_, err = s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	wantCode(t, err, valet.ECONFLICT)
	wantAuth(t, s, first.AccessToken, false)
	wantAuth(t, s, second.AccessToken, false)
	_, err = s.Refresh(ctx, second.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)
	wantAuth(t, s, other.AccessToken, true)
	wantEqual(t, auditActions(t, s, f.account.ID)[0], valet.AuditCodeReplay)
}

func testOAuthCodeExpiry(t *testing.T, s valet.OAuthStore, clock *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "openid")
	clock.Advance(valet.AuthCodeTTL - time.Second)
	_, code2 := consentCode(t, f, s, app, "openid")
	clock.Advance(2 * time.Second)
	_, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.ExchangeAuthCode(ctx, code2, redeem(app), time.Hour)
	must(t, err)
}

func testOAuthRefreshRotation(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "openid offline tickets:read tickets:write")
	first, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)

	// Another app presenting the token is refused, and the token is not
	// used by it.
	other, _ := newApp(t, s, func(a *valet.App) { a.Name = "Other" })
	_, err = s.Refresh(ctx, first.RefreshToken, other.ID, nil, time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)

	second, err := s.Refresh(ctx, first.RefreshToken, app.ID, valet.ScopeSet{"tickets:read"}, time.Hour)
	must(t, err)
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatalf("refresh did not rotate: %+v", second)
	}
	wantEqual(t, second.Scopes.String(), "tickets:read")
	wantEqual(t, wantAuth(t, s, second.AccessToken, true).Scopes.String(), "tickets:read")
	wantAuth(t, s, first.AccessToken, true)
	// The narrowed refresh keeps the refresh token's own scopes.
	third, err := s.Refresh(ctx, second.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	wantEqual(t, third.Scopes.String(), "offline openid tickets:read tickets:write")
	_, err = s.Refresh(ctx, third.RefreshToken, app.ID, valet.ScopeSet{"customers:read"}, time.Hour)
	wantField(t, err, "scope")
	_, err = s.Refresh(ctx, "vrt_unknown", app.ID, nil, time.Hour)
	wantCode(t, err, valet.ENOTFOUND)
	// Widening failed without consuming the token.
	_, err = s.Refresh(ctx, third.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
}

func testOAuthRefreshReuse(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	g, code := consentCode(t, f, s, app, "offline tickets:read")
	first, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	second, err := s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	_, err = s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.ECONFLICT)
	// The whole grant is revoked.
	wantAuth(t, s, second.AccessToken, false)
	_, err = s.Refresh(ctx, second.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.FindActiveGrant(ctx, f.account.ID, f.owner.ID, app.ID)
	wantCode(t, err, valet.ENOTFOUND)
	entries, err := s.ListAudit(ctx, f.account.ID, 1)
	must(t, err)
	wantEqual(t, entries[0].Action, valet.AuditRefreshReuse)
	var details map[string]any
	must(t, json.Unmarshal(entries[0].Details, &details))
	wantEqual[any](t, details["grant_id"], float64(g.ID))
}

// A replayed refresh token revokes the grant whatever scope it asks for: a
// wider one must not turn the replay into a harmless invalid_scope.
func testOAuthRefreshReuseWiderScope(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "offline tickets:read")
	first, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	wider := valet.ScopeSet{valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeTicketsWrite}
	// Unused, a wider scope is refused and changes nothing.
	_, err = s.Refresh(ctx, first.RefreshToken, app.ID, wider, time.Hour)
	wantCode(t, err, valet.EINVALID)
	second, err := s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	// Replayed, it is reuse.
	_, err = s.Refresh(ctx, first.RefreshToken, app.ID, wider, time.Hour)
	wantCode(t, err, valet.ECONFLICT)
	wantAuth(t, s, second.AccessToken, false)
	_, err = s.FindActiveGrant(ctx, f.account.ID, f.owner.ID, app.ID)
	wantCode(t, err, valet.ENOTFOUND)
}

func testOAuthRefreshLeeway(t *testing.T, s valet.OAuthStore, clock *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s, func(a *valet.App) { a.RefreshLeeway = 10 })
	_, code := consentCode(t, f, s, app, "offline tickets:read")
	first, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	second, err := s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	clock.Advance(5 * time.Second)
	// The client lost second: within the leeway first yields a successor
	// and second stops working.
	retry, err := s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	_, err = s.Refresh(ctx, second.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)
	wantAuth(t, s, retry.AccessToken, true)
	next, err := s.Refresh(ctx, retry.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	// A token two steps back is reuse, leeway or not.
	_, err = s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.ECONFLICT)
	wantAuth(t, s, next.AccessToken, false)

	// After the leeway, reuse revokes.
	_, code = consentCode(t, f, s, app, "offline tickets:read")
	first, err = s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	_, err = s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	clock.Advance(11 * time.Second)
	_, err = s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.ECONFLICT)

	// Without leeway (the default), an immediate retry revokes.
	strict, _ := newApp(t, s)
	_, code = consentCode(t, f, s, strict, "offline tickets:read")
	first, err = s.ExchangeAuthCode(ctx, code, redeem(strict), time.Hour)
	must(t, err)
	_, err = s.Refresh(ctx, first.RefreshToken, strict.ID, nil, time.Hour)
	must(t, err)
	_, err = s.Refresh(ctx, first.RefreshToken, strict.ID, nil, time.Hour)
	wantCode(t, err, valet.ECONFLICT)
}

func testOAuthRefreshLifetimes(t *testing.T, s valet.OAuthStore, clock *Clock) {
	refreshLifetimes(t, s, clock, valet.RefreshIdleTTL, valet.RefreshAbsoluteTTL)
}

// RunRefreshLifetimes checks a store opened with other refresh token
// lifetimes (sqlstore.WithRefreshLifetimes(idle, absolute)) keeps them.
func RunRefreshLifetimes(t *testing.T, open func(tb testing.TB, clock valet.Clock) valet.OAuthStore, idle, absolute time.Duration) {
	clock := NewClock()
	refreshLifetimes(t, open(t, clock), clock, idle, absolute)
}

func refreshLifetimes(t *testing.T, s valet.OAuthStore, clock *Clock, idle, absolute time.Duration) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "offline tickets:read")
	tokens, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	// Idle: unused for longer than the idle lifetime.
	clock.Advance(idle - time.Second)
	next, err := s.Refresh(ctx, tokens.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	clock.Advance(idle + time.Second)
	_, err = s.Refresh(ctx, next.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)

	// Absolute: from the code exchange on, however often refreshed.
	_, code = consentCode(t, f, s, app, "offline tickets:read")
	tokens, err = s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	step := idle * 3 / 4
	var elapsed time.Duration
	for {
		clock.Advance(step)
		elapsed += step
		next, err := s.Refresh(ctx, tokens.RefreshToken, app.ID, nil, time.Hour)
		if elapsed < absolute {
			must(t, err)
			tokens = next
			continue
		}
		wantCode(t, err, valet.EUNAUTHORIZED)
		break
	}
}

func testOAuthRevokeToken(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	other, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "offline tickets:read")
	first, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	_, code = consentCode(t, f, s, app, "offline tickets:read")
	second, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)

	// Another app cannot revoke the app's tokens, and is told so (RFC 7009
	// §2.1); unknown tokens are fine.
	wantCode(t, s.RevokeOAuthToken(ctx, other.ID, first.AccessToken), valet.EFORBIDDEN)
	wantCode(t, s.RevokeOAuthToken(ctx, other.ID, first.RefreshToken), valet.EFORBIDDEN)
	wantAuth(t, s, first.AccessToken, true)
	must(t, s.RevokeOAuthToken(ctx, app.ID, "vat_unknown"))
	must(t, s.RevokeOAuthToken(ctx, app.ID, "junk"))

	must(t, s.RevokeOAuthToken(ctx, app.ID, first.AccessToken))
	wantAuth(t, s, first.AccessToken, false)
	_, err = s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	must(t, err) // revoking an access token leaves the refresh token

	must(t, s.RevokeOAuthToken(ctx, app.ID, second.RefreshToken))
	wantAuth(t, s, second.AccessToken, false)
	_, err = s.Refresh(ctx, second.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)
	wantEqual(t, auditActions(t, s, f.account.ID)[0], valet.AuditTokenRevoked)
}

func testOAuthSigningKeys(t *testing.T, s valet.OAuthStore, clock *Clock) {
	k1 := &valet.SigningKey{ID: "k1", Algorithm: valet.AlgRS256, Sealed: []byte{1, 2, 3}}
	must(t, s.CreateSigningKey(ctx, k1))
	clock.Advance(time.Second)
	k2 := &valet.SigningKey{ID: "k2", Algorithm: valet.AlgES256, Sealed: []byte{4, 5}}
	must(t, s.CreateSigningKey(ctx, k2))
	wantCode(t, s.CreateSigningKey(ctx, &valet.SigningKey{ID: "k1", Algorithm: valet.AlgRS256, Sealed: []byte{9}}), valet.ECONFLICT)
	wantField(t, s.CreateSigningKey(ctx, &valet.SigningKey{ID: "k3"}), "key")
	must(t, s.RetireSigningKey(ctx, "k1"))
	wantCode(t, s.RetireSigningKey(ctx, "nope"), valet.ENOTFOUND)
	keys, err := s.ListSigningKeys(ctx)
	must(t, err)
	wantEqual(t, len(keys), 2)
	wantEqual(t, keys[0].ID, "k2")
	wantEqual(t, keys[0].Sealed, []byte{4, 5})
	wantEqual(t, keys[0].Algorithm, valet.AlgES256)
	if keys[0].RetiredDatetime != nil || keys[1].RetiredDatetime == nil {
		t.Fatalf("retired: %+v", keys)
	}
}

func testOAuthAudit(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	other := newFixture(t, s, "other")
	e := &valet.AuditEntry{AccountID: f.account.ID, ActorUserID: f.owner.ID, Action: valet.AuditConsentDenied,
		Details: json.RawMessage(`{"client_id":"x"}`)}
	must(t, s.AppendAudit(ctx, e))
	must(t, s.AppendAudit(ctx, &valet.AuditEntry{AccountID: f.account.ID, Action: valet.AuditClientAuthFailed}))
	must(t, s.AppendAudit(ctx, &valet.AuditEntry{AccountID: other.account.ID, Action: valet.AuditGrantRevoked}))
	wantField(t, s.AppendAudit(ctx, &valet.AuditEntry{AccountID: f.account.ID}), "action")
	wantField(t, s.AppendAudit(ctx, &valet.AuditEntry{Action: "x", Details: json.RawMessage(`{`)}), "details")
	entries, err := s.ListAudit(ctx, f.account.ID, 10)
	must(t, err)
	wantEqual(t, len(entries), 2)
	wantEqual(t, entries[0].Action, valet.AuditClientAuthFailed)
	wantEqual(t, string(entries[0].Details), "{}")
	wantEqual(t, entries[1].ID, e.ID)
	wantEqual(t, entries[1].ActorUserID, f.owner.ID)
	wantEqual(t, string(entries[1].Details), `{"client_id":"x"}`)
	wantTime(t, "audit time", entries[1].CreatedDatetime)
	wantEqual(t, auditActions(t, s, other.account.ID), []string{valet.AuditGrantRevoked})
}

// testOAuthConcurrentConsent: nodes approving the same app at once leave one
// active grant holding every approved scope (or tell the loser to retry).
func testOAuthConcurrentConsent(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	scopes := []valet.Scope{"openid", "email", "tickets:read", "tickets:write"}
	var wg sync.WaitGroup
	errs := make([]error, len(scopes))
	for i, sc := range scopes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Consent(ctx, f.account.ID, f.owner.ID, app.ID, valet.ScopeSet{sc})
		}()
	}
	wg.Wait()
	want := valet.ScopeSet{}
	for i, err := range errs {
		if err != nil {
			wantCode(t, err, valet.ECONFLICT)
			continue
		}
		want = want.Union(valet.ScopeSet{scopes[i]})
	}
	grants, err := s.ListGrants(ctx, f.account.ID)
	must(t, err)
	if len(grants) != 1 || !grants[0].Scopes.Contains(want) {
		t.Fatalf("grants %s, want one holding %s", dump(grants), want)
	}
}

func testOAuthPurge(t *testing.T, s valet.OAuthStore, clock *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "offline tickets:read")
	old, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	n, err := s.PurgeOAuth(ctx, 10)
	must(t, err)
	wantEqual(t, n, 0)

	clock.Advance(2 * time.Hour) // the access token expired
	_, fresh := consentCode(t, f, s, app, "tickets:read")
	live, err := s.ExchangeAuthCode(ctx, fresh, redeem(app), time.Hour)
	must(t, err)
	n, err = s.PurgeOAuth(ctx, 10)
	must(t, err)
	wantEqual(t, n, 1)
	wantAuth(t, s, live.AccessToken, true)
	// The refresh token still works after its access token went.
	_, err = s.Refresh(ctx, old.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)

	// A day later the codes go; a month later the refresh tokens.
	clock.Advance(valet.RefreshIdleTTL + time.Hour)
	n, err = s.PurgeOAuth(ctx, 1)
	must(t, err)
	wantEqual(t, n, 3) // one row of each kind per batch
	n, err = s.PurgeOAuth(ctx, 1000)
	must(t, err)
	if n == 0 {
		t.Fatal("nothing left to purge")
	}
	n, err = s.PurgeOAuth(ctx, 1000)
	must(t, err)
	wantEqual(t, n, 0)
}

// testOAuthConcurrentCodeExchange: of simultaneous redemptions of one code
// at most one succeeds, and whatever it issued ends up revoked.
func testOAuthConcurrentCodeExchange(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "offline tickets:read")
	const n = 6
	var wg sync.WaitGroup
	results := make([]*valet.IssuedTokens, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
		}()
	}
	wg.Wait()
	wins := 0
	for i, err := range errs {
		if err != nil {
			wantCode(t, err, valet.ECONFLICT)
			continue
		}
		wins++
		wantAuth(t, s, results[i].AccessToken, false)
		_, err := s.Refresh(ctx, results[i].RefreshToken, app.ID, nil, time.Hour)
		wantCode(t, err, valet.EUNAUTHORIZED)
	}
	if wins != 1 {
		t.Fatalf("%d exchanges of one code succeeded", wins)
	}
}

// testOAuthConcurrentRefresh: of simultaneous rotations of one refresh
// token one succeeds, the others are reuse, and the grant ends up revoked
// with what the winner got.
func testOAuthConcurrentRefresh(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	_, code := consentCode(t, f, s, app, "offline tickets:read")
	first, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	const n = 6
	var wg sync.WaitGroup
	results := make([]*valet.IssuedTokens, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
		}()
	}
	wg.Wait()
	var winner *valet.IssuedTokens
	conflicts := 0
	for i, err := range errs {
		switch {
		case err == nil && winner == nil:
			winner = results[i]
		case err == nil:
			t.Fatal("two rotations of one refresh token succeeded")
		case valet.ErrorCode(err) == valet.ECONFLICT:
			conflicts++
		default:
			wantCode(t, err, valet.EUNAUTHORIZED) // the grant was already revoked
		}
	}
	if winner == nil || conflicts == 0 {
		t.Fatalf("winner %v, %d reuses detected; errors %v", winner != nil, conflicts, errs)
	}
	wantAuth(t, s, winner.AccessToken, false)
	_, err = s.Refresh(ctx, winner.RefreshToken, app.ID, nil, time.Hour)
	wantCode(t, err, valet.EUNAUTHORIZED)
}

// testOAuthAsClient: ExchangeAsClient and RefreshAsClient answer for
// credentials of the code's or token's app, and leave everything else
// undecided and untouched.
func testOAuthAsClient(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, secret := newApp(t, s, func(a *valet.App) { a.IDTokenAlg = valet.AlgES256 })
	other, otherSecret := newApp(t, s, func(a *valet.App) { a.Name = "Other" })
	public, _ := newApp(t, s, func(a *valet.App) { a.Name = "Public"; a.Public = true })
	_, code := consentCode(t, f, s, app, "openid email offline tickets:read")
	r := valet.CodeRedemption{RedirectURI: app.RedirectURIs[0], CodeVerifier: testVerifier}

	for _, c := range []struct{ name, clientID, secret string }{
		{"wrong secret", app.ClientID, secret + "x"},
		{"another app", other.ClientID, otherSecret},
		{"a public app", public.ClientID, secret},
		{"unknown client", "nobody", secret},
	} {
		got, err := s.ExchangeAsClient(ctx, code, c.clientID, c.secret, r, time.Hour)
		if got != nil || err != nil {
			t.Fatalf("exchange, %s: %+v, %v; want it undecided", c.name, got, err)
		}
	}
	got, err := s.ExchangeAsClient(ctx, "unknown", app.ClientID, secret, r, time.Hour)
	if got != nil || err != nil {
		t.Fatalf("unknown code: %+v, %v", got, err)
	}
	issued, err := s.ExchangeAsClient(ctx, code, app.ClientID, secret, r, time.Hour)
	must(t, err)
	if issued == nil || issued.RefreshToken == "" {
		t.Fatalf("the app's own credentials: %+v", issued)
	}
	wantEqual(t, issued.AppID, app.ID)
	wantEqual(t, issued.IDTokenAlg, valet.AlgES256)
	wantEqual(t, issued.UserEmail, f.owner.Email)
	wantEqual(t, issued.UserName, f.owner.Name)
	wantEqual(t, issued.AccountName, "acme")
	wantAuth(t, s, issued.AccessToken, true)

	for _, c := range []struct{ name, clientID, secret string }{
		{"wrong secret", app.ClientID, "vcs_wrong"},
		{"another app", other.ClientID, otherSecret},
		{"unknown token", app.ClientID, secret},
	} {
		token := issued.RefreshToken
		if c.name == "unknown token" {
			token = "vrt_unknown"
		}
		got, err := s.RefreshAsClient(ctx, token, c.clientID, c.secret, time.Hour)
		if got != nil || err != nil {
			t.Fatalf("refresh, %s: %+v, %v; want it undecided", c.name, got, err)
		}
	}
	next, err := s.RefreshAsClient(ctx, issued.RefreshToken, app.ClientID, secret, time.Hour)
	must(t, err)
	if next == nil || next.RefreshToken == "" || next.AppID != app.ID || next.Scopes.String() != issued.Scopes.String() {
		t.Fatalf("rotation with the app's credentials: %+v", next)
	}
	wantAuth(t, s, next.AccessToken, true)
	// The rotated token is reuse: decided here or, undecided, by Refresh.
	reuse, err := s.RefreshAsClient(ctx, issued.RefreshToken, app.ClientID, secret, time.Hour)
	if reuse != nil {
		t.Fatalf("a used token rotated again: %+v", reuse)
	}
	if err == nil {
		_, err = s.Refresh(ctx, issued.RefreshToken, app.ID, nil, time.Hour)
	}
	wantCode(t, err, valet.ECONFLICT)
	wantAuth(t, s, next.AccessToken, false)
}

// testOAuthNarrowedApp: an app whose registration loses scopes loses them
// on its installations too: grants, live tokens, the refresh after, and a
// code not yet redeemed. Another app's installations keep theirs.
func testOAuthNarrowedApp(t *testing.T, s valet.OAuthStore, _ *Clock) {
	f := newFixture(t, s, "acme")
	app, _ := newApp(t, s)
	other, _ := newApp(t, s)
	g, code := consentCode(t, f, s, app, "offline tickets:read tickets:write")
	issued, err := s.ExchangeAuthCode(ctx, code, redeem(app), time.Hour)
	must(t, err)
	_, pending := consentCode(t, f, s, app, "openid tickets:write")
	_, otherCode := consentCode(t, f, s, other, "offline tickets:write")
	otherIssued, err := s.ExchangeAuthCode(ctx, otherCode, redeem(other), time.Hour)
	must(t, err)

	app.Scopes = valet.ScopeSet{"offline", "openid", "tickets:read"}
	must(t, s.UpdateApp(ctx, app))

	wantEqual(t, wantAuth(t, s, issued.AccessToken, true).Scopes.String(), "offline tickets:read")
	grant, err := s.FindActiveGrant(ctx, f.account.ID, f.owner.ID, app.ID)
	must(t, err)
	wantEqual(t, grant.ID, g.ID)
	wantEqual(t, grant.Scopes.String(), "offline openid tickets:read") // the grant also holds the second consent's openid
	refreshed, err := s.Refresh(ctx, issued.RefreshToken, app.ID, nil, time.Hour)
	must(t, err)
	wantEqual(t, refreshed.Scopes.String(), "offline tickets:read")
	redeemed, err := s.ExchangeAuthCode(ctx, pending, redeem(app), time.Hour)
	must(t, err)
	wantEqual(t, redeemed.Scopes.String(), "openid")
	wantEqual(t, wantAuth(t, s, otherIssued.AccessToken, true).Scopes.String(), "offline tickets:write")
}
