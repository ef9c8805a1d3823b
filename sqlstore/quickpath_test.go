package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

// quickFixture is a PostgreSQL store with an account, its owner and a
// confidential app, and a must that fails the test on an error.
func quickFixture(t *testing.T) (*sqlstore.Store, *valet.Account, *valet.User, *valet.App, func(error)) {
	t.Helper()
	return quickFixtureOn(t, sqltest.Postgres(t))
}

func quickFixtureOn(t *testing.T, s *sqlstore.Store) (*sqlstore.Store, *valet.Account, *valet.User, *valet.App, func(error)) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	account := &valet.Account{Name: "acme", DisplayName: "Acme"}
	user := &valet.User{Email: "o@acme.test", Name: "O"}
	app := &valet.App{Name: "App", RedirectURIs: []string{"https://app.example/cb"},
		Scopes: valet.ScopeSet{"openid", "offline", "tickets:read"}}
	must(s.CreateAccount(ctx, account))
	must(s.CreateUser(ctx, user))
	must(s.AddMember(ctx, account.ID, user.ID, valet.RoleOwner))
	_, err := s.RegisterApp(ctx, app)
	must(err)
	return s, account, user, app, must
}

// onBothStores runs test on a new SQLite store and, when
// VALET_TEST_POSTGRES is set, a new PostgreSQL one.
func onBothStores(t *testing.T, test func(*testing.T, *sqlstore.Store)) {
	for _, store := range []struct {
		name string
		open func(testing.TB, ...sqlstore.Option) *sqlstore.Store
	}{{"sqlite", sqltest.SQLite}, {"postgres", sqltest.Postgres}} {
		t.Run(store.name, func(t *testing.T) { test(t, store.open(t)) })
	}
}

// TestRotate: a plain refresh grant takes the batched path (one
// statement on PostgreSQL), and what it stores is what the transaction would
// have stored; anything needing a decision is left to the transaction
// untouched.
func TestRotate(t *testing.T) {
	onBothStores(t, testRotate)
}

func testRotate(t *testing.T, s *sqlstore.Store) {
	ctx := context.Background()
	s, account, user, app, must := quickFixtureOn(t, s)
	other := &valet.App{Name: "Other", RedirectURIs: []string{"https://other.example/cb"}, Scopes: app.Scopes}
	_, err := s.RegisterApp(ctx, other)
	must(err)
	g, err := s.Consent(ctx, account.ID, user.ID, app.ID, app.Scopes)
	must(err)
	chain := func() *valet.IssuedTokens {
		code, err := s.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: app.RedirectURIs[0],
			Scopes: app.Scopes, Nonce: "n-1"})
		must(err)
		issued, err := s.ExchangeAuthCode(ctx, code, valet.CodeRedemption{AppID: app.ID, RedirectURI: app.RedirectURIs[0]}, time.Hour)
		must(err)
		return issued
	}

	// Another app's token, an unknown one: no decision here, nothing used.
	first := chain()
	for _, appID := range []int64{other.ID, app.ID} {
		token := first.RefreshToken
		if appID == app.ID {
			token = "vrt_unknown"
		}
		got, err := s.Rotate(ctx, token, appID, time.Hour)
		if got != nil || err != nil {
			t.Fatalf("Rotate(app %d) = %+v, %v; want it left to the transaction", appID, got, err)
		}
	}

	quick, err := s.Rotate(ctx, first.RefreshToken, app.ID, time.Hour)
	must(err)
	if quick == nil {
		t.Fatal("a plain refresh did not take the one-statement path")
	}
	// The transaction's answer for another chain of the same grant (asking
	// for every scope keeps it off the quick path).
	slow, err := s.Refresh(ctx, chain().RefreshToken, app.ID, app.Scopes, time.Hour)
	must(err)
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"grant", quick.GrantID, slow.GrantID},
		{"account", quick.AccountID, slow.AccountID},
		{"account name", quick.AccountName, slow.AccountName},
		{"user", quick.UserID, slow.UserID},
		{"app", quick.AppID, slow.AppID},
		{"scopes", quick.Scopes.String(), slow.Scopes.String()},
		{"nonce", quick.Nonce, slow.Nonce},
		{"access TTL", quick.AccessTokenTTL, slow.AccessTokenTTL},
	} {
		if c.got != c.want {
			t.Errorf("%s: one statement %v, transaction %v", c.name, c.got, c.want)
		}
	}
	// The rows: parent links, lifetimes and scopes as the transaction
	// writes them.
	row := func(issued *valet.IssuedTokens) (r [6]int64, scopes [2]string) {
		must(s.QueryRow(ctx, `SELECT a.expires_at - a.created_at, a.refresh_id - p.id, a.code_id - p.code_id,
			r.parent_id - p.id, r.expires_at - r.created_at, r.family_at - p.family_at, a.scopes, r.scopes
			FROM access_tokens a, refresh_tokens r, refresh_tokens p
			WHERE a.token_hash = $1 AND r.token_hash = $2 AND p.id = r.parent_id`,
			valet.HashSecret(issued.AccessToken), valet.HashSecret(issued.RefreshToken)).
			Scan(&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &scopes[0], &scopes[1]))
		return r, scopes
	}
	qr, qs := row(quick)
	sr, ss := row(slow)
	if qr != sr || qs != ss {
		t.Errorf("rows: one statement %v %v, transaction %v %v", qr, qs, sr, ss)
	}
	if qr[1] != 0 || qr[3] != 0 || qr[0] != time.Hour.Microseconds() {
		t.Errorf("rows of the one-statement path: %v", qr)
	}
	// The new tokens work; the used one is reuse.
	if _, err := s.Authenticate(ctx, quick.AccessToken); err != nil {
		t.Fatalf("access token of the quick path: %v", err)
	}
	if got, err := s.Rotate(ctx, first.RefreshToken, app.ID, time.Hour); got != nil || err != nil {
		t.Fatalf("a used token took the quick path: %+v, %v", got, err)
	}
	_, err = s.Refresh(ctx, first.RefreshToken, app.ID, nil, time.Hour)
	if valet.ErrorCode(err) != valet.ECONFLICT {
		t.Fatalf("reuse after the quick path: %v", err)
	}
}

