package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valethq/valet"
)

var _ valet.IntegrationService = (*Store)(nil)

const integrationColumns = `i.id, i.account_id, i.type, i.name, i.url, i.method, i.triggers, i.secret_hint,
	i.status, i.consecutive_failures, i.last_event_id, i.app_id, i.created_by_user_id,
	i.created_at, i.updated_at, i.disabled_at, ` + appMayRead

func scanIntegration(sc scanner) (*valet.Integration, error) {
	var in valet.Integration
	var triggers string
	var appID, userID, disabled sql.NullInt64
	var created, updated int64
	var mayRead bool
	err := sc.Scan(&in.ID, &in.AccountID, &in.Type, &in.Name, &in.HTTP.URL, &in.HTTP.Method, &triggers,
		&in.SecretHint, &in.Status, &in.ConsecutiveFailures, &in.LastEventID, &appID, &userID,
		&created, &updated, &disabled, &mayRead)
	if err != nil {
		return nil, err
	}
	in.AppAccessEnded = !mayRead
	in.HTTP.Triggers = parseTriggers(triggers)
	if appID.Valid {
		in.AppID = &appID.Int64
	}
	if userID.Valid {
		in.CreatedByUserID = &userID.Int64
	}
	in.CreatedDatetime, in.UpdatedDatetime = fromMicros(created), fromMicros(updated)
	in.DisabledDatetime = fromNullMicros(disabled)
	return &in, nil
}

// Triggers are stored as the subscribed event types, space-separated; the
// domain's map has every known trigger, so the API shows the false ones too.
func formatTriggers(m map[string]bool) string {
	var on []string
	for _, typ := range valet.WebhookTriggers {
		if m[typ] {
			on = append(on, typ)
		}
	}
	return strings.Join(on, " ")
}

func parseTriggers(s string) map[string]bool {
	m := make(map[string]bool, len(valet.WebhookTriggers))
	for _, typ := range valet.WebhookTriggers {
		m[typ] = false
	}
	for _, typ := range strings.Fields(s) {
		m[typ] = true
	}
	return m
}

// noSealKey is the answer of the methods that need the seal key when the
// server was started without a secret.
func noSealKey(op string) error {
	return errorf(op, valet.EINTERNAL, "Webhooks need a server secret: set VALET_SECRET.", nil)
}

// newestEventID returns the id of the account's newest event: a cursor there
// receives what happens from now on. events_account makes it one index probe.
func newestEventID(ctx context.Context, q querier, accountID int64) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM events WHERE account_id = $1`, accountID).Scan(&id)
	return id, err
}

// CreateIntegration implements valet.IntegrationService. AppID and
// CreatedByUserID default to the context's actor.
func (s *Store) CreateIntegration(ctx context.Context, in *valet.Integration) (string, error) {
	const op = "sqlstore.CreateIntegration"
	if s.sealKey == nil {
		return "", noSealKey(op)
	}
	if err := in.Validate(); err != nil {
		return "", s.fail(op, err, "")
	}
	secret := valet.NewSecret(valet.PrefixWebhookSecret)
	sealed, err := valet.SealKey(s.sealKey, []byte(secret))
	if err != nil {
		return "", errorf(op, valet.EINTERNAL, "", err)
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	defer tx.rollback()
	cursor, err := newestEventID(ctx, tx, in.AccountID)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	if in.AppID == nil && tx.actor.AppID != 0 {
		in.AppID = &tx.actor.AppID
	}
	if in.CreatedByUserID == nil && tx.actor.UserID != 0 {
		in.CreatedByUserID = &tx.actor.UserID
	}
	in.SecretHint = valet.SecretHint(secret)
	in.ConsecutiveFailures, in.LastEventID = 0, cursor
	in.CreatedDatetime, in.UpdatedDatetime, in.DisabledDatetime = tx.now, tx.now, nil
	if in.Status == valet.IntegrationDisabled {
		in.DisabledDatetime = &tx.now
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO integrations (account_id, type, name, url, method, triggers,
		secret_sealed, secret_hint, status, consecutive_failures, last_event_id, app_id, created_by_user_id,
		created_at, updated_at, disabled_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13, $13, $14) RETURNING id`,
		in.AccountID, in.Type, in.Name, in.HTTP.URL, in.HTTP.Method, formatTriggers(in.HTTP.Triggers),
		sealed, in.SecretHint, in.Status, cursor, nullID(in.AppID), nullID(in.CreatedByUserID),
		micros(tx.now), nullMicros(in.DisabledDatetime)).Scan(&in.ID)
	if s.d.isForeignKey(err) {
		// The account, or the app or user it is attributed to, is gone.
		return "", errorf(op, valet.ENOTFOUND, "The account, app or user does not exist.", err)
	}
	if err != nil {
		return "", s.fail(op, err, "")
	}
	var mayRead bool
	if err := tx.QueryRowContext(ctx, `SELECT `+appMayRead+` FROM integrations i WHERE i.id = $1`, in.ID).Scan(&mayRead); err != nil {
		return "", s.fail(op, err, "")
	}
	in.AppAccessEnded = !mayRead
	if err := tx.commit(ctx); err != nil {
		return "", s.fail(op, err, "")
	}
	return secret, nil
}

