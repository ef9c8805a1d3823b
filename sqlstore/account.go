package sqlstore

import (
	"context"
	"strings"

	"github.com/valethq/valet"
)

// CreateAccount implements valet.AccountService.
func (s *Store) CreateAccount(ctx context.Context, a *valet.Account) error {
	const op = "sqlstore.CreateAccount"
	if err := a.Validate(); err != nil {
		return s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	err = tx.QueryRowContext(ctx,
		`INSERT INTO accounts (name, display_name, created_at) VALUES ($1, $2, $3) RETURNING id`,
		a.Name, a.DisplayName, micros(tx.now)).Scan(&a.ID)
	if s.d.isUnique(err) {
		return errorf(op, valet.ECONFLICT, "An account with this name already exists.", err)
	}
	if err != nil {
		return s.fail(op, err, "")
	}
	a.CreatedDatetime = tx.now
	return s.fail(op, tx.commit(ctx), "")
}

const accountColumns = `id, name, display_name, created_at`

func scanAccount(row scanner, a *valet.Account) error {
	var created int64
	if err := row.Scan(&a.ID, &a.Name, &a.DisplayName, &created); err != nil {
		return err
	}
	a.CreatedDatetime = fromMicros(created)
	return nil
}

// FindAccountByID implements valet.AccountService.
func (s *Store) FindAccountByID(ctx context.Context, id int64) (*valet.Account, error) {
	var a valet.Account
	err := scanAccount(s.r.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id), &a)
	if err != nil {
		return nil, s.fail("sqlstore.FindAccountByID", err, "Account not found.")
	}
	return &a, nil
}

// FindAccountByName implements valet.AccountService.
func (s *Store) FindAccountByName(ctx context.Context, name string) (*valet.Account, error) {
	var a valet.Account
	err := scanAccount(s.r.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE name = $1`,
		strings.ToLower(strings.TrimSpace(name))), &a)
	if err != nil {
		return nil, s.fail("sqlstore.FindAccountByName", err, "Account not found.")
	}
	return &a, nil
}

// CreateUser implements valet.UserService.
func (s *Store) CreateUser(ctx context.Context, u *valet.User) error {
	const op = "sqlstore.CreateUser"
	if err := u.Validate(); err != nil {
		return s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	err = tx.QueryRowContext(ctx, `INSERT INTO users (email, name, password_hash, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $4) RETURNING id`,
		u.Email, u.Name, u.PasswordHash, micros(tx.now)).Scan(&u.ID)
	if s.d.isUnique(err) {
		return errorf(op, valet.ECONFLICT, "A user with this email already exists.", err)
	}
	if err != nil {
		return s.fail(op, err, "")
	}
	u.CreatedDatetime, u.UpdatedDatetime = tx.now, tx.now
	return s.fail(op, tx.commit(ctx), "")
}

const userColumns = `u.id, u.email, u.name, u.password_hash, u.created_at, u.updated_at`

func scanUser(row scanner, u *valet.User, extra ...any) error {
	var created, updated int64
	dest := append([]any{&u.ID, &u.Email, &u.Name, &u.PasswordHash, &created, &updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return err
	}
	u.CreatedDatetime, u.UpdatedDatetime = fromMicros(created), fromMicros(updated)
	return nil
}

// FindUserByID implements valet.UserService.
func (s *Store) FindUserByID(ctx context.Context, id int64) (*valet.User, error) {
	var u valet.User
	err := scanUser(s.queryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = $1`, id), &u)
	if err != nil {
		return nil, s.fail("sqlstore.FindUserByID", err, "User not found.")
	}
	return &u, nil
}

// FindUserByEmail implements valet.UserService.
func (s *Store) FindUserByEmail(ctx context.Context, email string) (*valet.User, error) {
	var u valet.User
	err := scanUser(s.r.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users u WHERE u.email = $1`,
		valet.NormalizeEmail(email)), &u)
	if err != nil {
		return nil, s.fail("sqlstore.FindUserByEmail", err, "User not found.")
	}
	return &u, nil
}

// AddMember implements valet.UserService.
func (s *Store) AddMember(ctx context.Context, accountID, userID int64, role valet.Role) error {
	const op = "sqlstore.AddMember"
	if !role.Valid() {
		return invalid(op, "role", "must be owner, admin or agent")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE id = $1`, accountID).Scan(&n); err != nil {
		return s.fail(op, err, "Account not found.")
	}
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = $1`, userID).Scan(&n); err != nil {
		return s.fail(op, err, "User not found.")
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO members (account_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)`,
		accountID, userID, string(role), micros(tx.now))
	if s.d.isUnique(err) {
		return errorf(op, valet.ECONFLICT, "This user is already a member of the account.", err)
	}
	if err != nil {
		return s.fail(op, err, "")
	}
	return s.fail(op, tx.commit(ctx), "")
}