// TestRedeem: a matching code exchange takes the batched path (one
// statement on PostgreSQL) and stores what the transaction would have; a
// redemption that does not match is left to the transaction untouched.
func TestRedeem(t *testing.T) {
	onBothStores(t, testRedeem)
}

func testRedeem(t *testing.T, s *sqlstore.Store) {
	ctx := context.Background()
	s, account, user, app, must := quickFixtureOn(t, s)
	var err error
	const verifier = "a-verifier-of-forty-three-characters-or-more-0123"
	code := func(scopes valet.ScopeSet) string {
		g, err := s.Consent(ctx, account.ID, user.ID, app.ID, scopes)
		must(err)
		c, err := s.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: app.RedirectURIs[0], Scopes: scopes,
			Nonce: "n-1", CodeChallenge: valet.PKCEChallenge(verifier), CodeChallengeMethod: "S256"})
		must(err)
		return c
	}
	good := valet.CodeRedemption{AppID: app.ID, RedirectURI: app.RedirectURIs[0], CodeVerifier: verifier}

	first := code(app.Scopes)
	for _, bad := range []valet.CodeRedemption{
		{AppID: app.ID + 1, RedirectURI: good.RedirectURI, CodeVerifier: verifier},
		{AppID: app.ID, RedirectURI: good.RedirectURI + "/x", CodeVerifier: verifier},
		{AppID: app.ID, RedirectURI: good.RedirectURI, CodeVerifier: verifier + "x"},
		{AppID: app.ID, RedirectURI: good.RedirectURI},
	} {
		if got, err := s.Redeem(ctx, first, bad, time.Hour); got != nil || err != nil {
			t.Fatalf("Redeem(%+v) = %+v, %v; want it left to the transaction", bad, got, err)
		}
	}
	quick, err := s.Redeem(ctx, first, good, time.Hour)
	must(err)
	if quick == nil || quick.RefreshToken == "" {
		t.Fatalf("a matching exchange did not take the one-statement path: %+v", quick)
	}
	slow, err := s.ExchangeInTransaction(ctx, code(app.Scopes), good, time.Hour)
	must(err)
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"grant", quick.GrantID, slow.GrantID},
		{"account", quick.AccountID, slow.AccountID},
		{"account name", quick.AccountName, slow.AccountName},
		{"user", quick.UserID, slow.UserID},
		{"app", quick.AppID, slow.AppID},
		{"scopes", quick.Scopes.String(), slow.Scopes.String()},
		{"nonce", quick.Nonce, slow.Nonce},
		{"user email", quick.UserEmail, user.Email},
		{"user name", quick.UserName, user.Name},
		{"user email (transaction)", slow.UserEmail, user.Email},
	} {
		if c.got != c.want {
			t.Errorf("%s: one statement %v, transaction %v", c.name, c.got, c.want)
		}
	}
	row := func(issued *valet.IssuedTokens) (r [6]int64, refreshID, parentID any, scopes [2]string) {
		must(s.QueryRow(ctx, `SELECT a.expires_at - a.created_at, r.expires_at - r.created_at, a.code_id - r.code_id,
			r.family_at - r.created_at, a.created_at - c.used_at, r.auth_time - c.auth_time, a.refresh_id, r.parent_id,
			a.scopes, r.scopes
			FROM access_tokens a, refresh_tokens r, auth_codes c
			WHERE a.token_hash = $1 AND r.token_hash = $2 AND c.id = a.code_id`,
			valet.HashSecret(issued.AccessToken), valet.HashSecret(issued.RefreshToken)).
			Scan(&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &refreshID, &parentID, &scopes[0], &scopes[1]))
		return
	}
	qr, qa, qp, qs := row(quick)
	sr, sa, sp, ss := row(slow)
	if qr != sr || qa != sa || qp != sp || qs != ss {
		t.Errorf("rows: one statement %v %v %v %v, transaction %v %v %v %v", qr, qa, qp, qs, sr, sa, sp, ss)
	}
	if qr[0] != time.Hour.Microseconds() || qa != nil || qp != nil {
		t.Errorf("rows of the one-statement path: %v %v %v", qr, qa, qp)
	}
	// Without offline, no refresh token.
	online, err := s.Redeem(ctx, code(valet.ScopeSet{"tickets:read"}), good, time.Hour)
	must(err)
	if online == nil || online.RefreshToken != "" {
		t.Fatalf("without offline: %+v", online)
	}
	var n int
	must(s.QueryRow(ctx, `SELECT COUNT(*) FROM refresh_tokens`).Scan(&n))
	if n != 2 {
		t.Errorf("%d refresh tokens stored, want 2", n)
	}
	// The used code is a replay, which revokes what it issued.
	if got, err := s.Redeem(ctx, first, good, time.Hour); got != nil || err != nil {
		t.Fatalf("a used code took the quick path: %+v, %v", got, err)
	}
	_, err = s.ExchangeAuthCode(ctx, first, good, time.Hour)
	if valet.ErrorCode(err) != valet.ECONFLICT {
		t.Fatalf("replay after the quick path: %v", err)
	}
	if _, err := s.Authenticate(ctx, quick.AccessToken); valet.ErrorCode(err) != valet.EUNAUTHORIZED {
		t.Fatalf("access token of a replayed code: %v", err)
	}
}

