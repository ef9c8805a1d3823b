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

	// ReserveSignIn counts a sign-in attempt against each key (an email, a
	// client address) in that key's leaky bucket, which holds limit
	// attempts and drains limit of them per period: if every bucket has
	// room it takes one from each and returns 0, otherwise it takes
	// nothing and returns how long until they all would. The buckets are
	// in the store, so every node behind a load balancer counts the same
	// attempts; the store keeps only a hash of each key.
	ReserveSignIn(ctx context.Context, keys []string, limit SignInLimit) (retry time.Duration, err error)
	// ReleaseSignIn gives back the attempt a successful sign-in reserved,
	// so that the buckets count failures.
	ReleaseSignIn(ctx context.Context, keys []string, limit SignInLimit) error
}

// SignInLimit is how many failed sign-ins a key may have in Per: a
// bucket holds Attempts and drains Attempts per Per.
type SignInLimit struct {
	Attempts int
	Per      time.Duration
}

// Enabled reports whether the limit limits anything.
func (l SignInLimit) Enabled() bool { return l.Attempts > 0 && l.Per > 0 }
