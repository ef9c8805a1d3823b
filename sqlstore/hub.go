package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/valethq/valet"
)

var _ valet.HubStore = (*HubStore)(nil)

// HubStore implements valet.HubStore, the integration hub's database, on
// SQLite or PostgreSQL. It shares the helpdesk store's machinery (pools,
// dialect, transactions, migration runner) but none of its methods: a hub
// cannot reach helpdesk data through it.
type HubStore struct{ s *Store }

// hubSchemaTable records the hub's migrations, apart from the helpdesk's
// schema_migrations, so that both schemas may share one database.
const hubSchemaTable = "hub_schema_migrations"

// OpenHub connects to the hub's database and applies its pending migrations
// (migrations/hub/<dialect>). As with Open, a dsn starting with postgres://
// or postgresql:// is a PostgreSQL connection string and anything else the
// path of an SQLite file, created if missing. Of the options, WithClock
// matters.
func OpenHub(ctx context.Context, dsn string, opts ...Option) (*HubStore, error) {
	s := &Store{d: dialectFor(dsn), clock: valet.SystemClock{}}
	for _, o := range opts {
		o(s)
	}
	w, r, err := s.d.open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open hub %s: %w", s.d.name, err)
	}
	s.w, s.r = w, r
	h := &HubStore{s: s}
	if err := h.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return h, nil
}

// Migrate applies the hub migrations the database has not seen (OpenHub
// does it); idempotent and safe when several hubs start at once.
func (h *HubStore) Migrate(ctx context.Context) error {
	return h.s.migrate(ctx, "sqlstore.HubMigrate", path.Join("migrations/hub", h.s.d.name), hubSchemaTable)
}

// SchemaVersion returns the newest hub migration applied to the database.
func (h *HubStore) SchemaVersion(ctx context.Context) (int64, error) {
	return h.s.schemaVersion(ctx, "sqlstore.HubSchemaVersion", hubSchemaTable)
}

// Dialect returns "sqlite" or "postgres".
func (h *HubStore) Dialect() string { return h.s.d.name }

// Ping reports whether the database answers.
func (h *HubStore) Ping(ctx context.Context) error { return h.s.Ping(ctx) }

// Close closes the connection pools.
func (h *HubStore) Close() error { return h.s.Close() }

const (
	msgHubSessionInvalid = "Your session has expired; please sign in again."
	msgConnNotFound      = "Connection not found."
	msgConnRevoked       = "This connection was revoked; reconnect it."
	msgLeaseHeld         = "Another hub process is refreshing this connection."
	msgLeaseLost         = "The refresh lease is no longer current: another hub process refreshed or reconnected this connection."
)

// UpsertHubUser implements valet.HubStore.
func (h *HubStore) UpsertHubUser(ctx context.Context, u *valet.HubUser) error {
	const op = "sqlstore.UpsertHubUser"
	p := valet.Problems{}
	if strings.TrimSpace(u.Issuer) == "" {
		p.Add("issuer", "is required")
	}
	if strings.TrimSpace(u.Subject) == "" {
		p.Add("subject", "is required")
	}
	if err := p.Err(); err != nil {
		return h.s.fail(op, err, "")
	}
	tx, err := h.s.begin(ctx)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	defer tx.rollback()
	var created int64
	err = tx.QueryRowContext(ctx, `INSERT INTO hub_users (issuer, subject, email, name, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $5)
		ON CONFLICT (issuer, subject) DO UPDATE SET email = excluded.email, name = excluded.name, updated_at = excluded.updated_at
		RETURNING id, created_at`,
		u.Issuer, u.Subject, u.Email, u.Name, micros(tx.now)).Scan(&u.ID, &created)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return h.s.fail(op, err, "")
	}
	u.CreatedDatetime = fromMicros(created)
	return nil
}