// FindIntegration implements valet.IntegrationService.
func (s *Store) FindIntegration(ctx context.Context, accountID, id int64) (*valet.Integration, error) {
	const op = "sqlstore.FindIntegration"
	in, err := scanIntegration(s.r.QueryRowContext(ctx, `SELECT `+integrationColumns+`
		FROM integrations i WHERE i.account_id = $1 AND i.id = $2`, accountID, id))
	if err != nil {
		return nil, s.fail(op, err, "Integration not found.")
	}
	return in, nil
}

// ListIntegrations implements valet.IntegrationService.
func (s *Store) ListIntegrations(ctx context.Context, accountID int64, opt valet.ListOptions) (*valet.Page[valet.Integration], error) {
	const op = "sqlstore.ListIntegrations"
	q, err := opt.Resolve(valet.Order{Field: "id", Desc: true}, "id")
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	cond, order, args := keyset(q, "i.id", "i.id", []any{accountID})
	args = append(args, q.Limit+1)
	rows, err := s.r.QueryContext(ctx, `SELECT `+integrationColumns+`
		FROM integrations i WHERE i.account_id = $1`+cond+order+` LIMIT $`+itoa(len(args)), args...)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	var out []valet.Integration
	for rows.Next() {
		in, err := scanIntegration(rows)
		if err != nil {
			return nil, s.fail(op, err, "")
		}
		out = append(out, *in)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err, "")
	}
	return valet.NewPage(out, q, func(in *valet.Integration) (int64, int64) { return in.ID, in.ID }), nil
}

