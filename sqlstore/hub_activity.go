package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/valethq/valet"
)

// RecordActivity implements valet.HubStore. A new event gets a.ID, a.Account
// and, when a.Received is zero, the time it was stored; an unknown
// connection is ENOTFOUND. The cursor only moves forward, so events arriving
// out of order (a webhook retry after a poll) never move it back.
func (h *HubStore) RecordActivity(ctx context.Context, a *valet.Activity) (bool, error) {
	const op = "sqlstore.RecordActivity"
	tx, err := h.s.begin(ctx)
	if err != nil {
		return false, h.s.fail(op, err, "")
	}
	defer tx.rollback()
	var account string
	if err := tx.QueryRowContext(ctx, `SELECT account FROM hub_connections WHERE id = $1`, a.ConnectionID).
		Scan(&account); err != nil {
		return false, h.s.fail(op, err, msgConnNotFound)
	}
	received := a.Received.UTC().Truncate(time.Microsecond)
	if a.Received.IsZero() {
		received = tx.now
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO hub_activity (connection_id, event_id, event_type, summary, via, received_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (connection_id, event_id) DO NOTHING RETURNING id`,
		a.ConnectionID, a.EventID, a.EventType, a.Summary, a.Via, micros(received)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil // known: nothing to write
	}
	if err != nil {
		return false, h.s.fail(op, err, "")
	}
	if _, err := tx.ExecContext(ctx, `UPDATE hub_connections SET event_cursor = $1 WHERE id = $2 AND event_cursor < $1`,
		a.EventID, a.ConnectionID); err != nil {
		return false, h.s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return false, h.s.fail(op, err, "")
	}
	a.ID, a.Account, a.Received = id, account, received
	return false, nil
}

// ListActivity implements valet.HubStore. A limit outside 1-200 is 200.
func (h *HubStore) ListActivity(ctx context.Context, connectedBy int64, limit int) ([]valet.Activity, error) {
	const op = "sqlstore.ListActivity"
	if limit < 1 || limit > 200 {
		limit = 200
	}
	q := `SELECT a.id, a.connection_id, c.account, a.event_id, a.event_type, a.summary, a.via, a.received_at
		FROM hub_activity a JOIN hub_connections c ON c.id = a.connection_id`
	var args []any
	if connectedBy != 0 {
		args = append(args, connectedBy)
		q += ` WHERE c.connected_by = $1`
	}
	args = append(args, limit)
	rows, err := h.s.r.QueryContext(ctx, q+` ORDER BY a.id DESC LIMIT $`+itoa(len(args)), args...)
	if err != nil {
		return nil, h.s.fail(op, err, "")
	}
	defer rows.Close()
	out := []valet.Activity{}
	for rows.Next() {
		var a valet.Activity
		var received int64
		if err := rows.Scan(&a.ID, &a.ConnectionID, &a.Account, &a.EventID, &a.EventType, &a.Summary, &a.Via,
			&received); err != nil {
			return nil, h.s.fail(op, err, "")
		}
		a.Received = fromMicros(received)
		out = append(out, a)
	}
	return out, h.s.fail(op, rows.Err(), "")
}

// PurgeActivity implements valet.HubStore. A limit outside 1-10,000 is
// 10,000, so one call holds the writer briefly.
func (h *HubStore) PurgeActivity(ctx context.Context, before time.Time, limit int) (int, error) {
	const op = "sqlstore.PurgeActivity"
	if limit < 1 || limit > 10000 {
		limit = 10000
	}
	res, err := h.s.w.ExecContext(ctx, `DELETE FROM hub_activity WHERE id IN (
		SELECT id FROM hub_activity WHERE received_at < $1 ORDER BY received_at LIMIT $2)`,
		micros(before.UTC()), limit)
	if err != nil {
		return 0, h.s.fail(op, err, "")
	}
	n, err := res.RowsAffected()
	return int(n), h.s.fail(op, err, "")
}