// TestBatch: a batch (one statement on PostgreSQL, the committer's group
// of statements on SQLite) decides each of its calls as one alone would:
// the plain ones (by app ID or by client secret) are issued, and a second
// call of the same secret, a wrong secret or redirect URI, a used or
// unknown secret are left to their transactions untouched.
func TestBatch(t *testing.T) {
	onBothStores(t, testBatch)
}

func testBatch(t *testing.T, s *sqlstore.Store) {
	ctx := context.Background()
	s, account, user, app, must := quickFixtureOn(t, s)
	g, err := s.Consent(ctx, account.ID, user.ID, app.ID, app.Scopes)
	must(err)
	secret, err := s.RotateAppSecret(ctx, app.ID)
	must(err)
	redirect := app.RedirectURIs[0]
	newCode := func(verifier string) string {
		c := &valet.AuthCode{GrantID: g.ID, RedirectURI: redirect, Scopes: app.Scopes}
		if verifier != "" {
			c.CodeChallenge, c.CodeChallengeMethod = valet.PKCEChallenge(verifier), "S256"
		}
		code, err := s.CreateAuthCode(ctx, c)
		must(err)
		return code
	}
	byApp := valet.CodeRedemption{AppID: app.ID, RedirectURI: redirect}
	verifier := "a-verifier-of-enough-length-for-pkce-0123456789"
	codes := []string{newCode(""), newCode(verifier), newCode(""), newCode(""), newCode(verifier), newCode(verifier)}
	_, err = s.ExchangeAuthCode(ctx, codes[3], byApp, time.Hour)
	must(err)

	// The matching calls come after others, and a second call of a code
	// after its first: the answers are by call, not by row order.
	got, err := s.RedeemBatch(ctx, []sqlstore.BatchCall{
		{Secret: codes[3], AppID: app.ID, Redemption: byApp},
		{Secret: "unknown", AppID: app.ID, Redemption: byApp},
		{Secret: codes[2], AppID: app.ID, Redemption: valet.CodeRedemption{AppID: app.ID, RedirectURI: "https://app.example/other"}},
		{Secret: codes[0], AppID: app.ID, Redemption: byApp},
		{Secret: codes[0], AppID: app.ID, Redemption: byApp},
		{Secret: codes[2], ClientID: app.ClientID, ClientPass: "wrong", Redemption: byApp},
		{Secret: codes[4], AppID: app.ID, Redemption: byApp}, // issued with a challenge, no verifier
		{Secret: codes[5], AppID: app.ID, Redemption: valet.CodeRedemption{AppID: app.ID, RedirectURI: redirect,
			CodeVerifier: verifier + "-wrong"}},
		{Secret: codes[1], ClientID: app.ClientID, ClientPass: secret,
			Redemption: valet.CodeRedemption{RedirectURI: redirect, CodeVerifier: verifier}},
	}, time.Hour)
	must(err)
	for i, want := range []bool{false, false, false, true, false, false, false, false, true} {
		if (got[i] != nil) != want {
			t.Errorf("redemption %d: issued %v, want %v", i, got[i] != nil, want)
		}
	}
	got = []*valet.IssuedTokens{got[3], got[8]}
	if got[0] == nil || got[1] == nil {
		t.FailNow()
	}
	for _, issued := range got[:2] {
		if issued.GrantID != g.ID || issued.AccountName != account.Name || issued.UserEmail != user.Email ||
			issued.RefreshToken == "" || issued.Scopes.String() != app.Scopes.String() {
			t.Errorf("redeemed: %+v", issued)
		}
		if _, err := s.Authenticate(ctx, issued.AccessToken); err != nil {
			t.Errorf("access token of a batch: %v", err)
		}
	}
	// The codes with the wrong redirect URI and secret, and with the wrong
	// or no verifier, were not touched.
	if _, err := s.ExchangeAuthCode(ctx, codes[2], byApp, time.Hour); err != nil {
		t.Fatalf("a code left alone by the batch: %v", err)
	}
	withVerifier := valet.CodeRedemption{AppID: app.ID, RedirectURI: redirect, CodeVerifier: verifier}
	for _, code := range codes[4:6] {
		if _, err := s.ExchangeAuthCode(ctx, code, withVerifier, time.Hour); err != nil {
			t.Fatalf("a code with a challenge left alone by the batch: %v", err)
		}
	}

	// Refresh tokens: two chains, one used token.
	used := got[0].RefreshToken
	_, err = s.Refresh(ctx, used, app.ID, nil, time.Hour)
	must(err)
	spare, err := s.ExchangeAuthCode(ctx, newCode(""), byApp, time.Hour)
	must(err)
	rotated, err := s.RotateBatch(ctx, []sqlstore.BatchCall{
		{Secret: used, AppID: app.ID},
		{Secret: "vrt_unknown", ClientID: app.ClientID, ClientPass: secret},
		{Secret: got[1].RefreshToken, AppID: app.ID},
		{Secret: got[1].RefreshToken, AppID: app.ID},
		{Secret: spare.RefreshToken, ClientID: app.ClientID, ClientPass: secret},
	}, time.Hour)
	must(err)
	for i, want := range []bool{false, false, true, false, true} {
		if (rotated[i] != nil) != want {
			t.Errorf("rotation %d: issued %v, want %v", i, rotated[i] != nil, want)
		}
	}
	rotated = []*valet.IssuedTokens{rotated[2], rotated[4]}
	if rotated[0] == nil || rotated[1] == nil {
		t.FailNow()
	}
	if rotated[0].RefreshToken == rotated[1].RefreshToken || rotated[0].AccessToken == rotated[1].AccessToken {
		t.Fatal("two rotations of a batch share tokens")
	}
	for _, issued := range rotated[:2] {
		if _, err := s.Authenticate(ctx, issued.AccessToken); err != nil {
			t.Errorf("access token of a rotation batch: %v", err)
		}
		if _, err := s.Refresh(ctx, issued.RefreshToken, app.ID, nil, time.Hour); err != nil {
			t.Errorf("refresh token of a rotation batch: %v", err)
		}
	}
	// A batch that fails is every member's error, not a decision left to
	// their transactions (which could take a committed batch for a replay).
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if out, err := s.RotateBatch(canceled, []sqlstore.BatchCall{{Secret: rotated[0].RefreshToken, AppID: app.ID}},
		time.Hour); err == nil {
		t.Fatalf("a failed batch answered %v, no error", out)
	}
	// The second call of a token in the batch is reuse, decided by its
	// transaction: the grant is revoked.
	_, err = s.Refresh(ctx, got[1].RefreshToken, app.ID, nil, time.Hour)
	if valet.ErrorCode(err) != valet.ECONFLICT {
		t.Fatalf("the token rotated by the batch, used again: %v", err)
	}
}

