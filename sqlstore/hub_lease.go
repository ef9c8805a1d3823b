package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/valethq/valet"
)

// The refresh lease: a connection row carries lease_owner, lease_until and
// fence. Granting the lease increases fence; every write under a lease is
// conditional on the row's fence and owner still being the lease's, so a
// process that stalled past its lease, or whose connection was reconnected
// meanwhile (SaveConnection increases fence too), writes nothing.

// AcquireRefreshLease implements valet.HubStore. The lease is granted when
// none is held, the held one has expired, or owner holds it already (it is
// then renewed with a new fence). A revoked connection is refused with
// EUNAUTHORIZED, so that callers stop refreshing it until it is
// reconnected.
func (h *HubStore) AcquireRefreshLease(ctx context.Context, connectionID int64, owner string, ttl time.Duration) (*valet.RefreshLease, error) {
	const op = "sqlstore.AcquireRefreshLease"
	p := valet.Problems{}
	if owner == "" {
		p.Add("owner", "is required")
	}
	if ttl <= 0 {
		p.Add("ttl", "must be positive")
	}
	if err := p.Err(); err != nil {
		return nil, h.s.fail(op, err, "")
	}
	// On SQLite the writer's BEGIN IMMEDIATE takes the database's write
	// lock before the read; on PostgreSQL the SELECT locks the row.
	tx, err := h.s.begin(ctx)
	if err != nil {
		return nil, h.s.fail(op, err, "")
	}
	defer tx.rollback()
	var sec valet.ConnectionSecrets
	var holder sql.NullString
	var until sql.NullInt64
	c, err := scanHubConnection(tx.QueryRowContext(ctx, `SELECT `+hubConnCols+`, `+hubSecretCols+`, c.lease_owner, c.lease_until`+
		hubConnFrom+` WHERE c.id = $1`+h.s.d.forUpdate("c"), connectionID), &sec, &holder, &until)
	if err != nil {
		return nil, h.s.fail(op, err, msgConnNotFound)
	}
	if c.Status == valet.ConnectionRevoked {
		return nil, errorf(op, valet.EUNAUTHORIZED, msgConnRevoked, nil)
	}
	now := micros(tx.now)
	if holder.Valid && holder.String != owner && until.Valid && until.Int64 > now {
		return nil, errorf(op, valet.ECONFLICT, msgLeaseHeld, nil)
	}
	l := &valet.RefreshLease{ConnectionID: c.ID, Owner: owner, Expires: tx.now.Add(ttl).Truncate(time.Microsecond),
		Connection: *c, Secrets: sec}
	err = tx.QueryRowContext(ctx, `UPDATE hub_connections SET lease_owner = $1, lease_until = $2, fence = fence + 1
		WHERE id = $3 RETURNING fence`, owner, micros(l.Expires), c.ID).Scan(&l.Fence)
	if err != nil {
		return nil, h.s.fail(op, err, msgConnNotFound)
	}
	if err := tx.commit(ctx); err != nil {
		return nil, h.s.fail(op, err, "")
	}
	return l, nil
}

