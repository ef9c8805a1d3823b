package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/valethq/valet"
)

// Scope sets are stored as OAuth writes them: space-separated.
func parseStoredScopes(s string) valet.ScopeSet {
	set := valet.ScopeSet{}
	for _, f := range strings.Fields(s) {
		set = append(set, valet.Scope(f))
	}
	return set
}

// CreateAPIKey implements valet.CredentialService.
func (s *Store) CreateAPIKey(ctx context.Context, k *valet.APIKey) (string, error) {
	const op = "sqlstore.CreateAPIKey"
	if err := k.Validate(); err != nil {
		return "", s.fail(op, err, "")
	}
	scopes, err := valet.ParseScopes(k.Scopes.String())
	if err != nil {
		return "", s.fail(op, err, "")
	}
	k.Scopes = scopes
	tx, err := s.begin(ctx)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	defer tx.rollback()
	if _, err := findMember(ctx, tx, k.AccountID, k.UserID); err != nil {
		return "", s.fail(op, err, "This user is not a member of the account.")
	}
	secret := valet.NewSecret(valet.PrefixAPIKey)
	k.Hint = valet.SecretHint(secret)
	k.CreatedDatetime, k.LastUsedDatetime = tx.now, nil
	err = tx.QueryRowContext(ctx, `INSERT INTO api_keys (account_id, user_id, name, scopes, hint, secret_hash, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		k.AccountID, k.UserID, k.Name, k.Scopes.String(), k.Hint, valet.HashSecret(secret), micros(tx.now)).Scan(&k.ID)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return "", s.fail(op, err, "")
	}
	return secret, nil
}

// ListAPIKeys implements valet.CredentialService.
func (s *Store) ListAPIKeys(ctx context.Context, accountID int64) ([]valet.APIKey, error) {
	const op = "sqlstore.ListAPIKeys"
	rows, err := s.r.QueryContext(ctx, `SELECT id, account_id, user_id, name, scopes, hint, created_at, last_used_at
		FROM api_keys WHERE account_id = $1 ORDER BY created_at DESC, id DESC`, accountID)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	keys := []valet.APIKey{}
	for rows.Next() {
		var k valet.APIKey
		var scopes string
		var created int64
		var used sql.NullInt64
		if err := rows.Scan(&k.ID, &k.AccountID, &k.UserID, &k.Name, &scopes, &k.Hint, &created, &used); err != nil {
			return nil, s.fail(op, err, "")
		}
		k.Scopes = parseStoredScopes(scopes)
		k.CreatedDatetime, k.LastUsedDatetime = fromMicros(created), fromNullMicros(used)
		keys = append(keys, k)
	}
	return keys, s.fail(op, rows.Err(), "")
}

// DeleteAPIKey implements valet.CredentialService.
func (s *Store) DeleteAPIKey(ctx context.Context, accountID, id int64) error {
	const op = "sqlstore.DeleteAPIKey"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM api_keys WHERE account_id = $1 AND id = $2`, accountID, id)
	if err != nil {
		return s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errorf(op, valet.ENOTFOUND, "API key not found.", err)
	}
	return s.fail(op, tx.commit(ctx), "")
}

// TouchAPIKeys implements valet.CredentialService.
func (s *Store) TouchAPIKeys(ctx context.Context, lastUsed map[int64]time.Time) error {
	return s.touch(ctx, "sqlstore.TouchAPIKeys", `UPDATE api_keys SET last_used_at = $1
		WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`, lastUsed)
}

// TouchGrants implements valet.CredentialService.
func (s *Store) TouchGrants(ctx context.Context, lastUsed map[int64]time.Time) error {
	return s.touch(ctx, "sqlstore.TouchGrants", `UPDATE grants SET last_used_at = $1
		WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`, lastUsed)
}

// touch runs update (last-used time $1, id $2) for each entry in one
// transaction. The update never moves a time backwards, so flushes from
// several nodes can interleave.
func (s *Store) touch(ctx context.Context, op, update string, lastUsed map[int64]time.Time) error {
	if len(lastUsed) == 0 {
		return nil
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	for id, t := range lastUsed {
		if _, err := tx.ExecContext(ctx, update, micros(t), id); err != nil {
			return s.fail(op, err, "")
		}
	}
	return s.fail(op, tx.commit(ctx), "")
}

// CreateApp implements valet.CredentialService. An empty ClientID gets a
// random one.
func (s *Store) CreateApp(ctx context.Context, a *valet.App) error {
	const op = "sqlstore.CreateApp"
	p := valet.Problems{}
	a.Name = strings.TrimSpace(a.Name)
	if a.Name == "" || len(a.Name) > 100 {
		p.Add("name", "must be 1-100 characters")
	}
	if a.ClientID == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		a.ClientID = hex.EncodeToString(b)
	}
	if len(a.ClientID) > 100 || strings.ContainsAny(a.ClientID, " \t\r\n") {
		p.Add("client_id", "must be at most 100 characters without spaces")
	}
	scopes, err := valet.ParseScopes(a.Scopes.String())
	if err != nil {
		for _, problem := range valet.ErrorFields(err)["scopes"] {
			p.Add("scopes", problem)
		}
	}
	if err := p.Err(); err != nil {
		return s.fail(op, err, "")
	}
	a.Scopes = scopes
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	err = tx.QueryRowContext(ctx, `INSERT INTO apps (client_id, name, scopes, created_at) VALUES ($1, $2, $3, $4) RETURNING id`,
		a.ClientID, a.Name, a.Scopes.String(), micros(tx.now)).Scan(&a.ID)
	if s.d.isUnique(err) {
		return errorf(op, valet.ECONFLICT, "An app with this client_id already exists.", err)
	}
	if err != nil {
		return s.fail(op, err, "")
	}
	a.CreatedDatetime = tx.now
	return s.fail(op, tx.commit(ctx), "")
}