// UpdateIntegration implements valet.IntegrationService. Disabling fails the
// pending deliveries; re-enabling resets the failure count and moves the
// cursor to the newest event, so that a receiver switched back on is not
// flooded with what happened while it was off. On return in holds the
// stored integration.
func (s *Store) UpdateIntegration(ctx context.Context, in *valet.Integration) error {
	const op = "sqlstore.UpdateIntegration"
	// Validate would default an empty status to active: an update that does
	// not mention the status must not re-enable a disabled integration.
	keepStatus := in.Status == ""
	if err := in.Validate(); err != nil {
		return s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	var status string
	err = tx.QueryRowContext(ctx, `SELECT i.status FROM integrations i WHERE i.account_id = $1 AND i.id = $2`+
		s.d.forUpdate("i"), in.AccountID, in.ID).Scan(&status)
	if err != nil {
		return s.fail(op, err, "Integration not found.")
	}
	if keepStatus {
		in.Status = status
	}
	_, err = tx.ExecContext(ctx, `UPDATE integrations SET name = $1, url = $2, method = $3, triggers = $4,
		status = $5, updated_at = $6 WHERE id = $7`,
		in.Name, in.HTTP.URL, in.HTTP.Method, formatTriggers(in.HTTP.Triggers), in.Status, micros(tx.now), in.ID)
	if err != nil {
		return s.fail(op, err, "")
	}
	switch {
	case status == valet.IntegrationDisabled && in.Status == valet.IntegrationActive:
		cursor, err := newestEventID(ctx, tx, in.AccountID)
		if err != nil {
			return s.fail(op, err, "")
		}
		_, err = tx.ExecContext(ctx, `UPDATE integrations SET consecutive_failures = 0, disabled_at = NULL,
			last_event_id = $1 WHERE id = $2`, cursor, in.ID)
		if err != nil {
			return s.fail(op, err, "")
		}
	case status == valet.IntegrationActive && in.Status == valet.IntegrationDisabled:
		if err := disableIntegration(ctx, tx, in.ID, "The integration was disabled."); err != nil {
			return s.fail(op, err, "")
		}
	}
	stored, err := scanIntegration(tx.QueryRowContext(ctx, `SELECT `+integrationColumns+`
		FROM integrations i WHERE i.id = $1`, in.ID))
	if err != nil {
		return s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return s.fail(op, err, "")
	}
	*in = *stored
	return nil
}

// disableIntegration marks an integration disabled and gives up its pending
// deliveries, recording why on those that have no error of their own. The
// caller holds the integration's row.
func disableIntegration(ctx context.Context, tx *tx, id int64, why string) error {
	_, err := tx.ExecContext(ctx, `UPDATE integrations SET status = $1, disabled_at = $2, updated_at = $2
		WHERE id = $3`, valet.IntegrationDisabled, micros(tx.now), id)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE deliveries SET status = $1, locked_until = 0, updated_at = $2,
		last_error = CASE WHEN last_error = '' THEN $3 ELSE last_error END
		WHERE integration_id = $4 AND status = 'pending'`, valet.DeliveryFailed, micros(tx.now), why, id)
	return err
}

// DeleteIntegration implements valet.IntegrationService. Its deliveries go
// with it (ON DELETE CASCADE), including any being attempted: completing
// one then answers ENOTFOUND.
func (s *Store) DeleteIntegration(ctx context.Context, accountID, id int64) error {
	const op = "sqlstore.DeleteIntegration"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM integrations WHERE account_id = $1 AND id = $2`, accountID, id)
	if err != nil {
		return s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errorf(op, valet.ENOTFOUND, "Integration not found.", err)
	}
	return s.fail(op, tx.commit(ctx), "")
}

const deliveryColumns = `d.id, d.integration_id, d.account_id, d.event_id, d.event_type, d.status, d.attempts,
	d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.last_attempt_at`

// scanDelivery scans deliveryColumns followed by extra.
func scanDelivery(sc scanner, extra ...any) (*valet.Delivery, error) {
	var d valet.Delivery
	var next, created int64
	var last sql.NullInt64
	err := sc.Scan(append([]any{&d.ID, &d.IntegrationID, &d.AccountID, &d.EventID, &d.EventType, &d.Status,
		&d.Attempts, &next, &d.LastStatusCode, &d.LastError, &created, &last}, extra...)...)
	if err != nil {
		return nil, err
	}
	d.NextAttempt, d.CreatedDatetime, d.LastAttempt = fromMicros(next), fromMicros(created), fromNullMicros(last)
	return &d, nil
}

// ListDeliveries implements valet.IntegrationService. A limit of 0 means
// valet.DefaultLimit.
func (s *Store) ListDeliveries(ctx context.Context, accountID, integrationID int64, limit int) ([]valet.Delivery, error) {
	const op = "sqlstore.ListDeliveries"
	if limit == 0 {
		limit = valet.DefaultLimit
	}
	if limit < 1 || limit > valet.MaxLimit {
		return nil, invalid(op, "limit", "must be between 1 and 100")
	}
	tx, err := s.read(ctx)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer tx.rollback()
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM integrations WHERE account_id = $1 AND id = $2`,
		accountID, integrationID).Scan(&one)
	if err != nil {
		return nil, s.fail(op, err, "Integration not found.")
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM deliveries d
		WHERE d.integration_id = $1 ORDER BY d.id DESC LIMIT $2`, integrationID, limit)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	out := []valet.Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, s.fail(op, err, "")
		}
		out = append(out, *d)
	}
	return out, s.fail(op, rows.Err(), "")
}