// leaseLost tells why a write under l changed no row: the connection is
// gone (ENOTFOUND) or the lease is no longer current (ECONFLICT).
func (tx *tx) leaseLost(ctx context.Context, op string, l *valet.RefreshLease) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM hub_connections WHERE id = $1`, l.ConnectionID).Scan(&one)
	if err != nil {
		return tx.s.fail(op, err, msgConnNotFound)
	}
	return errorf(op, valet.ECONFLICT, msgLeaseLost, nil)
}

func validLease(op string, l *valet.RefreshLease) error {
	if l == nil || l.ConnectionID == 0 || l.Owner == "" {
		e := valet.Invalid(map[string][]string{"lease": {"is required"}})
		e.Op = op
		return e
	}
	return nil
}

// CompleteRefresh implements valet.HubStore. It writes s's key and tokens;
// a nil s.WebhookSecret keeps the stored webhook secret if s.KeyID is the
// key it is sealed with (the usual case: a refresh does not touch the
// webhook) and forgets it otherwise. It does not require the lease to be
// unexpired, only current: no other process took it since.
func (h *HubStore) CompleteRefresh(ctx context.Context, l *valet.RefreshLease, s valet.ConnectionSecrets, accessExpires, nextRefresh time.Time) (*valet.Connection, error) {
	const op = "sqlstore.CompleteRefresh"
	if err := validLease(op, l); err != nil {
		return nil, err
	}
	p := valet.Problems{}
	validateSecrets(p, s)
	if err := p.Err(); err != nil {
		return nil, h.s.fail(op, err, "")
	}
	tx, err := h.s.begin(ctx)
	if err != nil {
		return nil, h.s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `UPDATE hub_connections SET
			webhook_secret = COALESCE($1, CASE WHEN key_id = $2 THEN webhook_secret END),
			key_id = $2, access_token = $3, refresh_token = $4,
			access_expires_at = $5, next_refresh_at = $6, last_refresh_at = $7, updated_at = $7,
			status = $8, last_error = '', failures = 0, revoked_at = NULL,
			generation = generation + 1, lease_owner = NULL, lease_until = NULL
		WHERE id = $9 AND fence = $10 AND lease_owner = $11`,
		nullBytes(s.WebhookSecret), s.KeyID, s.AccessToken, nullBytes(s.RefreshToken),
		micros(accessExpires), micros(nextRefresh), micros(tx.now), valet.ConnectionActive,
		l.ConnectionID, l.Fence, l.Owner)
	if err != nil {
		return nil, h.s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, h.s.fail(op, err, "")
	} else if n == 0 {
		return nil, tx.leaseLost(ctx, op, l)
	}
	c, err := tx.findConnection(ctx, l.ConnectionID, nil)
	if err != nil {
		return nil, h.s.fail(op, err, msgConnNotFound)
	}
	if err := tx.commit(ctx); err != nil {
		return nil, h.s.fail(op, err, "")
	}
	return c, nil
}

// ReleaseRefreshLease implements valet.HubStore.
func (h *HubStore) ReleaseRefreshLease(ctx context.Context, l *valet.RefreshLease) error {
	const op = "sqlstore.ReleaseRefreshLease"
	if err := validLease(op, l); err != nil {
		return err
	}
	_, err := h.s.w.ExecContext(ctx, `UPDATE hub_connections SET lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND fence = $2 AND lease_owner = $3`, l.ConnectionID, l.Fence, l.Owner)
	return h.s.fail(op, err, "")
}

// FailRefresh implements valet.HubStore. status is degraded or revoked
// (else EINVALID); revoked records the revocation time.
func (h *HubStore) FailRefresh(ctx context.Context, l *valet.RefreshLease, status, lastError string, nextRefresh time.Time) error {
	const op = "sqlstore.FailRefresh"
	if err := validLease(op, l); err != nil {
		return err
	}
	if status != valet.ConnectionDegraded && status != valet.ConnectionRevoked {
		return invalid(op, "status", "must be degraded or revoked")
	}
	tx, err := h.s.begin(ctx)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `UPDATE hub_connections SET
			status = $1, last_error = $2, failures = failures + 1, next_refresh_at = $3, updated_at = $4,
			revoked_at = CASE WHEN $1 = 'revoked' THEN COALESCE(revoked_at, $4) ELSE revoked_at END,
			lease_owner = NULL, lease_until = NULL
		WHERE id = $5 AND fence = $6 AND lease_owner = $7`,
		status, lastError, micros(nextRefresh), micros(tx.now), l.ConnectionID, l.Fence, l.Owner)
	if err != nil {
		return h.s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil {
		return h.s.fail(op, err, "")
	} else if n == 0 {
		return tx.leaseLost(ctx, op, l)
	}
	return h.s.fail(op, tx.commit(ctx), "")
}

// MarkConnection implements valet.HubStore. Revoked records the revocation
// time (kept if already revoked), active clears it; an unknown status is
// EINVALID. It leaves failures and the lease alone.
func (h *HubStore) MarkConnection(ctx context.Context, id, generation int64, status, lastError string) (bool, error) {
	const op = "sqlstore.MarkConnection"
	switch status {
	case valet.ConnectionActive, valet.ConnectionDegraded, valet.ConnectionRevoked:
	default:
		return false, invalid(op, "status", "must be active, degraded or revoked")
	}
	tx, err := h.s.begin(ctx)
	if err != nil {
		return false, h.s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `UPDATE hub_connections SET status = $1, last_error = $2, updated_at = $3,
			revoked_at = CASE WHEN $1 = 'revoked' THEN COALESCE(revoked_at, $3)
				WHEN $1 = 'active' THEN NULL ELSE revoked_at END
		WHERE id = $4 AND generation = $5`,
		status, lastError, micros(tx.now), id, generation)
	if err != nil {
		return false, h.s.fail(op, err, "")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, h.s.fail(op, err, "")
	}
	if n == 0 {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM hub_connections WHERE id = $1`, id).Scan(&one); err != nil {
			return false, h.s.fail(op, err, msgConnNotFound)
		}
		return false, nil
	}
	if err := tx.commit(ctx); err != nil {
		return false, h.s.fail(op, err, "")
	}
	return true, nil
}