// CreateHubSession implements valet.HubStore. It also drops the user's
// expired sessions, which keeps the table from growing without a janitor.
func (h *HubStore) CreateHubSession(ctx context.Context, userID int64, ttl time.Duration) (string, error) {
	const op = "sqlstore.CreateHubSession"
	tx, err := h.s.begin(ctx)
	if err != nil {
		return "", h.s.fail(op, err, "")
	}
	defer tx.rollback()
	secret := valet.NewSecret(valet.PrefixSession)
	_, err = tx.ExecContext(ctx, `INSERT INTO hub_sessions (secret_hash, user_id, created_at, expires_at)
		VALUES ($1, $2, $3, $4)`,
		valet.HashSecret(secret), userID, micros(tx.now), micros(tx.now.Add(ttl)))
	if h.s.d.isForeignKey(err) {
		return "", errorf(op, valet.ENOTFOUND, "User not found.", err)
	}
	if err != nil {
		return "", h.s.fail(op, err, "")
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM hub_sessions WHERE user_id = $1 AND expires_at <= $2`,
		userID, micros(tx.now)); err != nil {
		return "", h.s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return "", h.s.fail(op, err, "")
	}
	return secret, nil
}

// HubSessionUser implements valet.HubStore.
func (h *HubStore) HubSessionUser(ctx context.Context, secret string) (*valet.HubUser, error) {
	const op = "sqlstore.HubSessionUser"
	var u valet.HubUser
	var created int64
	err := h.s.queryRow(ctx, `SELECT u.id, u.issuer, u.subject, u.email, u.name, u.created_at
		FROM hub_sessions s JOIN hub_users u ON u.id = s.user_id
		WHERE s.secret_hash = $1 AND s.expires_at > $2`, valet.HashSecret(secret), micros(h.s.now())).
		Scan(&u.ID, &u.Issuer, &u.Subject, &u.Email, &u.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errorf(op, valet.EUNAUTHORIZED, msgHubSessionInvalid, err)
	}
	if err != nil {
		return nil, h.s.fail(op, err, "")
	}
	u.CreatedDatetime = fromMicros(created)
	return &u, nil
}

// DeleteHubSession implements valet.HubStore.
func (h *HubStore) DeleteHubSession(ctx context.Context, secret string) error {
	const op = "sqlstore.DeleteHubSession"
	_, err := h.s.w.ExecContext(ctx, `DELETE FROM hub_sessions WHERE secret_hash = $1`, valet.HashSecret(secret))
	return h.s.fail(op, err, "")
}

// hubConnCols are the columns of a valet.Connection, read FROM hubConnFrom.
const hubConnCols = `c.id, c.provider, c.base_url, c.account, c.scopes, c.status, COALESCE(c.connected_by, 0),
	COALESCE(NULLIF(u.name, ''), u.email, ''), c.access_expires_at, c.next_refresh_at, c.last_refresh_at,
	c.last_error, c.failures, c.integration_id, c.event_cursor, c.generation, c.created_at, c.updated_at,
	c.revoked_at, c.last_used_at`

// hubSecretCols are the columns of its valet.ConnectionSecrets.
const hubSecretCols = `c.key_id, c.access_token, c.refresh_token, c.webhook_secret`

// hubConnFrom joins the connector, whose name reads fill in.
const hubConnFrom = ` FROM hub_connections c LEFT JOIN hub_users u ON u.id = c.connected_by`

// scanHubConnection scans hubConnCols, then hubSecretCols into sec if it
// is not nil, then extra.
func scanHubConnection(sc scanner, sec *valet.ConnectionSecrets, extra ...any) (*valet.Connection, error) {
	var c valet.Connection
	var scopes string
	var accessExpires, nextRefresh, created, updated int64
	var lastRefresh, revoked, lastUsed sql.NullInt64
	dest := []any{&c.ID, &c.Provider, &c.BaseURL, &c.Account, &scopes, &c.Status, &c.ConnectedBy,
		&c.ConnectedByName, &accessExpires, &nextRefresh, &lastRefresh,
		&c.LastError, &c.Failures, &c.IntegrationID, &c.EventCursor, &c.Generation, &created, &updated,
		&revoked, &lastUsed}
	if sec != nil {
		dest = append(dest, &sec.KeyID, &sec.AccessToken, &sec.RefreshToken, &sec.WebhookSecret)
	}
	if err := sc.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	c.Scopes = strings.Fields(scopes)
	c.AccessExpires, c.NextRefresh = fromMicros(accessExpires), fromMicros(nextRefresh)
	c.CreatedDatetime, c.UpdatedDatetime = fromMicros(created), fromMicros(updated)
	c.LastRefresh, c.RevokedDatetime, c.LastUsedDatetime = fromNullMicros(lastRefresh), fromNullMicros(revoked), fromNullMicros(lastUsed)
	if sec != nil {
		// Empty and NULL read back alike, as nil.
		for _, b := range []*[]byte{&sec.AccessToken, &sec.RefreshToken, &sec.WebhookSecret} {
			if len(*b) == 0 {
				*b = nil
			}
		}
	}
	return &c, nil
}

// nullBytes stores an empty sealed value as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// findConnection reads a connection (and its secrets if sec is not nil)
// inside tx.
func (tx *tx) findConnection(ctx context.Context, id int64, sec *valet.ConnectionSecrets) (*valet.Connection, error) {
	cols := hubConnCols
	if sec != nil {
		cols += ", " + hubSecretCols
	}
	return scanHubConnection(tx.QueryRowContext(ctx, `SELECT `+cols+hubConnFrom+` WHERE c.id = $1`, id), sec)
}

// validateSecrets checks what every write of a connection's tokens needs.
func validateSecrets(p valet.Problems, s valet.ConnectionSecrets) {
	if s.KeyID == "" {
		p.Add("key_id", "is required")
	}
	if len(s.AccessToken) == 0 {
		p.Add("access_token", "is required")
	}
}

// SaveConnection implements valet.HubStore. A reconnect also clears the
// failures, the last error and the revocation, increases the generation,
// and releases any refresh lease with a new fence, so that a refresh of
// the old tokens still in flight cannot complete. The event cursor and
// last-used time are kept. A nil s.WebhookSecret keeps the stored webhook
// (integration id and secret) when s.KeyID is the key it is sealed with,
// and forgets it otherwise (it could no longer be opened). On return c is
// the connection as stored.
func (h *HubStore) SaveConnection(ctx context.Context, c *valet.Connection, s valet.ConnectionSecrets) error {
	const op = "sqlstore.SaveConnection"
	p := valet.Problems{}
	if strings.TrimSpace(c.Provider) == "" {
		p.Add("provider", "is required")
	}
	if strings.TrimSpace(c.Account) == "" {
		p.Add("account", "is required")
	}
	if c.BaseURL == "" {
		p.Add("base_url", "is required")
	} else if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Add("base_url", "must be an absolute http(s) URL")
	}
	validateSecrets(p, s)
	if err := p.Err(); err != nil {
		return h.s.fail(op, err, "")
	}
	tx, err := h.s.begin(ctx)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	defer tx.rollback()
	now := micros(tx.now)
	var id int64
	// $10 (the new webhook secret) may be NULL: COALESCE keeps the stored
	// one then, if the key is unchanged, and forgets it otherwise.
	err = tx.QueryRowContext(ctx, `INSERT INTO hub_connections
		(provider, base_url, account, scopes, status, connected_by, key_id, access_token, refresh_token,
		 webhook_secret, integration_id, access_expires_at, next_refresh_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
		ON CONFLICT (provider, base_url, account) DO UPDATE SET
			scopes = excluded.scopes,
			status = excluded.status,
			connected_by = excluded.connected_by,
			integration_id = CASE
				WHEN excluded.webhook_secret IS NOT NULL THEN excluded.integration_id
				WHEN hub_connections.key_id = excluded.key_id THEN hub_connections.integration_id
				ELSE 0 END,
			webhook_secret = COALESCE(excluded.webhook_secret,
				CASE WHEN hub_connections.key_id = excluded.key_id THEN hub_connections.webhook_secret END),
			key_id = excluded.key_id,
			access_token = excluded.access_token,
			refresh_token = excluded.refresh_token,
			access_expires_at = excluded.access_expires_at,
			next_refresh_at = excluded.next_refresh_at,
			last_error = '',
			failures = 0,
			revoked_at = NULL,
			generation = hub_connections.generation + 1,
			lease_owner = NULL,
			lease_until = NULL,
			fence = hub_connections.fence + 1,
			updated_at = excluded.updated_at
		WHERE hub_connections.connected_by = excluded.connected_by OR hub_connections.connected_by IS NULL
			OR excluded.connected_by IS NULL OR hub_connections.status = $15
		RETURNING id`,
		c.Provider, c.BaseURL, c.Account, strings.Join(c.Scopes, " "), valet.ConnectionActive,
		zeroNull(c.ConnectedBy), s.KeyID, s.AccessToken, nullBytes(s.RefreshToken),
		nullBytes(s.WebhookSecret), c.IntegrationID, micros(c.AccessExpires), micros(c.NextRefresh), now,
		valet.ConnectionRevoked).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		// The account's live connection is another hub user's: taking it
		// over would hand them its activity and strand its grant.
		return errorf(op, valet.ECONFLICT, "This account is already connected to the hub by another user.", err)
	}
	if h.s.d.isForeignKey(err) {
		e := valet.Invalid(map[string][]string{"connected_by": {"is not a hub user"}})
		e.Op, e.Err = op, err
		return e
	}
	if err != nil {
		return h.s.fail(op, err, "")
	}
	stored, err := tx.findConnection(ctx, id, nil)
	if err != nil {
		return h.s.fail(op, err, msgConnNotFound)
	}
	if err := tx.commit(ctx); err != nil {
		return h.s.fail(op, err, "")
	}
	*c = *stored
	return nil
}

// FindConnection implements valet.HubStore.
func (h *HubStore) FindConnection(ctx context.Context, id int64) (*valet.Connection, *valet.ConnectionSecrets, error) {
	const op = "sqlstore.FindConnection"
	var sec valet.ConnectionSecrets
	c, err := scanHubConnection(h.s.queryRow(ctx,
		`SELECT `+hubConnCols+`, `+hubSecretCols+hubConnFrom+` WHERE c.id = $1`, id), &sec)
	if err != nil {
		return nil, nil, h.s.fail(op, err, msgConnNotFound)
	}
	return c, &sec, nil
}

// ListConnections implements valet.HubStore.
func (h *HubStore) ListConnections(ctx context.Context, connectedBy int64) ([]valet.Connection, error) {
	const op = "sqlstore.ListConnections"
	q := `SELECT ` + hubConnCols + hubConnFrom
	var args []any
	if connectedBy != 0 {
		q += ` WHERE c.connected_by = $1`
		args = append(args, connectedBy)
	}
	out, err := h.listConnections(ctx, q+` ORDER BY c.id DESC`, args...)
	return out, h.s.fail(op, err, "")
}

// DueConnections implements valet.HubStore. A connection whose refresh
// lease is held (unexpired) is left out: another process is refreshing it.
// limit defaults to 100.
func (h *HubStore) DueConnections(ctx context.Context, t time.Time, limit int) ([]valet.Connection, error) {
	const op = "sqlstore.DueConnections"
	if limit <= 0 {
		limit = 100
	}
	// The status condition is hub_connections_due's, word for word.
	out, err := h.listConnections(ctx, `SELECT `+hubConnCols+hubConnFrom+`
		WHERE c.status IN ('active', 'degraded') AND c.next_refresh_at <= $1
			AND (c.lease_until IS NULL OR c.lease_until <= $2)
		ORDER BY c.next_refresh_at, c.id LIMIT $3`, micros(t), micros(h.s.now()), limit)
	return out, h.s.fail(op, err, "")
}

func (h *HubStore) listConnections(ctx context.Context, q string, args ...any) ([]valet.Connection, error) {
	rows, err := h.s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []valet.Connection{}
	for rows.Next() {
		c, err := scanHubConnection(rows, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

// DeleteConnection implements valet.HubStore.
func (h *HubStore) DeleteConnection(ctx context.Context, id int64) error {
	const op = "sqlstore.DeleteConnection"
	tx, err := h.s.begin(ctx)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM hub_connections WHERE id = $1`, id)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errorf(op, valet.ENOTFOUND, msgConnNotFound, err)
	}
	return h.s.fail(op, tx.commit(ctx), "")
}