// appMayRead is true for an integration an app set up only while the grant
// it was made under (account, app, user) is live and holds tickets:read,
// which is what every delivery carries; one set up by a person is always
// true. Revoking or narrowing the grant, deleting the app or removing the
// member thus stops the webhook at once, as it stops the app's tokens.
// Every webhook trigger is a ticket event (valet.WebhookTriggers), whose
// read scope (valet.EventReadScope) is tickets:read.
const appMayRead = `(i.app_id IS NULL OR EXISTS (SELECT 1 FROM grants g
	WHERE g.account_id = i.account_id AND g.app_id = i.app_id AND g.user_id = i.created_by_user_id
	AND g.revoked_at IS NULL AND ' ' || g.scopes || ' ' LIKE '% ` + string(valet.ScopeTicketsRead) + ` %'))`

// msgAppRevoked is the error of a delivery withheld by appMayRead.
const msgAppRevoked = "Not sent: the app that set up this webhook no longer has access to this account's tickets."

// pendingIntegrations selects the active integrations whose account has
// events after their cursor: one probe of events_account each.
const pendingIntegrations = `FROM integrations i WHERE i.status = 'active'
	AND EXISTS (SELECT 1 FROM events e WHERE e.account_id = i.account_id AND e.id > i.last_event_id)`

// EnqueueDeliveries implements valet.IntegrationService. A limit of 0 means
// valet.MaxLimit. Several nodes may call it at once: on PostgreSQL each
// integration is taken by one of them (SKIP LOCKED), and the unique
// (integration_id, event_id) makes a duplicate impossible anyway.
func (s *Store) EnqueueDeliveries(ctx context.Context, limit int) (int, error) {
	const op = "sqlstore.EnqueueDeliveries"
	if limit <= 0 {
		limit = valet.MaxLimit
	}
	// The dispatcher polls every second: when there is nothing to do, a
	// read answers that without taking SQLite's write lock.
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 `+pendingIntegrations+` LIMIT 1`).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, s.fail(op, err, "")
	}
	defer tx.rollback()
	lock := s.d.forUpdate("i")
	if lock != "" {
		lock += " SKIP LOCKED"
	}
	type cursor struct {
		id, accountID, last int64
		triggers            map[string]bool
		mayRead             bool
	}
	var cursors []cursor
	rows, err := tx.QueryContext(ctx, `SELECT i.id, i.account_id, i.last_event_id, i.triggers, `+appMayRead+` `+
		pendingIntegrations+` ORDER BY i.id`+lock)
	if err != nil {
		return 0, s.fail(op, err, "")
	}
	for rows.Next() {
		var c cursor
		var triggers string
		if err := rows.Scan(&c.id, &c.accountID, &c.last, &triggers, &c.mayRead); err != nil {
			rows.Close()
			return 0, s.fail(op, err, "")
		}
		c.triggers = parseTriggers(triggers)
		cursors = append(cursors, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, s.fail(op, err, "")
	}
	made := 0
	for _, c := range cursors {
		type event struct {
			id  int64
			typ string
		}
		var evs []event
		rows, err := tx.QueryContext(ctx, `SELECT id, type FROM events WHERE account_id = $1 AND id > $2
			ORDER BY id LIMIT $3`, c.accountID, c.last, limit)
		if err != nil {
			return 0, s.fail(op, err, "")
		}
		for rows.Next() {
			var e event
			if err := rows.Scan(&e.id, &e.typ); err != nil {
				rows.Close()
				return 0, s.fail(op, err, "")
			}
			evs = append(evs, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, s.fail(op, err, "")
		}
		if len(evs) == 0 {
			continue
		}
		for _, e := range evs {
			// A webhook whose app lost access moves past what happens
			// meanwhile: access given again later does not replay it.
			if !c.triggers[e.typ] || !c.mayRead {
				continue
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO deliveries (integration_id, account_id, event_id,
				event_type, status, attempts, next_attempt_at, locked_until, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, 0, $6, 0, $6, $6)
				ON CONFLICT (integration_id, event_id) DO NOTHING`,
				c.id, c.accountID, e.id, e.typ, valet.DeliveryPending, micros(tx.now))
			if err != nil {
				return 0, s.fail(op, err, "")
			}
			n, err := res.RowsAffected()
			if err != nil {
				return 0, s.fail(op, err, "")
			}
			made += int(n)
		}
		_, err = tx.ExecContext(ctx, `UPDATE integrations SET last_event_id = $1 WHERE id = $2`,
			evs[len(evs)-1].id, c.id)
		if err != nil {
			return 0, s.fail(op, err, "")
		}
	}
	if err := tx.commit(ctx); err != nil {
		return 0, s.fail(op, err, "")
	}
	return made, nil
}

