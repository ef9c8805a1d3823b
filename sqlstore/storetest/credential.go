package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
)

func testAPIKeys(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")

	k := &valet.APIKey{AccountID: a.account.ID, UserID: a.agent.ID, Name: "Zapier"}
	secret, err := s.CreateAPIKey(ctx, k)
	must(t, err)
	if !strings.HasPrefix(secret, valet.PrefixAPIKey) || k.ID == 0 || k.Hint != valet.SecretHint(secret) ||
		!k.Scopes.Contains(valet.APIScopes()) || k.LastUsedDatetime != nil {
		t.Fatalf("key %s, secret %q", dump(k), secret)
	}
	wantTime(t, "created_datetime", k.CreatedDatetime)
	narrow := &valet.APIKey{AccountID: a.account.ID, UserID: a.owner.ID, Scopes: valet.ScopeSet{valet.ScopeTicketsRead}}
	narrowSecret, err := s.CreateAPIKey(ctx, narrow)
	must(t, err)

	c, err := s.Authenticate(ctx, secret)
	must(t, err)
	wantEqual(t, c, &valet.Credential{Kind: valet.CredentialAPIKey, ID: k.ID, AccountID: a.account.ID,
		UserID: a.agent.ID, UserEmail: a.agent.Email, Role: valet.RoleAgent, Scopes: k.Scopes})
	c, err = s.Authenticate(ctx, narrowSecret)
	must(t, err)
	wantEqual(t, c.Scopes, valet.ScopeSet{valet.ScopeTicketsRead})

	for _, bad := range []string{"", "vak_", secret + "x", strings.TrimPrefix(secret, valet.PrefixAPIKey),
		valet.PrefixAccessToken + strings.TrimPrefix(secret, valet.PrefixAPIKey), valet.NewSecret(valet.PrefixAPIKey)} {
		_, err := s.Authenticate(ctx, bad)
		wantCode(t, err, valet.EUNAUTHORIZED)
	}

	failures := []struct {
		name string
		key  valet.APIKey
		code string
	}{
		{"user of another account", valet.APIKey{AccountID: a.account.ID, UserID: b.agent.ID}, valet.ENOTFOUND},
		{"no such account", valet.APIKey{AccountID: b.account.ID + 1000, UserID: a.agent.ID}, valet.ENOTFOUND},
		{"identity scope", valet.APIKey{AccountID: a.account.ID, UserID: a.agent.ID, Scopes: valet.ScopeSet{valet.ScopeOpenID}}, valet.EINVALID},
		{"unknown scope", valet.APIKey{AccountID: a.account.ID, UserID: a.agent.ID, Scopes: valet.ScopeSet{"root"}}, valet.EINVALID},
		{"long name", valet.APIKey{AccountID: a.account.ID, UserID: a.agent.ID, Name: strings.Repeat("n", 101)}, valet.EINVALID},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateAPIKey(ctx, &tt.key)
			wantCode(t, err, tt.code)
		})
	}

	keys, err := s.ListAPIKeys(ctx, a.account.ID)
	must(t, err)
	if len(keys) != 2 || keys[0].ID != narrow.ID || keys[1].ID != k.ID {
		t.Fatalf("keys %s, want newest first", dump(keys))
	}
	wantEqual(t, keys[1], *k)
	bkeys, err := s.ListAPIKeys(ctx, b.account.ID)
	must(t, err)
	if len(bkeys) != 0 {
		t.Fatalf("beta lists %s", dump(bkeys))
	}

	// Last-used times arrive in batches and never go backwards.
	used := time.Now().UTC().Truncate(time.Microsecond)
	must(t, s.TouchAPIKeys(ctx, map[int64]time.Time{k.ID: used, k.ID + 1000: used}))
	must(t, s.TouchAPIKeys(ctx, map[int64]time.Time{k.ID: used.Add(-time.Hour)}))
	must(t, s.TouchAPIKeys(ctx, nil))
	keys, err = s.ListAPIKeys(ctx, a.account.ID)
	must(t, err)
	if keys[1].LastUsedDatetime == nil || !keys[1].LastUsedDatetime.Equal(used) || keys[0].LastUsedDatetime != nil {
		t.Fatalf("last used %s, want %v", dump(keys), used)
	}

	wantCode(t, s.DeleteAPIKey(ctx, b.account.ID, k.ID), valet.ENOTFOUND)
	must(t, s.DeleteAPIKey(ctx, a.account.ID, k.ID))
	wantCode(t, s.DeleteAPIKey(ctx, a.account.ID, k.ID), valet.ENOTFOUND)
	_, err = s.Authenticate(ctx, secret)
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.Authenticate(ctx, narrowSecret)
	must(t, err)
}

