package sqlstore

import (
	"context"
	"database/sql"
	"strings"

	"github.com/valethq/valet"
)

// Batched plain grants on SQLite.
//
// The committer (group.go) runs the rotations and redemptions that queued
// together as one group of statements in its transaction: one read of
// every token (or code) with its grant, app and account, one update
// marking the plain ones used, one insert of their access tokens and one
// of their refresh tokens, instead of a savepoint and five statements per
// grant. SQLite's one writer does the work of every grant, so what it
// saves per grant is throughput. The group decides exactly what
// rotateBatch and redeemBatch decide on PostgreSQL; what it leaves
// undecided (reuse, a wrong client, an expired token…) takes its own
// transaction, which says what is wrong. Inside the writer's transaction
// nothing changes between the read and the writes.
//
// The statements change with the group's size, so SQLite parses each, and
// their placeholders are the dialect's bare ? (bulkParams), every one of
// them in the order of the arguments: SQLite looks each $N up by name, in
// a list as long as the statement's parameters, when it parses and again
// when it binds, which took an eighth of the committer's time. A ? gets
// the number after the highest one before it, so the statements never mix
// the two.

// rotateRows rotates the plain refresh tokens among in; out[i] is nil for
// a call left undecided.
//
// The reads fix their plan whatever the statistics say, token (or code)
// first by its hash: CROSS JOIN keeps SQLite's join order, the unary +
// keeps it off the expiry index. Left to choose, with a long IN list and
// a fresh database it walked every grant's tokens instead (a group of 30
// took 20 ms).
func (tx *tx) rotateRows(ctx context.Context, in []*issuing) ([]*valet.IssuedTokens, error) {
	rows, out := batchRows(in)
	hashes := batchHashes(in, rows)
	now, cut := micros(tx.now), micros(tx.now.Add(-tx.s.refreshAbsolute))
	res, err := tx.QueryContext(ctx, `SELECT t.token_hash, t.id, t.grant_id, g.app_id, g.account_id, g.user_id,
		t.code_id, t.scopes, t.nonce, t.auth_time, t.family_at, ac.name, a.id_token_alg, a.client_id, a.secret_hash, a.public
		FROM refresh_tokens t CROSS JOIN grants g ON g.id = t.grant_id CROSS JOIN accounts ac ON ac.id = g.account_id
		CROSS JOIN apps a ON a.id = g.app_id
		WHERE t.token_hash IN (`+tx.s.d.bulkParams(1, len(hashes))+`) AND t.used_at IS NULL AND t.revoked_at IS NULL
			AND +t.expires_at > `+tx.s.d.placeholder(len(hashes)+1)+` AND t.family_at > `+tx.s.d.placeholder(len(hashes)+2)+`
			AND g.revoked_at IS NULL`,
		append(hashes, now, cut)...)
	if err != nil {
		return nil, err
	}
	byHash, err := readFound(res, func(f *found, scopes *string, authTime *int64) []any {
		return []any{&f.id, &f.t.GrantID, &f.t.AppID, &f.t.AccountID, &f.t.UserID, &f.codeID, scopes, &f.t.Nonce,
			authTime, &f.familyAt, &f.t.AccountName, &f.t.IDTokenAlg, &f.clientID, &f.secretHash, &f.public}
	})
	if err != nil {
		return nil, err
	}

	var used, access, refresh []any
	for _, i := range rows {
		c := in[i]
		f := byHash[string(c.hash)]
		if f == nil || !c.p.authenticates(f.t.AppID, f.clientID, f.secretHash, f.public) {
			continue
		}
		t := c.issued(&f.t, tx.now)
		expires := min(micros(tx.now.Add(tx.s.refreshIdle)), f.familyAt+tx.s.refreshAbsolute.Microseconds())
		used = append(used, f.id)
		access = append(access, c.accessHash, t.GrantID, t.Scopes.String(), now,
			micros(t.AccessExpires), f.codeID, f.id)
		refresh = append(refresh, c.refreshHash, t.GrantID, f.codeID, f.id, t.Scopes.String(),
			t.Nonce, micros(t.AuthTime), f.familyAt, now, expires)
		out[i] = t
	}
	if err := tx.storeIssued(ctx, "refresh_tokens", used, access, refresh); err != nil {
		return nil, err
	}
	return out, nil
}

