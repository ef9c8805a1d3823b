package sqlstore

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"time"

	"github.com/valethq/valet"
)

// CreateAuthCode implements valet.OAuthService.
func (s *Store) CreateAuthCode(ctx context.Context, c *valet.AuthCode) (string, error) {
	const op = "sqlstore.CreateAuthCode"
	scopes, err := valet.ParseScopes(c.Scopes.String())
	if err != nil {
		return "", s.fail(op, err, "")
	}
	if c.RedirectURI == "" {
		return "", invalid(op, "redirect_uri", "is required")
	}
	code := valet.NewOrderedSecret("")
	if s.d != sqliteDialect {
		// One statement: the code is stored when the grant is live and
		// holds the scopes; anything else is left to the transaction,
		// which says what is wrong.
		now := s.now()
		authTime := c.AuthTime
		if authTime.IsZero() {
			authTime = now
		}
		err := s.w.QueryRowContext(ctx, `WITH g AS (
				SELECT id, app_id, account_id, user_id FROM grants
				WHERE id = $2 AND revoked_at IS NULL AND string_to_array(scopes, ' ') @> string_to_array($7, ' ')
			), code AS (
				INSERT INTO auth_codes (code_hash, grant_id, redirect_uri, code_challenge, challenge_method, nonce,
					scopes, auth_time, created_at, expires_at)
				SELECT $1, id, $3, $4, $5, $6, $7, $8, $9, $10 FROM g RETURNING id
			)
			SELECT code.id, g.app_id, g.account_id, g.user_id FROM code, g`,
			valet.HashSecret(code), c.GrantID, c.RedirectURI, c.CodeChallenge, c.CodeChallengeMethod, c.Nonce,
			scopes.String(), micros(authTime), micros(now), micros(now.Add(valet.AuthCodeTTL))).
			Scan(&c.ID, &c.AppID, &c.AccountID, &c.UserID)
		if err == nil {
			c.Scopes, c.AuthTime, c.CreatedDatetime, c.ExpiresDatetime, c.UsedDatetime =
				scopes, authTime, now, now.Add(valet.AuthCodeTTL), nil
			return code, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", s.fail(op, err, "")
		}
	}
	var pieceErr error
	err = s.grouped(ctx, func(ctx context.Context, tx *tx) error {
		g, err := scanGrant(tx.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM grants WHERE id = $1 AND revoked_at IS NULL`, c.GrantID))
		if err != nil {
			pieceErr = s.fail(op, err, "Grant not found.")
			return pieceErr
		}
		if !g.Scopes.Contains(scopes) {
			pieceErr = invalid(op, "scopes", "must be among the grant's scopes")
			return pieceErr
		}
		c.Scopes, c.AppID, c.AccountID, c.UserID = scopes, g.AppID, g.AccountID, g.UserID
		c.CreatedDatetime, c.ExpiresDatetime, c.UsedDatetime = tx.now, tx.now.Add(valet.AuthCodeTTL), nil
		if c.AuthTime.IsZero() {
			c.AuthTime = tx.now
		}
		pieceErr = s.fail(op, tx.QueryRowContext(ctx, `INSERT INTO auth_codes (code_hash, grant_id, redirect_uri, code_challenge,
			challenge_method, nonce, scopes, auth_time, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
			valet.HashSecret(code), c.GrantID, c.RedirectURI, c.CodeChallenge, c.CodeChallengeMethod, c.Nonce,
			scopes.String(), micros(c.AuthTime), micros(tx.now), micros(c.ExpiresDatetime)).Scan(&c.ID), "")
		return pieceErr
	})
	if err != nil {
		return "", groupFail(s, op, err, pieceErr)
	}
	return code, nil
}

const msgInvalidGrant = "The authorization grant is invalid, expired or revoked."

// ExchangeAuthCode implements valet.OAuthService.
func (s *Store) ExchangeAuthCode(ctx context.Context, code string, r valet.CodeRedemption, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	const op = "sqlstore.ExchangeAuthCode"
	if accessTTL <= 0 {
		return nil, invalid(op, "ttl", "must be positive")
	}
	if r.CodeVerifier != "" || !r.PublicClient {
		out, err := s.redeem(ctx, code, presenter{appID: r.AppID}, r, accessTTL)
		if err != nil || out != nil {
			return out, s.fail(op, err, "")
		}
	}
	out, err := s.groupedIssue(ctx, op, func(ctx context.Context, tx *tx) (*valet.IssuedTokens, error) {
		return s.exchangeAuthCode(ctx, tx, code, presenter{appID: r.AppID}, r, accessTTL)
	})
	return out, err
}

// presenter is the client a one-statement path checks: an app the server
// authenticated, or a confidential client not yet authenticated, whose id
// and secret the statement checks with everything else.
type presenter struct {
	appID            int64
	clientID, secret string
}