func testAccessTokens(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")

	app := &valet.App{ClientID: "hub", Name: "The Hub", Scopes: valet.ScopeSet{valet.ScopeOpenID, valet.ScopeTicketsRead,
		valet.ScopeTicketsWrite, valet.ScopeOffline}}
	must(t, s.CreateApp(ctx, app))
	if app.ID == 0 || len(app.Scopes) != 4 {
		t.Fatalf("app %s", dump(app))
	}
	wantCode(t, s.CreateApp(ctx, &valet.App{ClientID: "hub", Name: "Impostor"}), valet.ECONFLICT)
	wantField(t, s.CreateApp(ctx, &valet.App{ClientID: "x", Name: ""}), "name")
	wantField(t, s.CreateApp(ctx, &valet.App{ClientID: "y", Name: "Y", Scopes: valet.ScopeSet{"god"}}), "scopes")
	generated := &valet.App{Name: "No client id"}
	must(t, s.CreateApp(ctx, generated))
	if generated.ClientID == "" {
		t.Fatal("no client_id generated")
	}

	g := &valet.Grant{AccountID: a.account.ID, UserID: a.agent.ID, AppID: app.ID,
		Scopes: valet.ScopeSet{valet.ScopeTicketsRead, valet.ScopeTicketsWrite, valet.ScopeOpenID}}
	must(t, s.CreateGrant(ctx, g))
	if g.ID == 0 || g.RevokedDatetime != nil {
		t.Fatalf("grant %s", dump(g))
	}
	wantTime(t, "created_datetime", g.CreatedDatetime)
	grantFailures := []struct {
		name  string
		grant valet.Grant
		code  string
	}{
		{"unknown app", valet.Grant{AccountID: a.account.ID, UserID: a.agent.ID, AppID: app.ID + 1000}, valet.ENOTFOUND},
		{"user of another account", valet.Grant{AccountID: a.account.ID, UserID: b.agent.ID, AppID: app.ID}, valet.ENOTFOUND},
		{"scope the app did not register", valet.Grant{AccountID: a.account.ID, UserID: a.agent.ID, AppID: app.ID,
			Scopes: valet.ScopeSet{valet.ScopeCustomersRead}}, valet.EINVALID},
	}
	for _, tt := range grantFailures {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, s.CreateGrant(ctx, &tt.grant), tt.code)
		})
	}

	token, err := s.CreateAccessToken(ctx, g.ID, valet.ScopeSet{valet.ScopeTicketsRead}, time.Hour)
	must(t, err)
	if !strings.HasPrefix(token, valet.PrefixAccessToken) {
		t.Fatalf("token %q", token)
	}
	c, err := s.Authenticate(ctx, token)
	must(t, err)
	if d := time.Until(c.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("expires in %v", d)
	}
	wantEqual(t, c, &valet.Credential{Kind: valet.CredentialOAuth, ID: g.ID, AccountID: a.account.ID, UserID: a.agent.ID,
		UserEmail: a.agent.Email, Role: valet.RoleAgent, AppID: app.ID, GrantID: g.ID, Scopes: valet.ScopeSet{valet.ScopeTicketsRead},
		ExpiresAt: c.ExpiresAt})
	full, err := s.CreateAccessToken(ctx, g.ID, nil, time.Hour)
	must(t, err)
	c, err = s.Authenticate(ctx, full)
	must(t, err)
	wantEqual(t, c.Scopes, g.Scopes)

	short, err := s.CreateAccessToken(ctx, g.ID, nil, time.Millisecond)
	must(t, err)
	time.Sleep(5 * time.Millisecond)
	_, err = s.Authenticate(ctx, short)
	wantCode(t, err, valet.EUNAUTHORIZED)

	_, err = s.CreateAccessToken(ctx, g.ID, valet.ScopeSet{valet.ScopeOffline}, time.Hour)
	wantField(t, err, "scopes")
	_, err = s.CreateAccessToken(ctx, g.ID+1000, nil, time.Hour)
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.CreateAccessToken(ctx, g.ID, nil, 0)
	wantCode(t, err, valet.EINVALID)

	// Revocation is instant, for every token of the grant, and only in the
	// grant's account.
	wantCode(t, s.RevokeGrant(ctx, b.account.ID, g.ID), valet.ENOTFOUND)
	wantCode(t, s.RevokeGrant(ctx, a.account.ID, g.ID+1000), valet.ENOTFOUND)
	_, err = s.Authenticate(ctx, token)
	must(t, err)
	must(t, s.RevokeGrant(ctx, a.account.ID, g.ID))
	must(t, s.RevokeGrant(ctx, a.account.ID, g.ID))
	for _, tok := range []string{token, full} {
		_, err = s.Authenticate(ctx, tok)
		wantCode(t, err, valet.EUNAUTHORIZED)
	}
	_, err = s.CreateAccessToken(ctx, g.ID, nil, time.Hour)
	wantCode(t, err, valet.ENOTFOUND)
}