// RemoveMember implements valet.UserService. The member's API keys go with
// the membership (a foreign key cascades) and the apps they installed on
// the account are revoked: a grant outliving the membership would start
// working again, refresh tokens and all, if the user were added back.
func (s *Store) RemoveMember(ctx context.Context, accountID, userID int64) error {
	const op = "sqlstore.RemoveMember"
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM members WHERE account_id = $1 AND user_id = $2`, accountID, userID)
	if err != nil {
		return s.fail(op, err, "")
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errorf(op, valet.ENOTFOUND, "This user is not a member of the account.", err)
	}
	rows, err := tx.QueryContext(ctx, `UPDATE grants SET revoked_at = $1
		WHERE account_id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING id, app_id`, micros(tx.now), accountID, userID)
	if err != nil {
		return s.fail(op, err, "")
	}
	type revoked struct{ grant, app int64 }
	var grants []revoked
	for rows.Next() {
		var g revoked
		if err := rows.Scan(&g.grant, &g.app); err != nil {
			rows.Close()
			return s.fail(op, err, "")
		}
		grants = append(grants, g)
	}
	if err := closeRows(rows); err != nil {
		return s.fail(op, err, "")
	}
	// Every revocation is in the audit log (DESIGN.md §3), this one too.
	for _, g := range grants {
		if err := tx.audit(ctx, accountID, g.app, valet.AuditGrantRevoked,
			map[string]any{"grant_id": g.grant, "by": "member removed", "user_id": userID}); err != nil {
			return s.fail(op, err, "")
		}
	}
	return s.fail(op, tx.commit(ctx), "")
}

// findMember loads a member of the account, with Role set.
func findMember(ctx context.Context, q querier, accountID, userID int64) (*valet.User, error) {
	var u valet.User
	var role string
	err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+`, m.role
		FROM members m JOIN users u ON u.id = m.user_id
		WHERE m.account_id = $1 AND m.user_id = $2`, accountID, userID), &u, &role)
	if err != nil {
		return nil, err
	}
	u.Role = valet.Role(role)
	return &u, nil
}

// FindMember implements valet.UserService.
func (s *Store) FindMember(ctx context.Context, accountID, userID int64) (*valet.User, error) {
	u, err := findMember(ctx, s.r, accountID, userID)
	if err != nil {
		return nil, s.fail("sqlstore.FindMember", err, "User not found.")
	}
	return u, nil
}

// ListMembers implements valet.UserService.
func (s *Store) ListMembers(ctx context.Context, accountID int64, opt valet.ListOptions) (*valet.Page[valet.User], error) {
	const op = "sqlstore.ListMembers"
	q, err := opt.Resolve(valet.Order{Field: "id"}, "id")
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	cond, order, args := keyset(q, "u.id", "u.id", []any{accountID})
	args = append(args, q.Limit+1)
	rows, err := s.r.QueryContext(ctx, `SELECT `+userColumns+`, m.role
		FROM members m JOIN users u ON u.id = m.user_id
		WHERE m.account_id = $1`+cond+order+` LIMIT $`+itoa(len(args)), args...)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	var users []valet.User
	for rows.Next() {
		var u valet.User
		var role string
		if err := scanUser(rows, &u, &role); err != nil {
			return nil, s.fail(op, err, "")
		}
		u.Role = valet.Role(role)
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err, "")
	}
	return valet.NewPage(users, q, func(u *valet.User) (int64, int64) { return u.ID, u.ID }), nil
}

// ListMemberships implements valet.UserService.
func (s *Store) ListMemberships(ctx context.Context, userID int64) ([]valet.Membership, error) {
	const op = "sqlstore.ListMemberships"
	rows, err := s.query(ctx, `SELECT a.id, a.name, a.display_name, a.created_at, m.role
		FROM members m JOIN accounts a ON a.id = m.account_id
		WHERE m.user_id = $1 ORDER BY a.name`, userID)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	out := []valet.Membership{}
	for rows.Next() {
		var m valet.Membership
		var created int64
		var role string
		if err := rows.Scan(&m.Account.ID, &m.Account.Name, &m.Account.DisplayName, &created, &role); err != nil {
			return nil, s.fail(op, err, "")
		}
		m.Account.CreatedDatetime = fromMicros(created)
		m.Role = valet.Role(role)
		out = append(out, m)
	}
	return out, s.fail(op, rows.Err(), "")
}