// redeemBatch is a batch of code exchanges that match, in one statement
// (see batch.go): for each code that is live, unused, its grant live, and
// was issued to the client, for the redirect URI, with the challenge of the
// verifier (or none, with none), it marks the code used and issues the
// tokens. A code that is anything else returns no row and is not touched;
// exchangeAuthCode then decides.
const redeemBatch = `WITH r AS (
		SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::text[], $5::bytea[], $6::text[],
			$7::text[], $8::text[], $9::bytea[], $10::bigint[], $11::bytea[])
			AS r(i, code_hash, client_app, client_id, secret_hash, redirect_uri, challenge, method,
				access_hash, access_expires, refresh_hash)
	), hit AS (
		-- Each code first, by its index (see rotateBatch).
		SELECT r.*, c.id, c.grant_id, g.app_id, g.account_id, g.user_id, c.scopes, c.nonce, c.auth_time,
			ac.name AS account_name, a.id_token_alg, u.email AS user_email, u.name AS user_name, c.tid
		FROM r, LATERAL (SELECT ctid AS tid, * FROM auth_codes c WHERE c.code_hash = r.code_hash LIMIT 1) c,
			LATERAL (SELECT * FROM grants g WHERE g.id = c.grant_id LIMIT 1) g,
			LATERAL (SELECT * FROM apps a WHERE a.id = g.app_id LIMIT 1) a,
			LATERAL (SELECT * FROM accounts ac WHERE ac.id = g.account_id LIMIT 1) ac,
			LATERAL (SELECT * FROM users u WHERE u.id = g.user_id LIMIT 1) u
		WHERE c.used_at IS NULL AND c.expires_at > $12 AND g.revoked_at IS NULL AND ` + presenterMatches + `
			AND c.redirect_uri = r.redirect_uri AND c.code_challenge = r.challenge AND c.challenge_method = r.method
	), c AS (
		UPDATE auth_codes c SET used_at = $12 FROM hit
		WHERE c.ctid = hit.tid AND c.used_at IS NULL
		RETURNING hit.*
	), access AS (
		INSERT INTO access_tokens (token_hash, grant_id, scopes, created_at, expires_at, code_id)
		SELECT access_hash, grant_id, scopes, $12, access_expires, id FROM c
	), refresh AS (
		INSERT INTO refresh_tokens (token_hash, grant_id, code_id, scopes, nonce, auth_time, family_at,
			created_at, expires_at)
		SELECT refresh_hash, grant_id, id, scopes, nonce, auth_time, $12, $12, $13 FROM c
		WHERE ' ' || scopes || ' ' LIKE '% offline %'
	)
	SELECT i, grant_id, app_id, account_id, user_id, scopes, nonce, auth_time, account_name, id_token_alg,
		user_email, user_name FROM c`

// errBatchRow is a batch statement's row that names no call of the batch.
var errBatchRow = errors.New("sqlstore: a batch answered a row of no call")

// presenterMatches is a batch row's client check: the app the server
// authenticated (r.client_app, 0 when none), or a confidential client's
// id and secret hash (r.client_id, empty when none).
const presenterMatches = `(a.id = r.client_app OR (a.client_id = r.client_id AND a.secret_hash = r.secret_hash AND a.public = 0))`

// columns are p's values for a batch row's client_app, client_id and
// secret_hash.
func (p presenter) columns() (int64, string, []byte) {
	if p.clientID == "" {
		return p.appID, "", nil
	}
	return 0, p.clientID, valet.HashSecret(p.secret)
}

// issuing is one call of a batched one-statement path: the secret it
// presents (code or refresh token), its client, and the new tokens its
// answer gets with their hashes, drawn and hashed by the caller so that
// the batch (on SQLite the one committer) does not.
type issuing struct {
	hash                      []byte
	p                         presenter
	r                         valet.CodeRedemption // for a code
	accessToken, refreshToken string
	accessHash, refreshHash   []byte
	accessTTL                 time.Duration
}

func (s *Store) newIssuing(secret string, p presenter, accessTTL time.Duration) *issuing {
	c := &issuing{hash: valet.HashSecret(secret), p: p, accessTTL: accessTTL,
		accessToken: valet.NewOrderedSecret(valet.PrefixAccessToken), refreshToken: valet.NewOrderedSecret(valet.PrefixRefreshToken)}
	c.accessHash, c.refreshHash = valet.HashSecret(c.accessToken), valet.HashSecret(c.refreshToken)
	return c
}

// issued is t, what the batch read for c, with c's new tokens issued now.
func (c *issuing) issued(t *valet.IssuedTokens, now time.Time) *valet.IssuedTokens {
	t.AccessToken, t.RefreshToken, t.AccessTokenTTL = c.accessToken, c.refreshToken, c.accessTTL
	t.AccessExpires = now.Add(c.accessTTL)
	return t
}

