package valet

import (
	"context"
	"time"
)

// Session is a signed-in browser. The cookie holds the secret; the store only
// its hash.
type Session struct {
	ID              int64
	UserID          int64
	AccountID       int64  // the account the inbox shows; 0 until chosen
	CSRFToken       string // random, compared in constant time on every form
	CreatedDatetime time.Time
	ExpiresDatetime time.Time
}

// SignedIn is a live session with its user and the accounts the user
// belongs to.
type SignedIn struct {
	Session     Session
	User        User
	Memberships []Membership
}

// SessionService keeps browser sessions.
type SessionService interface {
	// CreateSession stores s (UserID, AccountID, ExpiresDatetime set by the
	// caller), fills CSRFToken and returns the cookie secret.
	CreateSession(ctx context.Context, s *Session) (secret string, err error)
	// FindSession errors: EUNAUTHORIZED (unknown or expired).
	FindSession(ctx context.Context, secret string) (*Session, error)
	// OpenSession is FindSession with the session's user and the user's
	// memberships (by account name), in one read: what every page needs.
	// Errors: EUNAUTHORIZED (unknown or expired).
	OpenSession(ctx context.Context, secret string) (*SignedIn, error)
	// SetSessionAccount switches the account the session works in.
	// Errors: EUNAUTHORIZED.
	SetSessionAccount(ctx context.Context, secret string, accountID int64) error
	// DeleteSession signs the browser out; deleting an unknown session is not
	// an error.
	DeleteSession(ctx context.Context, secret string) error
}