// TouchConnections implements valet.HubStore. A time never moves
// last_used_at backwards; unknown ids are ignored.
func (h *HubStore) TouchConnections(ctx context.Context, lastUsed map[int64]time.Time) error {
	const op = "sqlstore.TouchConnections"
	if len(lastUsed) == 0 {
		return nil
	}
	tx, err := h.s.begin(ctx)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	defer tx.rollback()
	for id, t := range lastUsed {
		if _, err := tx.ExecContext(ctx, `UPDATE hub_connections SET last_used_at = $1
			WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`, micros(t), id); err != nil {
			return h.s.fail(op, err, "")
		}
	}
	return h.s.fail(op, tx.commit(ctx), "")
}

// SetConnectionWebhook implements valet.HubStore. An integrationID of 0
// with a nil secret forgets the webhook.
func (h *HubStore) SetConnectionWebhook(ctx context.Context, id, integrationID int64, sealedSecret []byte) error {
	const op = "sqlstore.SetConnectionWebhook"
	tx, err := h.s.begin(ctx)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `UPDATE hub_connections SET integration_id = $1, webhook_secret = $2, updated_at = $3
		WHERE id = $4`, integrationID, nullBytes(sealedSecret), micros(tx.now), id)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errorf(op, valet.ENOTFOUND, msgConnNotFound, err)
	}
	return h.s.fail(op, tx.commit(ctx), "")
}