// batchRows is what a batch is built from: the calls that take part (the
// first of each secret; a later one is left to its transaction, which
// sees the first one's use), by their index, and the answers to fill.
func batchRows(in []*issuing) (rows []int, out []*valet.IssuedTokens) {
	out = make([]*valet.IssuedTokens, len(in))
	seen := make(map[string]bool, len(in))
	for i, c := range in {
		if !seen[string(c.hash)] {
			seen[string(c.hash)] = true
			rows = append(rows, i)
		}
	}
	return rows, out
}

// batchColumns are the arrays both batch statements take, an element per
// row: the call's index, its secret's hash, its client, and the hashes
// and expiry of the tokens it would get.
type batchColumns struct {
	idx, clientApps, accessExpires        []int64
	hashes, secretHashes, access, refresh [][]byte
	clientIDs                             []string
}

func newBatchColumns(in []*issuing, rows []int, now time.Time) batchColumns {
	n := len(rows)
	b := batchColumns{idx: make([]int64, n), clientApps: make([]int64, n), accessExpires: make([]int64, n),
		hashes: make([][]byte, n), secretHashes: make([][]byte, n), access: make([][]byte, n),
		refresh: make([][]byte, n), clientIDs: make([]string, n)}
	for j, i := range rows {
		c := in[i]
		b.idx[j], b.hashes[j] = int64(i), c.hash
		b.clientApps[j], b.clientIDs[j], b.secretHashes[j] = c.p.columns()
		b.access[j], b.accessExpires[j] = c.accessHash, micros(now.Add(c.accessTTL))
		b.refresh[j] = c.refreshHash
	}
	return b
}

// redeem runs a code exchange through the redeemBatch (PostgreSQL). It
// returns nil tokens and no error when the code needs exchangeAuthCode's
// decisions.
func (s *Store) redeem(ctx context.Context, code string, p presenter, r valet.CodeRedemption, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	c := s.newIssuing(code, p, accessTTL)
	c.r = r
	if s.d == sqliteDialect {
		return s.groupedFast(ctx, fastRedemption, c)
	}
	return s.redemptions.do(ctx, c)
}

func (s *Store) redeemAll(ctx context.Context, in []*issuing) ([]*valet.IssuedTokens, error) {
	now := s.now()
	rows, out := batchRows(in)
	b := newBatchColumns(in, rows, now)
	redirects, challenges, methods := make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
	for j, i := range rows {
		redirects[j] = in[i].r.RedirectURI
		if v := in[i].r.CodeVerifier; v != "" {
			challenges[j], methods[j] = valet.PKCEChallenge(v), "S256"
		}
	}
	res, err := s.w.QueryContext(ctx, redeemBatch, b.idx, b.hashes, b.clientApps, b.clientIDs, b.secretHashes, redirects,
		challenges, methods, b.access, b.accessExpires, b.refresh, micros(now),
		micros(now.Add(min(s.refreshIdle, s.refreshAbsolute))))
	if err != nil {
		return nil, err
	}
	if err := readIssued(res, in, out, now, true); err != nil {
		return nil, err
	}
	for _, t := range out {
		if t != nil && !t.Scopes.Has(valet.ScopeOffline) {
			t.RefreshToken = "" // the statement stored none
		}
	}
	return out, nil
}

// readIssued fills out from the rows of a batch statement (redeemBatch,
// rotateBatch), each the index of its call, the grant and what the answer
// needs; a code's rows end with the user's email and name (withUser).
func readIssued(res *sql.Rows, in []*issuing, out []*valet.IssuedTokens, now time.Time, withUser bool) error {
	defer res.Close()
	for res.Next() {
		var i int
		var scopes string
		var authTime int64
		t := &valet.IssuedTokens{}
		dest := []any{&i, &t.GrantID, &t.AppID, &t.AccountID, &t.UserID, &scopes, &t.Nonce, &authTime,
			&t.AccountName, &t.IDTokenAlg}
		if withUser {
			dest = append(dest, &t.UserEmail, &t.UserName)
		}
		if err := res.Scan(dest...); err != nil {
			return err
		}
		if i < 0 || i >= len(in) {
			return errBatchRow
		}
		out[i] = in[i].issued(t, now)
		t.Scopes, t.AuthTime = parseStoredScopes(scopes), fromMicros(authTime)
	}
	return res.Err()
}

// ExchangeAsClient implements valet.OAuthService. On PostgreSQL it is
// redeemBatch, which decides only the plain case (anything else is
// left to ExchangeAuthCode); on SQLite the exchange's transaction checks
// the secret against the app it reads with the code anyway, then decides
// everything as ExchangeAuthCode does.
func (s *Store) ExchangeAsClient(ctx context.Context, code, clientID, secret string, r valet.CodeRedemption, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	const op = "sqlstore.ExchangeAsClient"
	if clientID == "" || secret == "" || accessTTL <= 0 {
		return nil, nil
	}
	p := presenter{clientID: clientID, secret: secret}
	out, err := s.redeem(ctx, code, p, r, accessTTL)
	if err != nil || out != nil || s.d != sqliteDialect {
		return out, s.fail(op, err, "")
	}
	out, err = s.groupedIssue(ctx, op, func(ctx context.Context, tx *tx) (*valet.IssuedTokens, error) {
		return s.exchangeAuthCode(ctx, tx, code, p, r, accessTTL)
	})
	if errors.Is(err, errUndecided) {
		return nil, nil
	}
	return out, err
}