// CreateGrant implements valet.CredentialService. The grant's scopes must be
// among the app's: an app never receives a scope it did not register
// (EINVALID).
func (s *Store) CreateGrant(ctx context.Context, g *valet.Grant) error {
	const op = "sqlstore.CreateGrant"
	scopes, err := valet.ParseScopes(g.Scopes.String())
	if err != nil {
		return s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	var appScopes string
	if err := tx.QueryRowContext(ctx, `SELECT scopes FROM apps WHERE id = $1`, g.AppID).Scan(&appScopes); err != nil {
		return s.fail(op, err, "App not found.")
	}
	if !parseStoredScopes(appScopes).Contains(scopes) {
		return invalid(op, "scopes", "the app did not register some of these scopes")
	}
	if _, err := findMember(ctx, tx, g.AccountID, g.UserID); err != nil {
		return s.fail(op, err, "This user is not a member of the account.")
	}
	g.Scopes, g.CreatedDatetime, g.RevokedDatetime = scopes, tx.now, nil
	err = tx.QueryRowContext(ctx, `INSERT INTO grants (account_id, user_id, app_id, scopes, created_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		g.AccountID, g.UserID, g.AppID, g.Scopes.String(), micros(tx.now)).Scan(&g.ID)
	if err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

// CreateAccessToken implements valet.CredentialService. Empty scopes mean
// all of the grant's. A revoked grant is ENOTFOUND: it cannot issue.
func (s *Store) CreateAccessToken(ctx context.Context, grantID int64, scopes valet.ScopeSet, ttl time.Duration) (string, error) {
	const op = "sqlstore.CreateAccessToken"
	if ttl <= 0 {
		return "", invalid(op, "ttl", "must be positive")
	}
	scopes, err := valet.ParseScopes(scopes.String())
	if err != nil {
		return "", s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	defer tx.rollback()
	var grantScopes string
	err = tx.QueryRowContext(ctx, `SELECT scopes FROM grants WHERE id = $1 AND revoked_at IS NULL`, grantID).Scan(&grantScopes)
	if err != nil {
		return "", s.fail(op, err, "Grant not found.")
	}
	granted := parseStoredScopes(grantScopes)
	if len(scopes) == 0 {
		scopes = granted
	}
	if !granted.Contains(scopes) {
		return "", invalid(op, "scopes", "must be among the grant's scopes")
	}
	secret := valet.NewOrderedSecret(valet.PrefixAccessToken)
	_, err = tx.ExecContext(ctx, `INSERT INTO access_tokens (token_hash, grant_id, scopes, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)`,
		valet.HashSecret(secret), grantID, scopes.String(), micros(tx.now), micros(tx.now.Add(ttl)))
	if err != nil {
		return "", s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return "", s.fail(op, err, "")
	}
	return secret, nil
}

// RevokeGrant implements valet.CredentialService. Revoking a revoked grant
// keeps the first revocation time.
func (s *Store) RevokeGrant(ctx context.Context, accountID, grantID int64) error {
	const op = "sqlstore.RevokeGrant"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM grants WHERE account_id = $1 AND id = $2`, accountID, grantID).Scan(&one)
	if err != nil {
		return s.fail(op, err, "Grant not found.")
	}
	_, err = tx.ExecContext(ctx, `UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`,
		micros(tx.now), grantID)
	if err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

const msgUnauthorized = "The credential is not valid."

// Authenticate implements valet.CredentialService: one indexed read by the
// secret's hash, joined with the membership (and for tokens the grant), so
// that a removed member or a revoked grant fails at once.
func (s *Store) Authenticate(ctx context.Context, secret string) (*valet.Credential, error) {
	const op = "sqlstore.Authenticate"
	c := &valet.Credential{}
	var scopes string
	var err error
	switch {
	case valet.HasSecretPrefix(secret, valet.PrefixAPIKey):
		c.Kind = valet.CredentialAPIKey
		err = s.queryRow(ctx, `SELECT k.id, k.account_id, k.user_id, u.email, m.role, k.scopes
			FROM api_keys k
			JOIN members m ON m.account_id = k.account_id AND m.user_id = k.user_id
			JOIN users u ON u.id = k.user_id
			WHERE k.secret_hash = $1`, valet.HashSecret(secret)).
			Scan(&c.ID, &c.AccountID, &c.UserID, &c.UserEmail, &c.Role, &scopes)
	case valet.HasSecretPrefix(secret, valet.PrefixAccessToken):
		c.Kind = valet.CredentialOAuth
		var expires int64
		err = s.queryRow(ctx, `SELECT g.id, g.account_id, g.user_id, u.email, m.role, g.app_id, t.scopes, t.expires_at
			FROM access_tokens t
			JOIN grants g ON g.id = t.grant_id
			JOIN members m ON m.account_id = g.account_id AND m.user_id = g.user_id
			JOIN users u ON u.id = g.user_id
			WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND g.revoked_at IS NULL AND t.expires_at > $2`,
			valet.HashSecret(secret), micros(s.now())).
			Scan(&c.ID, &c.AccountID, &c.UserID, &c.UserEmail, &c.Role, &c.AppID, &scopes, &expires)
		c.GrantID, c.ExpiresAt = c.ID, fromMicros(expires)
	default:
		return nil, errorf(op, valet.EUNAUTHORIZED, msgUnauthorized, nil)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errorf(op, valet.EUNAUTHORIZED, msgUnauthorized, err)
	}
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	c.Scopes = parseStoredScopes(scopes)
	return c, nil
}