// dueDeliveries selects the pending deliveries due at $1 and not leased.
// The literal status lets both databases use the partial deliveries_due.
const dueDeliveries = `FROM deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND d.locked_until <= $1`

// ClaimDeliveries implements valet.IntegrationService. A limit of 0 means
// valet.MaxLimit. On PostgreSQL two nodes claiming at once skip each other's
// rows (FOR UPDATE SKIP LOCKED); on SQLite the write transaction (BEGIN
// IMMEDIATE) already serialises them. A delivery whose secret cannot be
// unsealed (the server secret changed) is failed rather than returned.
func (s *Store) ClaimDeliveries(ctx context.Context, limit int, lease time.Duration) ([]valet.DeliveryJob, error) {
	const op = "sqlstore.ClaimDeliveries"
	if s.sealKey == nil {
		return nil, noSealKey(op)
	}
	if limit <= 0 {
		limit = valet.MaxLimit
	}
	if lease <= 0 {
		return nil, invalid(op, "lease", "must be positive")
	}
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 `+dueDeliveries+` LIMIT 1`, micros(s.now())).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer tx.rollback()
	lock := s.d.forUpdate("d")
	if lock != "" {
		lock += " SKIP LOCKED"
	}
	now := micros(tx.now)
	rows, err := tx.QueryContext(ctx, `UPDATE deliveries SET locked_until = $2 WHERE id IN (SELECT d.id `+
		dueDeliveries+` ORDER BY d.next_attempt_at, d.id LIMIT $3`+lock+`) RETURNING id`,
		now, micros(tx.now.Add(lease)), limit)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	var ids []any
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, s.fail(op, err, "")
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err, "")
	}
	if len(ids) == 0 {
		return nil, s.fail(op, tx.commit(ctx), "")
	}
	rows, err = tx.QueryContext(ctx, `SELECT `+deliveryColumns+`, i.url, i.secret_sealed, a.name,
		e.type, e.object_type, e.object_id, e.user_id, e.app_id, e.data, e.created_at, `+appMayRead+`
		FROM deliveries d
		JOIN integrations i ON i.id = d.integration_id
		JOIN accounts a ON a.id = d.account_id
		JOIN events e ON e.id = d.event_id
		WHERE d.id IN (`+params(1, len(ids))+`) ORDER BY d.next_attempt_at, d.id`, ids...)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	var jobs []valet.DeliveryJob
	withheld := map[int64]string{} // delivery id -> why it fails
	for rows.Next() {
		var j valet.DeliveryJob
		var sealed []byte
		var data string
		var userID, appID sql.NullInt64
		var created int64
		var mayRead bool
		d, err := scanDelivery(rows, &j.URL, &sealed, &j.AccountName, &j.Event.Type, &j.Event.ObjectType,
			&j.Event.ObjectID, &userID, &appID, &data, &created, &mayRead)
		if err != nil {
			rows.Close()
			return nil, s.fail(op, err, "")
		}
		if !mayRead {
			withheld[d.ID] = msgAppRevoked
			continue
		}
		j.Delivery = *d
		j.Event.ID, j.Event.AccountID = d.EventID, d.AccountID
		if userID.Valid {
			j.Event.UserID = &userID.Int64
		}
		if appID.Valid {
			j.Event.AppID = &appID.Int64
		}
		j.Event.Data = json.RawMessage(data)
		j.Event.CreatedDatetime = fromMicros(created)
		secret, err := valet.OpenKey(s.sealKey, sealed)
		if err != nil {
			withheld[d.ID] = "The signing secret cannot be unsealed: was VALET_SECRET changed?"
			continue
		}
		j.Secret = string(secret)
		jobs = append(jobs, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err, "")
	}
	for id, why := range withheld {
		_, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = $1, locked_until = 0, updated_at = $2,
			last_error = $3 WHERE id = $4`, valet.DeliveryFailed, now, why, id)
		if err != nil {
			return nil, s.fail(op, err, "")
		}
	}
	if err := tx.commit(ctx); err != nil {
		return nil, s.fail(op, err, "")
	}
	return jobs, nil
}

