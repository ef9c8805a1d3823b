package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/valethq/valet"
)

const msgSessionInvalid = "Your session has expired; please sign in again."

// CreateSession implements valet.SessionService. An unknown user or account
// is ENOTFOUND.
func (s *Store) CreateSession(ctx context.Context, sess *valet.Session) (string, error) {
	const op = "sqlstore.CreateSession"
	tx, err := s.begin(ctx)
	if err != nil {
		return "", s.fail(op, err, "")
	}
	defer tx.rollback()
	secret := valet.NewSecret(valet.PrefixSession)
	sess.CSRFToken = valet.NewSecret("")
	sess.CreatedDatetime = tx.now
	sess.ExpiresDatetime = sess.ExpiresDatetime.UTC().Truncate(time.Microsecond)
	err = tx.QueryRowContext(ctx, `INSERT INTO sessions (secret_hash, user_id, account_id, csrf_token, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		valet.HashSecret(secret), sess.UserID, zeroNull(sess.AccountID), sess.CSRFToken, micros(tx.now),
		micros(sess.ExpiresDatetime)).Scan(&sess.ID)
	if s.d.isForeignKey(err) {
		return "", errorf(op, valet.ENOTFOUND, "User or account not found.", err)
	}
	if err != nil {
		return "", s.fail(op, err, "")
	}
	if err := tx.commit(ctx); err != nil {
		return "", s.fail(op, err, "")
	}
	return secret, nil
}

// FindSession implements valet.SessionService.
func (s *Store) FindSession(ctx context.Context, secret string) (*valet.Session, error) {
	const op = "sqlstore.FindSession"
	var sess valet.Session
	var account *int64
	var created, expires int64
	err := s.queryRow(ctx, `SELECT id, user_id, account_id, csrf_token, created_at, expires_at
		FROM sessions WHERE secret_hash = $1 AND expires_at > $2`, valet.HashSecret(secret), micros(s.now())).
		Scan(&sess.ID, &sess.UserID, &account, &sess.CSRFToken, &created, &expires)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(op, valet.EUNAUTHORIZED, msgSessionInvalid, err)
		}
		return nil, s.fail(op, err, "")
	}
	if account != nil {
		sess.AccountID = *account
	}
	sess.CreatedDatetime, sess.ExpiresDatetime = fromMicros(created), fromMicros(expires)
	return &sess, nil
}

// SetSessionAccount implements valet.SessionService. An unknown account is
// ENOTFOUND; whether the user may work there is the caller's check.
func (s *Store) SetSessionAccount(ctx context.Context, secret string, accountID int64) error {
	const op = "sqlstore.SetSessionAccount"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `UPDATE sessions SET account_id = $1 WHERE secret_hash = $2 AND expires_at > $3`,
		zeroNull(accountID), valet.HashSecret(secret), micros(tx.now))
	if s.d.isForeignKey(err) {
		return errorf(op, valet.ENOTFOUND, "Account not found.", err)
	}
	if err != nil {
		return s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errorf(op, valet.EUNAUTHORIZED, msgSessionInvalid, err)
	}
	return s.fail(op, tx.commit(ctx), "")
}

// DeleteSession implements valet.SessionService.
func (s *Store) DeleteSession(ctx context.Context, secret string) error {
	const op = "sqlstore.DeleteSession"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE secret_hash = $1`, valet.HashSecret(secret)); err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}