// errUndecided is a transaction's answer to credentials that do not
// authenticate a client: nothing changed, and the caller authenticates the
// client its own way before asking again.
var errUndecided = errors.New("sqlstore: client not authenticated")

// authenticates reports whether p is the app whose row says clientID,
// secretHash and public: by ID, or by its secret for a confidential app.
func (p presenter) authenticates(appID int64, clientID string, secretHash []byte, public bool) bool {
	if p.clientID == "" {
		return p.appID == appID
	}
	return p.clientID == clientID && !public && len(secretHash) > 0 &&
		subtle.ConstantTimeCompare(secretHash, valet.HashSecret(p.secret)) == 1
}

// exchangeAuthCode is ExchangeAuthCode's transaction. A replayed code
// answers keep(err): the revocation commits.
func (s *Store) exchangeAuthCode(ctx context.Context, tx *tx, code string, p presenter, r valet.CodeRedemption, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	const op = "sqlstore.ExchangeAuthCode"
	c := &valet.AuthCode{}
	var scopes, accountName, email, name, clientID, alg string
	var authTime, created, expires int64
	var used, grantRevoked sql.NullInt64
	var secretHash []byte
	var public bool
	err := tx.QueryRowContext(ctx, `SELECT c.id, c.grant_id, g.app_id, g.account_id, g.user_id, c.redirect_uri,
		c.code_challenge, c.challenge_method, c.nonce, c.scopes, c.auth_time, c.created_at, c.expires_at,
		c.used_at, g.revoked_at, ac.name, u.email, u.name, a.client_id, a.secret_hash, a.public, a.id_token_alg
		FROM auth_codes c JOIN grants g ON g.id = c.grant_id JOIN accounts ac ON ac.id = g.account_id
		JOIN users u ON u.id = g.user_id JOIN apps a ON a.id = g.app_id
		WHERE c.code_hash = $1`, valet.HashSecret(code)).
		Scan(&c.ID, &c.GrantID, &c.AppID, &c.AccountID, &c.UserID, &c.RedirectURI, &c.CodeChallenge,
			&c.CodeChallengeMethod, &c.Nonce, &scopes, &authTime, &created, &expires, &used, &grantRevoked, &accountName,
			&email, &name, &clientID, &secretHash, &public, &alg)
	if errors.Is(err, sql.ErrNoRows) {
		if p.clientID != "" {
			return nil, errUndecided
		}
		return nil, errorf(op, valet.ENOTFOUND, msgInvalidGrant, err)
	}
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	if p.clientID != "" {
		// Credentials, not yet an authenticated client: they must be this
		// code's app's, or nothing is decided here.
		if !p.authenticates(c.AppID, clientID, secretHash, public) {
			return nil, errUndecided
		}
		r.AppID, r.PublicClient = c.AppID, false
	}
	c.Scopes, c.AuthTime = parseStoredScopes(scopes), fromMicros(authTime)
	c.CreatedDatetime, c.ExpiresDatetime, c.UsedDatetime = fromMicros(created), fromMicros(expires), fromNullMicros(used)
	if used.Valid {
		return nil, s.codeReplay(ctx, tx, c)
	}
	if !tx.now.Before(c.ExpiresDatetime) || grantRevoked.Valid {
		return nil, errorf(op, valet.EUNAUTHORIZED, msgInvalidGrant, nil)
	}
	if msg := redemptionProblem(c, r); msg != "" {
		return nil, errorf(op, valet.EUNAUTHORIZED, msg, nil)
	}
	res, err := tx.ExecContext(ctx, `UPDATE auth_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL`, micros(tx.now), c.ID)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, s.fail(op, err, "")
	} else if n == 0 {
		// Redeemed concurrently (PostgreSQL): the other exchange has
		// committed, so its tokens are visible to the revocation.
		return nil, s.codeReplay(ctx, tx, c)
	}
	out, err := tx.issue(ctx, issue{grantID: c.GrantID, appID: c.AppID, accountID: c.AccountID, userID: c.UserID,
		accountName: accountName, codeID: c.ID, scopes: c.Scopes, refreshScopes: c.Scopes,
		nonce: c.Nonce, authTime: c.AuthTime, familyAt: tx.now, accessTTL: accessTTL,
		refresh: c.Scopes.Has(valet.ScopeOffline)})
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	out.UserEmail, out.UserName, out.IDTokenAlg = email, name, alg
	return out, nil
}