// testRemovedMember checks that a user's credentials stop working in an
// account the moment the user leaves it.
func testRemovedMember(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")
	must(t, s.AddMember(ctx, b.account.ID, a.agent.ID, valet.RoleAgent))

	keyA, err := s.CreateAPIKey(ctx, &valet.APIKey{AccountID: a.account.ID, UserID: a.agent.ID})
	must(t, err)
	keyB, err := s.CreateAPIKey(ctx, &valet.APIKey{AccountID: b.account.ID, UserID: a.agent.ID})
	must(t, err)
	app := &valet.App{ClientID: "hub", Name: "Hub", Scopes: valet.ScopeSet{valet.ScopeTicketsRead}}
	must(t, s.CreateApp(ctx, app))
	g := &valet.Grant{AccountID: a.account.ID, UserID: a.agent.ID, AppID: app.ID, Scopes: app.Scopes}
	must(t, s.CreateGrant(ctx, g))
	token, err := s.CreateAccessToken(ctx, g.ID, nil, time.Hour)
	must(t, err)
	for _, secret := range []string{keyA, keyB, token} {
		_, err := s.Authenticate(ctx, secret)
		must(t, err)
	}

	must(t, s.RemoveMember(ctx, a.account.ID, a.agent.ID))
	if o, ok := s.(valet.OAuthService); ok {
		entries, err := o.ListAudit(ctx, a.account.ID, 1)
		must(t, err)
		if len(entries) != 1 || entries[0].Action != valet.AuditGrantRevoked || entries[0].AppID != app.ID {
			t.Fatalf("audit after removing the member: %s", dump(entries))
		}
	}
	for _, secret := range []string{keyA, token} {
		_, err := s.Authenticate(ctx, secret)
		wantCode(t, err, valet.EUNAUTHORIZED)
	}
	c, err := s.Authenticate(ctx, keyB)
	must(t, err)
	if c.AccountID != b.account.ID {
		t.Fatalf("credential %s", dump(c))
	}
	keys, err := s.ListAPIKeys(ctx, a.account.ID)
	must(t, err)
	if len(keys) != 0 {
		t.Fatalf("a removed member's keys remain: %s", dump(keys))
	}
	// Coming back revives neither the deleted key nor the revoked grant.
	must(t, s.AddMember(ctx, a.account.ID, a.agent.ID, valet.RoleAgent))
	for _, secret := range []string{keyA, token} {
		_, err = s.Authenticate(ctx, secret)
		wantCode(t, err, valet.EUNAUTHORIZED)
	}
}