// TestPlainTokensStillWork: codes and tokens made before they were
// ordered (valet.NewOrderedSecret), stored as a plain SHA-256, are found
// and used as before: a code redeemed, an access token authenticated, a
// refresh token rotated into ordered ones, and its reuse still caught.
func TestPlainTokensStillWork(t *testing.T) {
	onBothStores(t, func(t *testing.T, s *sqlstore.Store) {
		ctx := context.Background()
		s, account, user, app, must := quickFixtureOn(t, s)
		g, err := s.Consent(ctx, account.ID, user.ID, app.ID, app.Scopes)
		must(err)
		// rewrite stores the key of a plain secret where the ordered one's is.
		rewrite := func(table, column, ordered, plain string) {
			t.Helper()
			var id int64
			must(s.QueryRow(ctx, `UPDATE `+table+` SET `+column+` = $1 WHERE `+column+` = $2 RETURNING id`,
				valet.HashSecret(plain), valet.HashSecret(ordered)).Scan(&id))
			if len(valet.HashSecret(plain)) != 32 {
				t.Fatalf("%s is not a plain secret", plain)
			}
		}
		newCode := func() string {
			code, err := s.CreateAuthCode(ctx, &valet.AuthCode{GrantID: g.ID, RedirectURI: app.RedirectURIs[0], Scopes: app.Scopes})
			must(err)
			plain := valet.NewSecret("")
			rewrite("auth_codes", "code_hash", code, plain)
			return plain
		}
		redemption := valet.CodeRedemption{AppID: app.ID, RedirectURI: app.RedirectURIs[0]}

		// The batched path and the transaction each redeem a plain code.
		quick, err := s.Redeem(ctx, newCode(), redemption, time.Hour)
		must(err)
		slow, err := s.ExchangeInTransaction(ctx, newCode(), redemption, time.Hour)
		must(err)
		if quick == nil || slow == nil {
			t.Fatalf("plain codes not redeemed: %+v, %+v", quick, slow)
		}

		plainAccess, plainRefresh := valet.NewSecret(valet.PrefixAccessToken), valet.NewSecret(valet.PrefixRefreshToken)
		rewrite("access_tokens", "token_hash", quick.AccessToken, plainAccess)
		rewrite("refresh_tokens", "token_hash", quick.RefreshToken, plainRefresh)
		if cred, err := s.Authenticate(ctx, plainAccess); err != nil || cred.GrantID != g.ID {
			t.Fatalf("a plain access token: %+v, %v", cred, err)
		}
		rotated, err := s.Rotate(ctx, plainRefresh, app.ID, time.Hour)
		must(err)
		if rotated == nil || len(valet.HashSecret(rotated.RefreshToken)) != 40 {
			t.Fatalf("a plain refresh token rotated into %+v", rotated)
		}
		if _, err := s.Authenticate(ctx, rotated.AccessToken); err != nil {
			t.Fatalf("the access token it rotated into: %v", err)
		}
		if _, err := s.Refresh(ctx, plainRefresh, app.ID, nil, time.Hour); valet.ErrorCode(err) != valet.ECONFLICT {
			t.Fatalf("reuse of a plain refresh token: %v", err)
		}
		if _, err := s.Authenticate(ctx, rotated.AccessToken); valet.ErrorCode(err) != valet.EUNAUTHORIZED {
			t.Fatalf("after the reuse, the family's access token: %v", err)
		}
	})
}