// ResealConnections implements valet.HubStore. It counts the connections
// whose secrets reseal changed (a vault returns those already under its
// current key unchanged), and leaves generations and leases alone: the
// tokens are the same.
func (h *HubStore) ResealConnections(ctx context.Context, reseal func(valet.ConnectionSecrets) (valet.ConnectionSecrets, error)) (int, error) {
	const op = "sqlstore.ResealConnections"
	tx, err := h.s.begin(ctx)
	if err != nil {
		return 0, h.s.fail(op, err, "")
	}
	defer tx.rollback()
	type row struct {
		id  int64
		sec valet.ConnectionSecrets
	}
	var all []row
	rows, err := tx.QueryContext(ctx, `SELECT c.id, `+hubSecretCols+` FROM hub_connections c ORDER BY c.id`+
		h.s.d.forUpdate("c"))
	if err != nil {
		return 0, h.s.fail(op, err, "")
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.sec.KeyID, &r.sec.AccessToken, &r.sec.RefreshToken, &r.sec.WebhookSecret); err != nil {
			rows.Close()
			return 0, h.s.fail(op, err, "")
		}
		for _, b := range []*[]byte{&r.sec.AccessToken, &r.sec.RefreshToken, &r.sec.WebhookSecret} {
			if len(*b) == 0 {
				*b = nil
			}
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, h.s.fail(op, err, "")
	}
	n := 0
	for _, r := range all {
		next, err := reseal(r.sec)
		if err != nil {
			return 0, h.s.fail(op, fmt.Errorf("reseal connection %d: %w", r.id, err), "")
		}
		if sameSecrets(next, r.sec) {
			continue
		}
		p := valet.Problems{}
		validateSecrets(p, next)
		if err := p.Err(); err != nil {
			return 0, h.s.fail(op, err, "")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE hub_connections
			SET key_id = $1, access_token = $2, refresh_token = $3, webhook_secret = $4, updated_at = $5 WHERE id = $6`,
			next.KeyID, next.AccessToken, nullBytes(next.RefreshToken), nullBytes(next.WebhookSecret),
			micros(tx.now), r.id); err != nil {
			return 0, h.s.fail(op, err, "")
		}
		n++
	}
	if err := tx.commit(ctx); err != nil {
		return 0, h.s.fail(op, err, "")
	}
	return n, nil
}

func sameSecrets(a, b valet.ConnectionSecrets) bool {
	return a.KeyID == b.KeyID && string(a.AccessToken) == string(b.AccessToken) &&
		string(a.RefreshToken) == string(b.RefreshToken) && string(a.WebhookSecret) == string(b.WebhookSecret)
}