func testSessions(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")

	sess := &valet.Session{UserID: a.owner.ID, ExpiresDatetime: time.Now().Add(time.Hour)}
	secret, err := s.CreateSession(ctx, sess)
	must(t, err)
	if !strings.HasPrefix(secret, valet.PrefixSession) || sess.ID == 0 || len(sess.CSRFToken) < 32 {
		t.Fatalf("session %+v, secret %q", sess, secret)
	}
	wantTime(t, "created_datetime", sess.CreatedDatetime)
	got, err := s.FindSession(ctx, secret)
	must(t, err)
	wantEqual(t, got, sess)

	must(t, s.SetSessionAccount(ctx, secret, b.account.ID))
	got, err = s.FindSession(ctx, secret)
	must(t, err)
	if got.AccountID != b.account.ID || got.CSRFToken != sess.CSRFToken {
		t.Fatalf("session %+v", got)
	}
	wantCode(t, s.SetSessionAccount(ctx, secret, b.account.ID+1000), valet.ENOTFOUND)
	wantCode(t, s.SetSessionAccount(ctx, valet.NewSecret(valet.PrefixSession), a.account.ID), valet.EUNAUTHORIZED)

	other := &valet.Session{UserID: a.agent.ID, AccountID: a.account.ID, ExpiresDatetime: time.Now().Add(time.Hour)}
	otherSecret, err := s.CreateSession(ctx, other)
	must(t, err)
	if other.CSRFToken == sess.CSRFToken || otherSecret == secret {
		t.Fatal("sessions share secrets")
	}

	expired := &valet.Session{UserID: a.owner.ID, ExpiresDatetime: time.Now().Add(-time.Second)}
	expiredSecret, err := s.CreateSession(ctx, expired)
	must(t, err)
	_, err = s.FindSession(ctx, expiredSecret)
	wantCode(t, err, valet.EUNAUTHORIZED)
	wantCode(t, s.SetSessionAccount(ctx, expiredSecret, a.account.ID), valet.EUNAUTHORIZED)
	_, err = s.FindSession(ctx, valet.NewSecret(valet.PrefixSession))
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.CreateSession(ctx, &valet.Session{UserID: b.owner.ID + 1000, ExpiresDatetime: time.Now().Add(time.Hour)})
	wantCode(t, err, valet.ENOTFOUND)

	// OpenSession: the session, its user and the user's accounts by name;
	// a user of no account has none; dead sessions are refused alike.
	must(t, s.AddMember(ctx, b.account.ID, a.owner.ID, valet.RoleAgent))
	in, err := s.OpenSession(ctx, secret)
	must(t, err)
	wantEqual(t, in.Session.AccountID, b.account.ID)
	wantEqual(t, in.Session.CSRFToken, sess.CSRFToken)
	wantEqual(t, in.Session.CreatedDatetime, sess.CreatedDatetime)
	wantEqual(t, in.User.Email, a.owner.Email)
	wantEqual(t, in.User.ID, a.owner.ID)
	if len(in.Memberships) != 2 || in.Memberships[0].Account.Name != "alpha" || in.Memberships[0].Role != valet.RoleOwner ||
		in.Memberships[1].Account.Name != "beta" || in.Memberships[1].Role != valet.RoleAgent ||
		in.Memberships[1].Account.DisplayName != b.account.DisplayName {
		t.Fatalf("memberships %s", dump(in.Memberships))
	}
	loner := &valet.User{Email: "loner@example.test", Name: "Lone"}
	must(t, s.CreateUser(ctx, loner))
	lonerSecret, err := s.CreateSession(ctx, &valet.Session{UserID: loner.ID, ExpiresDatetime: time.Now().Add(time.Hour)})
	must(t, err)
	in, err = s.OpenSession(ctx, lonerSecret)
	must(t, err)
	if in.User.ID != loner.ID || in.Memberships == nil || len(in.Memberships) != 0 || in.Session.AccountID != 0 {
		t.Fatalf("a user of no account: %s", dump(in))
	}
	_, err = s.OpenSession(ctx, expiredSecret)
	wantCode(t, err, valet.EUNAUTHORIZED)

	must(t, s.DeleteSession(ctx, secret))
	must(t, s.DeleteSession(ctx, secret))
	_, err = s.FindSession(ctx, secret)
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.OpenSession(ctx, secret)
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.FindSession(ctx, otherSecret)
	must(t, err)
}