// redeemRows redeems the codes among in that match (see redeemBatch);
// out[i] is nil for a call left undecided.
func (tx *tx) redeemRows(ctx context.Context, in []*issuing) ([]*valet.IssuedTokens, error) {
	rows, out := batchRows(in)
	hashes := batchHashes(in, rows)
	now := micros(tx.now)
	res, err := tx.QueryContext(ctx, `SELECT c.code_hash, c.id, c.grant_id, g.app_id, g.account_id, g.user_id,
		c.scopes, c.nonce, c.auth_time, c.redirect_uri, c.code_challenge, c.challenge_method, ac.name, a.id_token_alg,
		u.email, u.name, a.client_id, a.secret_hash, a.public
		FROM auth_codes c CROSS JOIN grants g ON g.id = c.grant_id CROSS JOIN accounts ac ON ac.id = g.account_id
		CROSS JOIN apps a ON a.id = g.app_id CROSS JOIN users u ON u.id = g.user_id
		WHERE c.code_hash IN (`+tx.s.d.bulkParams(1, len(hashes))+`) AND c.used_at IS NULL
			AND +c.expires_at > `+tx.s.d.placeholder(len(hashes)+1)+` AND g.revoked_at IS NULL`,
		append(hashes, now)...)
	if err != nil {
		return nil, err
	}
	byHash, err := readFound(res, func(f *found, scopes *string, authTime *int64) []any {
		return []any{&f.id, &f.t.GrantID, &f.t.AppID, &f.t.AccountID, &f.t.UserID, scopes, &f.t.Nonce, authTime,
			&f.redirectURI, &f.challenge, &f.method, &f.t.AccountName, &f.t.IDTokenAlg, &f.t.UserEmail, &f.t.UserName,
			&f.clientID, &f.secretHash, &f.public}
	})
	if err != nil {
		return nil, err
	}

	refreshExpires := micros(tx.now.Add(min(tx.s.refreshIdle, tx.s.refreshAbsolute)))
	var used, access, refresh []any
	for _, i := range rows {
		c := in[i]
		f := byHash[string(c.hash)]
		if f == nil || !c.p.authenticates(f.t.AppID, f.clientID, f.secretHash, f.public) ||
			f.redirectURI != c.r.RedirectURI || !sameChallenge(f.challenge, f.method, c.r.CodeVerifier) {
			continue
		}
		t := c.issued(&f.t, tx.now)
		used = append(used, f.id)
		access = append(access, c.accessHash, t.GrantID, t.Scopes.String(), now,
			micros(t.AccessExpires), f.id, nil)
		if t.Scopes.Has(valet.ScopeOffline) {
			refresh = append(refresh, c.refreshHash, t.GrantID, f.id, nil, t.Scopes.String(),
				t.Nonce, micros(t.AuthTime), now, now, refreshExpires)
		} else {
			t.RefreshToken = ""
		}
		out[i] = t
	}
	if err := tx.storeIssued(ctx, "auth_codes", used, access, refresh); err != nil {
		return nil, err
	}
	return out, nil
}

// found is what a group's read found for a refresh token or a code: its
// row, its grant's answer so far and the app's client credentials (the
// code's fields stay empty for a token, and the token's for a code).
type found struct {
	id, codeID, familyAt           int64
	t                              valet.IssuedTokens
	redirectURI, challenge, method string
	clientID                       string
	secretHash                     []byte
	public                         bool
}

// batchHashes are the secrets' hashes of the calls that take part, as the
// arguments of an IN list.
func batchHashes(in []*issuing, rows []int) []any {
	hashes := make([]any, len(rows))
	for j, i := range rows {
		hashes[j] = in[i].hash
	}
	return hashes
}

// readFound reads a group's rows by their secret's hash: each row is the
// hash, then what dest gives for f, in which the stored scopes and
// auth_time are read into scopes and authTime.
func readFound(res *sql.Rows, dest func(f *found, scopes *string, authTime *int64) []any) (map[string]*found, error) {
	byHash := map[string]*found{}
	for res.Next() {
		var hash []byte
		var scopes string
		var authTime int64
		f := &found{}
		if err := res.Scan(append([]any{&hash}, dest(f, &scopes, &authTime)...)...); err != nil {
			res.Close()
			return nil, err
		}
		f.t.Scopes, f.t.AuthTime = parseStoredScopes(scopes), fromMicros(authTime)
		byHash[string(hash)] = f
	}
	return byHash, closeRows(res)
}

// sameChallenge reports whether a code's stored PKCE challenge is the one
// of verifier (or none, with none), as redeemBatch compares them.
func sameChallenge(challenge, method, verifier string) bool {
	if verifier == "" {
		return challenge == "" && method == ""
	}
	return method == "S256" && challenge == valet.PKCEChallenge(verifier)
}

// storeIssued marks the rows of table (refresh_tokens or auth_codes) with
// the ids in used as used, and inserts the access tokens and refresh
// tokens issued for them: 7 and 10 values a row, as the inserts list them.
func (tx *tx) storeIssued(ctx context.Context, table string, used, access, refresh []any) error {
	if len(used) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET used_at = `+tx.s.d.placeholder(1)+` WHERE id IN (`+
		tx.s.d.bulkParams(2, len(used))+`)`,
		append([]any{micros(tx.now)}, used...)...); err != nil {
		return err
	}
	if err := tx.insertRows(ctx, `INSERT INTO access_tokens (token_hash, grant_id, scopes, created_at, expires_at,
		code_id, refresh_id) VALUES `, 7, access); err != nil {
		return err
	}
	if len(refresh) == 0 {
		return nil
	}
	return tx.insertRows(ctx, `INSERT INTO refresh_tokens (token_hash, grant_id, code_id, parent_id, scopes, nonce,
		auth_time, family_at, created_at, expires_at) VALUES `, 10, refresh)
}

// insertRows runs insert (ending in VALUES) for the rows in values, n
// columns each.
func (tx *tx) insertRows(ctx context.Context, insert string, n int, values []any) error {
	var b strings.Builder
	b.WriteString(insert)
	for r := 0; r < len(values)/n; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + tx.s.d.bulkParams(1+r*n, n) + ")")
	}
	_, err := tx.ExecContext(ctx, b.String(), values...)
	return err
}

func closeRows(res *sql.Rows) error {
	err := res.Err()
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	return err
}