// redemptionProblem says why r may not redeem c, or "" when it may.
func redemptionProblem(c *valet.AuthCode, r valet.CodeRedemption) string {
	switch {
	case c.AppID != r.AppID:
		return "The code was issued to another client."
	case c.RedirectURI != r.RedirectURI:
		return "redirect_uri does not match the authorization request."
	case c.CodeChallenge == "" && r.PublicClient:
		return "PKCE is required: the authorization request had no code_challenge."
	case c.CodeChallenge == "" && r.CodeVerifier != "":
		return "code_verifier was sent for a code issued without code_challenge."
	case c.CodeChallenge == "":
		return ""
	case r.CodeVerifier == "":
		return "code_verifier is required."
	case c.CodeChallengeMethod != "S256":
		return "Only the S256 code_challenge_method is supported."
	case subtle.ConstantTimeCompare([]byte(valet.PKCEChallenge(r.CodeVerifier)), []byte(c.CodeChallenge)) != 1:
		return "code_verifier does not match the code_challenge."
	}
	return ""
}

// codeReplay revokes every token issued from a used code and audits the
// replay; it returns the ECONFLICT answer, kept: the revocation commits.
func (s *Store) codeReplay(ctx context.Context, tx *tx, c *valet.AuthCode) error {
	const op = "sqlstore.ExchangeAuthCode"
	if err := tx.revokeFamily(ctx, c.GrantID, c.ID); err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.audit(ctx, c.AccountID, c.AppID, valet.AuditCodeReplay,
		map[string]any{"grant_id": c.GrantID, "code_id": c.ID}); err != nil {
		return s.fail(op, err, "")
	}
	return keep(errorf(op, valet.ECONFLICT, "The authorization code was already used; its tokens are revoked.", nil))
}

// groupedIssue runs a piece that issues tokens in a grouped transaction
// and returns its tokens, or its error as groupFail says.
func (s *Store) groupedIssue(ctx context.Context, op string, piece func(context.Context, *tx) (*valet.IssuedTokens, error)) (*valet.IssuedTokens, error) {
	var out *valet.IssuedTokens
	var pieceErr error
	err := s.grouped(ctx, func(ctx context.Context, tx *tx) error {
		out, pieceErr = piece(ctx, tx)
		return pieceErr
	})
	if err != nil {
		return nil, groupFail(s, op, err, pieceErr)
	}
	return out, nil
}

// groupFail is the error of a grouped method: its piece's own error as it
// is (a check's *oidc.Error stays one), anything else (the transaction's
// begin or commit) as the store's.
func groupFail(s *Store, op string, err, pieceErr error) error {
	if pieceErr != nil && errors.Is(err, pieceErr) {
		return err
	}
	var k keepErr
	if pieceErr != nil && errors.As(pieceErr, &k) && errors.Is(err, k.err) {
		return err
	}
	return s.fail(op, err, "")
}

// issue is what a new token of a code's family needs, all of it read by
// the redemption's first statement.
type issue struct {
	grantID, appID, accountID, userID int64
	accountName                       string
	codeID, parentID                  int64
	scopes, refreshScopes             valet.ScopeSet
	nonce                             string
	authTime, familyAt                time.Time
	accessTTL                         time.Duration
	refresh                           bool
}

