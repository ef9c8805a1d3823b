// Package valet holds the helpdesk's domain: types, the services the stores
// implement, error codes and the scope catalog. It imports only the standard
// library; every outside dependency lives in a subpackage and cmd/valet wires
// them together.
package valet

import (
	"context"
	"time"
)

// Store is everything a valet node needs from its database. Both sqlstore
// backends (SQLite and PostgreSQL) implement it and pass storetest.Run.
type Store interface {
	AccountService
	UserService
	CustomerService
	TicketService
	EventService
	CredentialService
	SessionService
	IntegrationService

	// Ping reports whether the database answers (used by /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// Clock is injectable so tests can move time (token expiry, rate limits).
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock, truncated to microseconds because that is
// what both stores keep.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

type actorKey struct{}

// Actor is who causes a change; stores record it on the events they append.
type Actor struct {
	UserID int64 // 0 when no person acted (a system job)
	AppID  int64 // the OAuth app acting for the user, 0 for first-party
}

// WithActor returns ctx carrying the actor of the changes made with it.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFromContext returns the actor set by WithActor, or the zero Actor.
func ActorFromContext(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	return a
}