// maxDeliveryError bounds the error text kept per delivery.
const maxDeliveryError = 500

// CompleteDelivery implements valet.IntegrationService. A delivery that is
// no longer pending (its integration was disabled while the attempt ran) is
// left as it is. Rows are locked integration first, then delivery, as
// disabling does, so that concurrent completions cannot deadlock.
func (s *Store) CompleteDelivery(ctx context.Context, r valet.DeliveryResult) error {
	const op = "sqlstore.CompleteDelivery"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	var integrationID int64
	err = tx.QueryRowContext(ctx, `SELECT integration_id FROM deliveries WHERE id = $1`, r.DeliveryID).Scan(&integrationID)
	if err != nil {
		return s.fail(op, err, "Delivery not found.")
	}
	var istatus string
	var failures int
	err = tx.QueryRowContext(ctx, `SELECT i.status, i.consecutive_failures FROM integrations i WHERE i.id = $1`+
		s.d.forUpdate("i"), integrationID).Scan(&istatus, &failures)
	if err != nil {
		return s.fail(op, err, "Delivery not found.")
	}
	var status string
	var created int64
	err = tx.QueryRowContext(ctx, `SELECT d.status, d.created_at FROM deliveries d WHERE d.id = $1`+
		s.d.forUpdate("d"), r.DeliveryID).Scan(&status, &created)
	if err != nil {
		return s.fail(op, err, "Delivery not found.")
	}
	if status != valet.DeliveryPending {
		return s.fail(op, tx.commit(ctx), "")
	}
	msg := r.Error
	if utf8.RuneCountInString(msg) > maxDeliveryError {
		msg = string([]rune(msg)[:maxDeliveryError])
	}
	now := micros(tx.now)
	if r.OK {
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET status = $1, attempts = attempts + 1,
			last_status_code = $2, last_error = '', last_attempt_at = $3, locked_until = 0, updated_at = $3
			WHERE id = $4`, valet.DeliveryDelivered, r.StatusCode, now, r.DeliveryID)
		if err != nil {
			return s.fail(op, err, "")
		}
		if failures != 0 {
			_, err = tx.ExecContext(ctx, `UPDATE integrations SET consecutive_failures = 0 WHERE id = $1`, integrationID)
			if err != nil {
				return s.fail(op, err, "")
			}
		}
		return s.fail(op, tx.commit(ctx), "")
	}
	next := r.NextAttempt
	giveUp := next.IsZero() || next.After(fromMicros(created).Add(valet.DeliveryRetryWindow))
	newStatus, nextAt := valet.DeliveryPending, micros(next)
	if giveUp {
		newStatus, nextAt = valet.DeliveryFailed, now
	}
	_, err = tx.ExecContext(ctx, `UPDATE deliveries SET status = $1, attempts = attempts + 1,
		last_status_code = $2, last_error = $3, last_attempt_at = $4, next_attempt_at = $5, locked_until = 0,
		updated_at = $4 WHERE id = $6`, newStatus, r.StatusCode, msg, now, nextAt, r.DeliveryID)
	if err != nil {
		return s.fail(op, err, "")
	}
	failures++
	_, err = tx.ExecContext(ctx, `UPDATE integrations SET consecutive_failures = $1 WHERE id = $2`, failures, integrationID)
	if err != nil {
		return s.fail(op, err, "")
	}
	if failures >= valet.MaxConsecutiveFailures && istatus == valet.IntegrationActive {
		why := "The integration was disabled after " + itoa(valet.MaxConsecutiveFailures) + " failed deliveries in a row."
		if err := disableIntegration(ctx, tx, integrationID, why); err != nil {
			return s.fail(op, err, "")
		}
	}
	return s.fail(op, tx.commit(ctx), "")
}
