package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/valethq/valet"
)

var _ valet.OAuthStore = (*Store)(nil)

const appColumns = `id, client_id, name, scopes, created_at, description, developer_name, homepage_url,
	logo_url, redirect_uris, public, secret_hash, secret_hint, refresh_leeway, id_token_alg,
	COALESCE(owner_user_id, 0), updated_at`

func scanApp(row scanner) (*valet.App, error) {
	a := &valet.App{}
	var scopes, redirects string
	var created, updated, public, leeway int64
	err := row.Scan(&a.ID, &a.ClientID, &a.Name, &scopes, &created, &a.Description, &a.DeveloperName,
		&a.HomepageURL, &a.LogoURL, &redirects, &public, &a.SecretHash, &a.SecretHint, &leeway,
		&a.IDTokenAlg, &a.OwnerUserID, &updated)
	if err != nil {
		return nil, err
	}
	a.Scopes = parseStoredScopes(scopes)
	a.RedirectURIs = strings.Fields(redirects)
	a.Public, a.RefreshLeeway = public != 0, int(leeway)
	a.CreatedDatetime, a.UpdatedDatetime = fromMicros(created), fromMicros(updated)
	if updated == 0 {
		a.UpdatedDatetime = a.CreatedDatetime
	}
	return a, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// RegisterApp implements valet.OAuthService.
func (s *Store) RegisterApp(ctx context.Context, a *valet.App) (string, error) {
	const op = "sqlstore.RegisterApp"
	if err := a.Validate(); err != nil {
		return "", s.fail(op, err, "")
	}
	if a.ClientID == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		a.ClientID = hex.EncodeToString(b)
	}
	if len(a.ClientID) > 100 || strings.ContainsAny(a.ClientID, " \t\r\n:") {
		return "", invalid(op, "client_id", "must be at most 100 characters without spaces or colons")
	}
	var secret string
	a.SecretHash, a.SecretHint = nil, ""
	if !a.Public {
		secret = valet.NewSecret(valet.PrefixClientSecret)
		a.SecretHash, a.SecretHint = valet.HashSecret(secret), valet.SecretHint(secret)
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	defer tx.rollback()
	a.CreatedDatetime, a.UpdatedDatetime = tx.now, tx.now
	err = tx.QueryRowContext(ctx, `INSERT INTO apps (client_id, name, scopes, created_at, description,
		developer_name, homepage_url, logo_url, redirect_uris, public, secret_hash, secret_hint,
		refresh_leeway, id_token_alg, owner_user_id, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id`,
		a.ClientID, a.Name, a.Scopes.String(), micros(tx.now), a.Description, a.DeveloperName,
		a.HomepageURL, a.LogoURL, strings.Join(a.RedirectURIs, "\n"), boolInt(a.Public), a.SecretHash,
		a.SecretHint, a.RefreshLeeway, a.IDTokenAlg, zeroNull(a.OwnerUserID), micros(tx.now)).Scan(&a.ID)
	if s.d.isUnique(err) {
		return "", errorf(op, valet.ECONFLICT, "An app with this client_id already exists.", err)
	}
	if err != nil {
		return "", s.fail(op, err, "")
	}
	return secret, s.fail(op, tx.commit(ctx), "")
}

// FindApp implements valet.OAuthService.
func (s *Store) FindApp(ctx context.Context, clientID string) (*valet.App, error) {
	const op = "sqlstore.FindApp"
	a, err := scanApp(s.queryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE client_id = $1`, clientID))
	return a, s.fail(op, err, "App not found.")
}

// ListApps implements valet.OAuthService.
func (s *Store) ListApps(ctx context.Context, ownerUserID int64) ([]valet.App, error) {
	const op = "sqlstore.ListApps"
	where := `owner_user_id = $1`
	if ownerUserID == 0 {
		where = `$1 = 0`
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+appColumns+` FROM apps WHERE `+where+`
		ORDER BY created_at DESC, id DESC`, ownerUserID)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	apps := []valet.App{}
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, s.fail(op, err, "")
		}
		apps = append(apps, *a)
	}
	return apps, s.fail(op, rows.Err(), "")
}

// UpdateApp implements valet.OAuthService. The client id, secret, owner and
// kind (public or confidential) do not change.
func (s *Store) UpdateApp(ctx context.Context, a *valet.App) error {
	const op = "sqlstore.UpdateApp"
	if err := a.Validate(); err != nil {
		return s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	var oldScopes string
	if err := tx.QueryRowContext(ctx, `SELECT scopes FROM apps a WHERE id = $1`+s.d.forUpdate("a"), a.ID).
		Scan(&oldScopes); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(op, valet.ENOTFOUND, "App not found.", err)
		}
		return s.fail(op, err, "")
	}
	if !a.Scopes.Contains(parseStoredScopes(oldScopes)) {
		if err := tx.narrowInstallations(ctx, a.ID, a.Scopes); err != nil {
			return s.fail(op, err, "")
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE apps SET name = $1, scopes = $2, description = $3,
		developer_name = $4, homepage_url = $5, logo_url = $6, redirect_uris = $7, refresh_leeway = $8,
		id_token_alg = $9, updated_at = $10 WHERE id = $11`,
		a.Name, a.Scopes.String(), a.Description, a.DeveloperName, a.HomepageURL, a.LogoURL,
		strings.Join(a.RedirectURIs, "\n"), a.RefreshLeeway, a.IDTokenAlg, micros(tx.now), a.ID)
	if err != nil {
		return s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errorf(op, valet.ENOTFOUND, "App not found.", err)
	}
	a.UpdatedDatetime = tx.now
	if err := tx.audit(ctx, 0, a.ID, valet.AuditAppUpdated, map[string]any{"client_id": a.ClientID, "name": a.Name,
		"scopes": a.Scopes.String()}); err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

// narrowInstallations takes the scopes an app no longer registers away
// from its installations: its grants, codes and tokens keep only the
// scopes in allowed, so narrowing a registration narrows what the app can
// do now, not only what it may ask for next. Rows sharing a scope string
// are updated together: there are few distinct ones however many tokens
// there are. Spent rows are narrowed too, which is simpler than telling
// them apart and changes nothing they can do.
func (tx *tx) narrowInstallations(ctx context.Context, appID int64, allowed valet.ScopeSet) error {
	ofApp := `grant_id IN (SELECT id FROM grants WHERE app_id = $1)`
	for _, t := range []struct{ table, rows string }{
		{"grants", `app_id = $1`},
		{"auth_codes", ofApp},
		{"access_tokens", ofApp},
		{"refresh_tokens", ofApp},
	} {
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT scopes FROM `+t.table+` WHERE `+t.rows, appID)
		if err != nil {
			return err
		}
		var stored []string
		for rows.Next() {
			var sc string
			if err := rows.Scan(&sc); err != nil {
				rows.Close()
				return err
			}
			stored = append(stored, sc)
		}
		if err := closeRows(rows); err != nil {
			return err
		}
		for _, old := range stored {
			if narrowed := parseStoredScopes(old).Intersect(allowed).String(); narrowed != old {
				if _, err := tx.ExecContext(ctx, `UPDATE `+t.table+` SET scopes = $3 WHERE scopes = $2 AND `+t.rows,
					appID, old, narrowed); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// RotateAppSecret implements valet.OAuthService.
func (s *Store) RotateAppSecret(ctx context.Context, appID int64) (string, error) {
	const op = "sqlstore.RotateAppSecret"
	tx, err := s.begin(ctx)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	defer tx.rollback()
	var public int64
	if err := tx.QueryRowContext(ctx, `SELECT public FROM apps WHERE id = $1`, appID).Scan(&public); err != nil {
		return "", s.fail(op, err, "App not found.")
	}
	if public != 0 {
		return "", invalid(op, "public", "a public app has no secret")
	}
	secret := valet.NewSecret(valet.PrefixClientSecret)
	_, err = tx.ExecContext(ctx, `UPDATE apps SET secret_hash = $1, secret_hint = $2, updated_at = $3 WHERE id = $4`,
		valet.HashSecret(secret), valet.SecretHint(secret), micros(tx.now), appID)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	if err := tx.audit(ctx, 0, appID, valet.AuditSecretRotated, nil); err != nil {
		return "", s.fail(op, err, "")
	}
	return secret, s.fail(op, tx.commit(ctx), "")
}

// DeleteApp implements valet.OAuthService: grants, codes and tokens go with
// the app (ON DELETE CASCADE).
func (s *Store) DeleteApp(ctx context.Context, appID int64) error {
	const op = "sqlstore.DeleteApp"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	var clientID, name string
	if err := tx.QueryRowContext(ctx, `SELECT client_id, name FROM apps WHERE id = $1`, appID).Scan(&clientID, &name); err != nil {
		return s.fail(op, err, "App not found.")
	}
	// Every account that loses the app hears of it in its own audit log;
	// the audit rows outlive the app (app_id is not a foreign key).
	type installed struct{ account, grant int64 }
	var grants []installed
	rows, err := tx.QueryContext(ctx, `SELECT account_id, id FROM grants WHERE app_id = $1 AND revoked_at IS NULL`, appID)
	if err != nil {
		return s.fail(op, err, "")
	}
	for rows.Next() {
		var g installed
		if err := rows.Scan(&g.account, &g.grant); err != nil {
			rows.Close()
			return s.fail(op, err, "")
		}
		grants = append(grants, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.fail(op, err, "")
	}
	for _, g := range grants {
		details := map[string]any{"client_id": clientID, "name": name, "grant_id": g.grant}
		if err := tx.audit(ctx, g.account, appID, valet.AuditAppDeleted, details); err != nil {
			return s.fail(op, err, "")
		}
	}
	details := map[string]any{"client_id": clientID, "name": name, "grants_revoked": len(grants)}
	if err := tx.audit(ctx, 0, appID, valet.AuditAppDeleted, details); err != nil {
		return s.fail(op, err, "")
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM apps WHERE id = $1`, appID); err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

const grantColumns = `id, account_id, user_id, app_id, scopes, created_at, revoked_at, updated_at, last_used_at`

func scanGrant(row scanner) (*valet.Grant, error) {
	g := &valet.Grant{}
	var scopes string
	var created, updated int64
	var revoked, lastUsed sql.NullInt64
	if err := row.Scan(&g.ID, &g.AccountID, &g.UserID, &g.AppID, &scopes, &created, &revoked, &updated, &lastUsed); err != nil {
		return nil, err
	}
	g.Scopes, g.CreatedDatetime, g.RevokedDatetime = parseStoredScopes(scopes), fromMicros(created), fromNullMicros(revoked)
	g.LastUsedDatetime = fromNullMicros(lastUsed)
	g.UpdatedDatetime = fromMicros(updated)
	if updated == 0 {
		g.UpdatedDatetime = g.CreatedDatetime
	}
	return g, nil
}

// FindActiveGrant implements valet.OAuthService.
func (s *Store) FindActiveGrant(ctx context.Context, accountID, userID, appID int64) (*valet.Grant, error) {
	const op = "sqlstore.FindActiveGrant"
	g, err := scanGrant(s.queryRow(ctx, `SELECT `+grantColumns+` FROM grants
		WHERE account_id = $1 AND user_id = $2 AND app_id = $3 AND revoked_at IS NULL
		ORDER BY id DESC LIMIT 1`, accountID, userID, appID))
	return g, s.fail(op, err, "Grant not found.")
}

// Consent implements valet.OAuthService.
func (s *Store) Consent(ctx context.Context, accountID, userID, appID int64, scopes valet.ScopeSet) (*valet.Grant, error) {
	const op = "sqlstore.Consent"
	scopes, err := valet.ParseScopes(scopes.String())
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer tx.rollback()
	var appScopes string
	if err := tx.QueryRowContext(ctx, `SELECT scopes FROM apps WHERE id = $1`, appID).Scan(&appScopes); err != nil {
		return nil, s.fail(op, err, "App not found.")
	}
	if !parseStoredScopes(appScopes).Contains(scopes) {
		return nil, invalid(op, "scopes", "the app did not register some of these scopes")
	}
	if _, err := findMember(ctx, tx, accountID, userID); err != nil {
		return nil, s.fail(op, err, "This user is not a member of the account.")
	}
	// Locked (PostgreSQL), so that concurrent consents union their scopes
	// rather than overwrite each other's.
	g, err := scanGrant(tx.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM grants g
		WHERE account_id = $1 AND user_id = $2 AND app_id = $3 AND revoked_at IS NULL
		ORDER BY id DESC LIMIT 1`+s.d.forUpdate("g"), accountID, userID, appID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		g = &valet.Grant{AccountID: accountID, UserID: userID, AppID: appID, Scopes: scopes,
			CreatedDatetime: tx.now, UpdatedDatetime: tx.now}
		err = tx.QueryRowContext(ctx, `INSERT INTO grants (account_id, user_id, app_id, scopes, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $5) RETURNING id`,
			accountID, userID, appID, scopes.String(), micros(tx.now)).Scan(&g.ID)
		if s.d.isUnique(err) {
			// Another node recorded a consent for the same app at once.
			return nil, errorf(op, valet.ECONFLICT, "The app was approved at the same time elsewhere; please try again.", err)
		}
		if err != nil {
			return nil, s.fail(op, err, "")
		}
	case err != nil:
		return nil, s.fail(op, err, "")
	default:
		g.Scopes, g.UpdatedDatetime = g.Scopes.Union(scopes), tx.now
		if _, err := tx.ExecContext(ctx, `UPDATE grants SET scopes = $1, updated_at = $2 WHERE id = $3`,
			g.Scopes.String(), micros(tx.now), g.ID); err != nil {
			return nil, s.fail(op, err, "")
		}
	}
	details := map[string]any{"grant_id": g.ID, "user_id": userID, "scopes": scopes.String()}
	tx.actor.UserID = userID
	if err := tx.audit(ctx, accountID, appID, valet.AuditConsentGiven, details); err != nil {
		return nil, s.fail(op, err, "")
	}
	return g, s.fail(op, tx.commit(ctx), "")
}

// ListGrants implements valet.OAuthService.
func (s *Store) ListGrants(ctx context.Context, accountID int64) ([]valet.Grant, error) {
	const op = "sqlstore.ListGrants"
	rows, err := s.r.QueryContext(ctx, `SELECT `+grantColumns+` FROM grants
		WHERE account_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id DESC`, accountID)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	grants := []valet.Grant{}
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, s.fail(op, err, "")
		}
		grants = append(grants, *g)
	}
	return grants, s.fail(op, rows.Err(), "")
}

// audit inserts an audit entry in the transaction; the actor is the tx's.
func (tx *tx) audit(ctx context.Context, accountID, appID int64, action string, details any) error {
	b := []byte("{}")
	if details != nil {
		var err error
		if b, err = json.Marshal(details); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO audit_log (account_id, actor_user_id, app_id, action, details, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		zeroNull(accountID), zeroNull(tx.actor.UserID), zeroNull(appID), action, string(b), micros(tx.now))
	return err
}

// AppendAudit implements valet.OAuthService.
func (s *Store) AppendAudit(ctx context.Context, e *valet.AuditEntry) error {
	const op = "sqlstore.AppendAudit"
	if e.Action == "" {
		return invalid(op, "action", "is required")
	}
	if len(e.Details) == 0 {
		e.Details = json.RawMessage("{}")
	}
	if !json.Valid(e.Details) {
		return invalid(op, "details", "must be JSON")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	if e.ActorUserID == 0 {
		e.ActorUserID = tx.actor.UserID
	}
	e.CreatedDatetime = tx.now
	err = tx.QueryRowContext(ctx, `INSERT INTO audit_log (account_id, actor_user_id, app_id, action, details, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		zeroNull(e.AccountID), zeroNull(e.ActorUserID), zeroNull(e.AppID), e.Action, string(e.Details),
		micros(tx.now)).Scan(&e.ID)
	if err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

// ListAudit implements valet.OAuthService.
func (s *Store) ListAudit(ctx context.Context, accountID int64, limit int) ([]valet.AuditEntry, error) {
	const op = "sqlstore.ListAudit"
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	where := `account_id = $1`
	if accountID == 0 {
		where = `account_id IS NULL AND $1 = 0`
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, COALESCE(account_id, 0), COALESCE(actor_user_id, 0),
		COALESCE(app_id, 0), action, details, created_at FROM audit_log WHERE `+where+`
		ORDER BY id DESC LIMIT $2`, accountID, limit)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	out := []valet.AuditEntry{}
	for rows.Next() {
		var e valet.AuditEntry
		var details string
		var created int64
		if err := rows.Scan(&e.ID, &e.AccountID, &e.ActorUserID, &e.AppID, &e.Action, &details, &created); err != nil {
			return nil, s.fail(op, err, "")
		}
		e.Details, e.CreatedDatetime = json.RawMessage(details), fromMicros(created)
		out = append(out, e)
	}
	return out, s.fail(op, rows.Err(), "")
}

// CreateSigningKey implements valet.OAuthService.
func (s *Store) CreateSigningKey(ctx context.Context, k *valet.SigningKey) error {
	const op = "sqlstore.CreateSigningKey"
	if k.ID == "" || len(k.Sealed) == 0 {
		return invalid(op, "key", "id and sealed key are required")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	k.CreatedDatetime, k.RetiredDatetime = tx.now, nil
	_, err = tx.ExecContext(ctx, `INSERT INTO signing_keys (id, algorithm, sealed, created_at) VALUES ($1, $2, $3, $4)`,
		k.ID, k.Algorithm, k.Sealed, micros(tx.now))
	if err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

// ListSigningKeys implements valet.OAuthService.
func (s *Store) ListSigningKeys(ctx context.Context) ([]valet.SigningKey, error) {
	const op = "sqlstore.ListSigningKeys"
	rows, err := s.r.QueryContext(ctx, `SELECT id, algorithm, sealed, created_at, retired_at FROM signing_keys
		ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	out := []valet.SigningKey{}
	for rows.Next() {
		var k valet.SigningKey
		var created int64
		var retired sql.NullInt64
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.Sealed, &created, &retired); err != nil {
			return nil, s.fail(op, err, "")
		}
		k.CreatedDatetime, k.RetiredDatetime = fromMicros(created), fromNullMicros(retired)
		out = append(out, k)
	}
	return out, s.fail(op, rows.Err(), "")
}

// RetireSigningKey implements valet.OAuthService.
func (s *Store) RetireSigningKey(ctx context.Context, id string) error {
	const op = "sqlstore.RetireSigningKey"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `UPDATE signing_keys SET retired_at = COALESCE(retired_at, $1) WHERE id = $2`,
		micros(tx.now), id)
	if err != nil {
		return s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errorf(op, valet.ENOTFOUND, "Signing key not found.", err)
	}
	return s.fail(op, tx.commit(ctx), "")
}

// timeSince is the clock's view of how long ago t was.
func (tx *tx) since(t time.Time) time.Duration { return tx.now.Sub(t) }