// issue stores a new access token (and refresh token) of a code's family.
func (tx *tx) issue(ctx context.Context, in issue) (*valet.IssuedTokens, error) {
	out := &valet.IssuedTokens{GrantID: in.grantID, AppID: in.appID, AccountID: in.accountID, UserID: in.userID,
		AccountName: in.accountName, Scopes: in.scopes, Nonce: in.nonce, AuthTime: in.authTime, AccessTokenTTL: in.accessTTL}
	out.AccessToken = valet.NewOrderedSecret(valet.PrefixAccessToken)
	out.AccessExpires = tx.now.Add(in.accessTTL)
	_, err := tx.ExecContext(ctx, `INSERT INTO access_tokens (token_hash, grant_id, scopes, created_at, expires_at, code_id, refresh_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		valet.HashSecret(out.AccessToken), in.grantID, in.scopes.String(), micros(tx.now), micros(out.AccessExpires),
		in.codeID, zeroNull(in.parentID))
	if err != nil {
		return nil, err
	}
	if !in.refresh {
		return out, nil
	}
	out.RefreshToken = valet.NewOrderedSecret(valet.PrefixRefreshToken)
	expires := tx.now.Add(tx.s.refreshIdle)
	if abs := in.familyAt.Add(tx.s.refreshAbsolute); abs.Before(expires) {
		expires = abs
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO refresh_tokens (token_hash, grant_id, code_id, parent_id, scopes, nonce,
		auth_time, family_at, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		valet.HashSecret(out.RefreshToken), in.grantID, in.codeID, zeroNull(in.parentID), in.refreshScopes.String(),
		in.nonce, micros(in.authTime), micros(in.familyAt), micros(tx.now), micros(expires))
	return out, err
}

// revokeFamily revokes every access and refresh token issued from a code.
func (tx *tx) revokeFamily(ctx context.Context, grantID, codeID int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE access_tokens SET revoked_at = $1
		WHERE grant_id = $2 AND code_id = $3 AND revoked_at IS NULL`, micros(tx.now), grantID, codeID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1
		WHERE grant_id = $2 AND code_id = $3 AND revoked_at IS NULL`, micros(tx.now), grantID, codeID)
	return err
}

// Refresh implements valet.OAuthService.
func (s *Store) Refresh(ctx context.Context, token string, appID int64, scopes valet.ScopeSet, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	const op = "sqlstore.Refresh"
	if accessTTL <= 0 {
		return nil, invalid(op, "ttl", "must be positive")
	}
	if len(scopes) == 0 {
		out, err := s.rotate(ctx, token, presenter{appID: appID}, accessTTL)
		if err != nil || out != nil {
			return out, s.fail(op, err, "")
		}
	}
	out, err := s.groupedIssue(ctx, op, func(ctx context.Context, tx *tx) (*valet.IssuedTokens, error) {
		return s.refresh(ctx, tx, token, presenter{appID: appID}, scopes, accessTTL)
	})
	return out, err
}

// rotateBatch is a batch of refresh grants with nothing to decide, in one
// statement (see batch.go): for each token that is live, unused and the
// client's, its grant live, it marks the token used and issues its
// successors. A token that is anything else returns no row and is not
// touched; refresh then decides, in a transaction. A concurrent use of the
// same token waits for the first one's row lock, then finds it used and
// returns no row.
const rotateBatch = `WITH r AS (
		SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::text[], $5::bytea[], $6::bytea[],
			$7::bigint[], $8::bytea[])
			AS r(i, token_hash, client_app, client_id, secret_hash, access_hash, access_expires, refresh_hash)
	), hit AS (
		-- Row by row, each table by its key (LIMIT 1 keeps each lookup
		-- one), and the token updated where this read found it (ctid), so
		-- that the plan stays right whatever the tables' sizes: a plan
		-- made on an empty database, kept by the connection, once scanned
		-- the whole token table for each row (a batch of 32 took 30 ms
		-- after 20,000 grants).
		SELECT r.*, t.id, t.grant_id, g.app_id, g.account_id, g.user_id, t.code_id, t.scopes, t.nonce, t.auth_time,
			t.family_at, ac.name, a.id_token_alg, t.tid
		FROM r, LATERAL (SELECT ctid AS tid, * FROM refresh_tokens t WHERE t.token_hash = r.token_hash LIMIT 1) t,
			LATERAL (SELECT * FROM grants g WHERE g.id = t.grant_id LIMIT 1) g,
			LATERAL (SELECT * FROM apps a WHERE a.id = g.app_id LIMIT 1) a,
			LATERAL (SELECT * FROM accounts ac WHERE ac.id = g.account_id LIMIT 1) ac
		WHERE t.used_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > $9 AND t.family_at > $10
			AND g.revoked_at IS NULL AND ` + presenterMatches + `
	), old AS (
		UPDATE refresh_tokens t SET used_at = $9 FROM hit
		WHERE t.ctid = hit.tid AND t.used_at IS NULL AND t.revoked_at IS NULL
		RETURNING hit.*
	), access AS (
		INSERT INTO access_tokens (token_hash, grant_id, scopes, created_at, expires_at, code_id, refresh_id)
		SELECT access_hash, grant_id, scopes, $9, access_expires, code_id, id FROM old
	), refresh AS (
		INSERT INTO refresh_tokens (token_hash, grant_id, code_id, parent_id, scopes, nonce, auth_time,
			family_at, created_at, expires_at)
		SELECT refresh_hash, grant_id, code_id, id, scopes, nonce, auth_time, family_at, $9, LEAST($11, family_at + $12)
		FROM old
	)
	SELECT i, grant_id, app_id, account_id, user_id, scopes, nonce, auth_time, name, id_token_alg FROM old`

// rotate runs a refresh grant through rotateBatch (PostgreSQL). It returns
// nil tokens and no error when the token needs refresh's decisions.
func (s *Store) rotate(ctx context.Context, token string, p presenter, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	if s.d == sqliteDialect {
		return s.groupedFast(ctx, fastRotation, s.newIssuing(token, p, accessTTL))
	}
	return s.rotations.do(ctx, s.newIssuing(token, p, accessTTL))
}

func (s *Store) rotateAll(ctx context.Context, in []*issuing) ([]*valet.IssuedTokens, error) {
	now := s.now()
	rows, out := batchRows(in)
	b := newBatchColumns(in, rows, now)
	res, err := s.w.QueryContext(ctx, rotateBatch, b.idx, b.hashes, b.clientApps, b.clientIDs, b.secretHashes, b.access,
		b.accessExpires, b.refresh, micros(now), micros(now.Add(-s.refreshAbsolute)), micros(now.Add(s.refreshIdle)),
		s.refreshAbsolute.Microseconds())
	if err != nil {
		return nil, err
	}
	if err := readIssued(res, in, out, now, false); err != nil {
		return nil, err
	}
	return out, nil
}

// RefreshAsClient implements valet.OAuthService (see ExchangeAsClient).
func (s *Store) RefreshAsClient(ctx context.Context, token, clientID, secret string, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	const op = "sqlstore.RefreshAsClient"
	if clientID == "" || secret == "" || accessTTL <= 0 {
		return nil, nil
	}
	p := presenter{clientID: clientID, secret: secret}
	out, err := s.rotate(ctx, token, p, accessTTL)
	if err != nil || out != nil || s.d != sqliteDialect {
		return out, s.fail(op, err, "")
	}
	out, err = s.groupedIssue(ctx, op, func(ctx context.Context, tx *tx) (*valet.IssuedTokens, error) {
		return s.refresh(ctx, tx, token, p, nil, accessTTL)
	})
	if errors.Is(err, errUndecided) {
		return nil, nil
	}
	return out, err
}

// refresh is Refresh's transaction. A reused token answers keep(err): the
// revocation commits.
func (s *Store) refresh(ctx context.Context, tx *tx, token string, p presenter, scopes valet.ScopeSet, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	const op = "sqlstore.Refresh"
	rt := &valet.RefreshToken{}
	var stored, accountName, clientID, alg string
	var authTime, familyAt, created, expires, leeway int64
	var used, revoked, grantRevoked sql.NullInt64
	var secretHash []byte
	var public bool
	err := tx.QueryRowContext(ctx, `SELECT t.id, t.grant_id, g.app_id, g.account_id, g.user_id, t.code_id, t.scopes,
		t.nonce, t.auth_time, t.family_at, t.created_at, t.expires_at, t.used_at, t.revoked_at, g.revoked_at,
		a.refresh_leeway, ac.name, a.client_id, a.secret_hash, a.public, a.id_token_alg
		FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id JOIN apps a ON a.id = g.app_id
		JOIN accounts ac ON ac.id = g.account_id
		WHERE t.token_hash = $1`, valet.HashSecret(token)).
		Scan(&rt.ID, &rt.GrantID, &rt.AppID, &rt.AccountID, &rt.UserID, &rt.CodeID, &stored, &rt.Nonce, &authTime,
			&familyAt, &created, &expires, &used, &revoked, &grantRevoked, &leeway, &accountName,
			&clientID, &secretHash, &public, &alg)
	if errors.Is(err, sql.ErrNoRows) {
		if p.clientID != "" {
			return nil, errUndecided
		}
		return nil, errorf(op, valet.ENOTFOUND, msgInvalidGrant, err)
	}
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	if !p.authenticates(rt.AppID, clientID, secretHash, public) {
		if p.clientID != "" {
			// Credentials that are not this token's app's: nothing decided.
			return nil, errUndecided
		}
		// Not a use: the token stays as it was for its own app.
		return nil, errorf(op, valet.EUNAUTHORIZED, "The refresh token was issued to another client.", nil)
	}
	rt.Scopes, rt.AuthTime, rt.FamilyDatetime = parseStoredScopes(stored), fromMicros(authTime), fromMicros(familyAt)
	rt.CreatedDatetime, rt.ExpiresDatetime, rt.UsedDatetime = fromMicros(created), fromMicros(expires), fromNullMicros(used)
	if revoked.Valid || grantRevoked.Valid {
		return nil, errorf(op, valet.EUNAUTHORIZED, msgInvalidGrant, nil)
	}
	if !tx.now.Before(rt.ExpiresDatetime) || !tx.now.Before(rt.FamilyDatetime.Add(s.refreshAbsolute)) {
		return nil, errorf(op, valet.EUNAUTHORIZED, msgInvalidGrant, nil)
	}
	// A bad scope is answered after reuse detection: a replayed token is
	// revoked whatever scope it asks for.
	access, scopeErr := rt.Scopes, error(nil)
	if len(scopes) > 0 {
		if scopes, err = valet.ParseScopes(scopes.String()); err != nil {
			scopeErr = s.fail(op, err, "")
		} else if !rt.Scopes.Contains(scopes) {
			scopeErr = invalid(op, "scope", "a refresh can only narrow the granted scopes")
		}
		access = scopes
	}
	if used.Valid {
		// Reuse. Within the leeway, the immediately preceding token of a
		// live successor yields a new successor (the client crashed
		// mid-refresh); anything else revokes the installation.
		var successor int64
		inLeeway := leeway > 0 && tx.since(*rt.UsedDatetime) <= time.Duration(leeway)*time.Second
		if inLeeway {
			err := tx.QueryRowContext(ctx, `SELECT id FROM refresh_tokens
				WHERE grant_id = $1 AND code_id = $2 AND parent_id = $3 AND used_at IS NULL AND revoked_at IS NULL
				ORDER BY id DESC LIMIT 1`, rt.GrantID, rt.CodeID, rt.ID).Scan(&successor)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, s.fail(op, err, "")
			}
		}
		if successor == 0 {
			return nil, s.revokeForReuse(ctx, tx, rt)
		}
		if scopeErr != nil {
			return nil, scopeErr
		}
		if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE id = $2`, micros(tx.now), successor); err != nil {
			return nil, s.fail(op, err, "")
		}
	} else {
		if scopeErr != nil {
			return nil, scopeErr
		}
		res, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL`, micros(tx.now), rt.ID)
		if err != nil {
			return nil, s.fail(op, err, "")
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return nil, s.revokeForReuse(ctx, tx, rt)
		}
	}
	out, err := tx.issue(ctx, issue{grantID: rt.GrantID, appID: rt.AppID, accountID: rt.AccountID, userID: rt.UserID,
		accountName: accountName, codeID: rt.CodeID, parentID: rt.ID, scopes: access,
		refreshScopes: rt.Scopes, nonce: rt.Nonce, authTime: rt.AuthTime, familyAt: rt.FamilyDatetime,
		accessTTL: accessTTL, refresh: true})
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	out.IDTokenAlg = alg
	return out, nil
}

// revokeForReuse revokes the grant of a reused refresh token and audits
// it; it returns the ECONFLICT answer, kept: the revocation commits.
func (s *Store) revokeForReuse(ctx context.Context, tx *tx, rt *valet.RefreshToken) error {
	const op = "sqlstore.Refresh"
	if _, err := tx.ExecContext(ctx, `UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`,
		micros(tx.now), rt.GrantID); err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.revokeFamily(ctx, rt.GrantID, rt.CodeID); err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.audit(ctx, rt.AccountID, rt.AppID, valet.AuditRefreshReuse,
		map[string]any{"grant_id": rt.GrantID, "refresh_token_id": rt.ID}); err != nil {
		return s.fail(op, err, "")
	}
	return keep(errorf(op, valet.ECONFLICT, "The refresh token was already used; the grant is revoked.", nil))
}

// RevokeOAuthToken implements valet.OAuthService.
func (s *Store) RevokeOAuthToken(ctx context.Context, appID int64, token string) error {
	const op = "sqlstore.RevokeOAuthToken"
	// The token is read whichever app it belongs to, so that one read
	// tells an unknown token (RFC 7009 §2.2: not an error) from another
	// app's (§2.1: refused).
	var read string
	switch {
	case valet.HasSecretPrefix(token, valet.PrefixAccessToken):
		read = `SELECT t.id, g.id, g.account_id, g.app_id, 0 FROM access_tokens t JOIN grants g ON g.id = t.grant_id
			WHERE t.token_hash = $1`
	case valet.HasSecretPrefix(token, valet.PrefixRefreshToken):
		read = `SELECT t.id, g.id, g.account_id, g.app_id, t.code_id FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id
			WHERE t.token_hash = $1`
	default:
		return nil
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	var tokenID, grantID, accountID, tokenApp, codeID int64
	err = tx.QueryRowContext(ctx, read, valet.HashSecret(token)).Scan(&tokenID, &grantID, &accountID, &tokenApp, &codeID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return s.fail(op, err, "")
	case tokenApp != appID:
		return errorf(op, valet.EFORBIDDEN, "This token was not issued to this app.", nil)
	}
	if valet.HasSecretPrefix(token, valet.PrefixAccessToken) {
		_, err = tx.ExecContext(ctx, `UPDATE access_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`,
			micros(tx.now), tokenID)
	} else {
		err = tx.revokeFamily(ctx, grantID, codeID)
	}
	if err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.audit(ctx, accountID, appID, valet.AuditTokenRevoked, map[string]any{"grant_id": grantID}); err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

// PurgeOAuth implements valet.OAuthService, in bounded batches so that a
// purge never holds the write lock for long.
func (s *Store) PurgeOAuth(ctx context.Context, limit int) (int, error) {
	const op = "sqlstore.PurgeOAuth"
	if limit <= 0 {
		limit = 1000
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, s.fail(op, err, "")
	}
	defer tx.rollback()
	now := micros(tx.now)
	total := 0
	for _, q := range []struct {
		table  string
		before int64
	}{
		{"access_tokens", now},
		{"refresh_tokens", now},
		{"auth_codes", now - valet.CodeTombstoneTTL.Microseconds()},
	} {
		res, err := tx.ExecContext(ctx, `DELETE FROM `+q.table+` WHERE id IN
			(SELECT id FROM `+q.table+` WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)`, q.before, limit)
		if err != nil {
			return 0, s.fail(op, err, "")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, s.fail(op, err, "")
		}
		total += int(n)
	}
	return total, s.fail(op, tx.commit(ctx), "")
}
