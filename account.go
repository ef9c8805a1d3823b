package valet

import (
	"context"
	"net/mail"
	"regexp"
	"strings"
	"time"
)

// Account is one helpdesk workspace (like acme in acme.gorgias.com). Every
// row of helpdesk data belongs to exactly one account.
type Account struct {
	ID              int64     `json:"id"`
	Name            string    `json:"name"` // lowercase slug, unique
	DisplayName     string    `json:"display_name"`
	CreatedDatetime time.Time `json:"created_datetime"`
}

var accountName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,39}$`)

// Validate reports EINVALID for a malformed account.
func (a *Account) Validate() error {
	p := Problems{}
	if !accountName.MatchString(a.Name) {
		p.Add("name", "must be 2-40 lowercase letters, digits or dashes, starting with a letter or digit")
	}
	if strings.TrimSpace(a.DisplayName) == "" {
		a.DisplayName = a.Name
	}
	return p.Err()
}

// Role is a user's role in one account.
type Role string

const (
	RoleOwner Role = "owner"
	RoleAdmin Role = "admin"
	RoleAgent Role = "agent"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleOwner || r == RoleAdmin || r == RoleAgent }

// CanManage reports whether r may change the account's settings (members,
// API keys, connected apps).
func (r Role) CanManage() bool { return r == RoleOwner || r == RoleAdmin }

// User is a person who signs in. A user may belong to several accounts.
type User struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
	// Role is the user's role in the account the user was loaded for; empty
	// when loaded outside an account.
	Role            Role      `json:"role,omitempty"`
	PasswordHash    string    `json:"-"`
	CreatedDatetime time.Time `json:"created_datetime"`
	UpdatedDatetime time.Time `json:"updated_datetime"`
}

// Validate normalises the email and reports EINVALID for a malformed user.
func (u *User) Validate() error {
	p := Problems{}
	u.Email = NormalizeEmail(u.Email)
	if !validEmail(u.Email) {
		p.Add("email", "must be a valid email address")
	}
	u.Name = strings.TrimSpace(u.Name)
	if u.Name == "" {
		p.Add("name", "is required")
	}
	if len(u.Name) > 200 {
		p.Add("name", "must be at most 200 characters")
	}
	return p.Err()
}

// Membership is one account a user belongs to, with the user's role there.
type Membership struct {
	Account Account `json:"account"`
	Role    Role    `json:"role"`
}

// NormalizeEmail trims and lowercases an address so lookups are exact.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func validEmail(s string) bool {
	if s == "" || len(s) > 254 {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s
}

// AccountService manages accounts.
type AccountService interface {
	// CreateAccount stores a and sets its ID and CreatedDatetime.
	// Errors: EINVALID, ECONFLICT (name taken).
	CreateAccount(ctx context.Context, a *Account) error
	// FindAccountByID errors: ENOTFOUND.
	FindAccountByID(ctx context.Context, id int64) (*Account, error)
	// FindAccountByName errors: ENOTFOUND.
	FindAccountByName(ctx context.Context, name string) (*Account, error)
}

// UserService manages users and their account memberships.
type UserService interface {
	// CreateUser stores u (email normalised) and sets ID and datetimes.
	// Errors: EINVALID, ECONFLICT (email taken).
	CreateUser(ctx context.Context, u *User) error
	// FindUserByID errors: ENOTFOUND.
	FindUserByID(ctx context.Context, id int64) (*User, error)
	// FindUserByEmail matches the normalised email. Errors: ENOTFOUND.
	FindUserByEmail(ctx context.Context, email string) (*User, error)
	// AddMember makes the user a member of the account.
	// Errors: EINVALID (unknown role), ENOTFOUND (account or user), ECONFLICT (already a member).
	AddMember(ctx context.Context, accountID, userID int64, role Role) error
	// RemoveMember ends the user's membership of the account; the user's API
	// keys there are deleted and the OAuth grants they made there revoked.
	// Errors: ENOTFOUND (not a member).
	RemoveMember(ctx context.Context, accountID, userID int64) error
	// FindMember returns the user with Role set. Errors: ENOTFOUND (not a member).
	FindMember(ctx context.Context, accountID, userID int64) (*User, error)
	// ListMembers pages the account's users, ordered by id ascending.
	// Errors: EINVALID (bad cursor or limit).
	ListMembers(ctx context.Context, accountID int64, opt ListOptions) (*Page[User], error)
	// ListMemberships returns the accounts the user belongs to, by account name.
	ListMemberships(ctx context.Context, userID int64) ([]Membership, error)
}
