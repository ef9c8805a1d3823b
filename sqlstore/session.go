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

// OpenSession implements valet.SessionService: one row per membership (one
// with none when the user has none).
func (s *Store) OpenSession(ctx context.Context, secret string) (*valet.SignedIn, error) {
	const op = "sqlstore.OpenSession"
	rows, err := s.query(ctx, `SELECT ss.id, ss.user_id, ss.account_id, ss.csrf_token, ss.created_at, ss.expires_at,
		`+userColumns+`, a.id, a.name, a.display_name, a.created_at, m.role
		FROM sessions ss JOIN users u ON u.id = ss.user_id
		LEFT JOIN members m ON m.user_id = u.id LEFT JOIN accounts a ON a.id = m.account_id
		WHERE ss.secret_hash = $1 AND ss.expires_at > $2 ORDER BY a.name`, valet.HashSecret(secret), micros(s.now()))
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	var in *valet.SignedIn
	for rows.Next() {
		var sess valet.Session
		var user valet.User
		var account, accountID, accountCreated sql.NullInt64
		var name, displayName, role sql.NullString
		var created, expires, userCreated, userUpdated int64
		if err := rows.Scan(&sess.ID, &sess.UserID, &account, &sess.CSRFToken, &created, &expires,
			&user.ID, &user.Email, &user.Name, &user.PasswordHash, &userCreated, &userUpdated,
			&accountID, &name, &displayName, &accountCreated, &role); err != nil {
			return nil, s.fail(op, err, "")
		}
		if in == nil {
			sess.AccountID = account.Int64
			sess.CreatedDatetime, sess.ExpiresDatetime = fromMicros(created), fromMicros(expires)
			user.CreatedDatetime, user.UpdatedDatetime = fromMicros(userCreated), fromMicros(userUpdated)
			in = &valet.SignedIn{Session: sess, User: user, Memberships: []valet.Membership{}}
		}
		if accountID.Valid {
			in.Memberships = append(in.Memberships, valet.Membership{Role: valet.Role(role.String),
				Account: valet.Account{ID: accountID.Int64, Name: name.String, DisplayName: displayName.String,
					CreatedDatetime: fromMicros(accountCreated.Int64)}})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err, "")
	}
	if in == nil {
		return nil, errorf(op, valet.EUNAUTHORIZED, msgSessionInvalid, nil)
	}
	return in, nil
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
