package valet

import (
	"context"
	"time"
)

// The integration hub's domain (valet hub, issue 4): the people who sign in
// to it, its connections to helpdesk accounts with their sealed tokens, the
// lease that makes refreshing race-free across processes, and the activity
// it received. The hub keeps these in a database of its own.

// Connection statuses.
const (
	ConnectionActive   = "active"
	ConnectionDegraded = "degraded" // refreshes or calls fail with 5xx or network errors: retrying with backoff
	ConnectionRevoked  = "revoked"  // invalid_grant, or 401 right after a refresh: needs Reconnect
)

// HubUser is a person signed in to the hub with "Sign in with valet".
type HubUser struct {
	ID              int64     `json:"id"`
	Issuer          string    `json:"issuer"`  // the OpenID provider that signed them in
	Subject         string    `json:"subject"` // its sub claim
	Email           string    `json:"email"`
	Name            string    `json:"name"`
	CreatedDatetime time.Time `json:"created_datetime"`
}

// Connection is the hub's link to one helpdesk account. It never carries
// tokens in the clear: those are ConnectionSecrets, sealed by the hub's vault.
type Connection struct {
	ID       int64    `json:"id"`
	Provider string   `json:"provider"` // a provider template: "valet", "gorgias"
	BaseURL  string   `json:"base_url"` // the helpdesk (issuer for valet, https://{account}.gorgias.com)
	Account  string   `json:"account"`  // the helpdesk account name
	Scopes   []string `json:"scopes"`   // as granted
	Status   string   `json:"status"`
	// ConnectedBy is the hub user who connected it; only they see it.
	ConnectedBy      int64      `json:"connected_by"`
	ConnectedByName  string     `json:"connected_by_name"` // filled by reads
	AccessExpires    time.Time  `json:"access_expires_datetime"`
	NextRefresh      time.Time  `json:"next_refresh_datetime"`
	LastRefresh      *time.Time `json:"last_refresh_datetime"`
	LastError        string     `json:"last_error"`
	Failures         int        `json:"failures"`       // consecutive, for backoff
	IntegrationID    int64      `json:"integration_id"` // the webhook registered on the helpdesk, 0 if none
	EventCursor      int64      `json:"event_cursor"`   // the newest helpdesk event seen (webhook or poll)
	Generation       int64      `json:"generation"`     // increases with every write of the tokens (save, refresh)
	CreatedDatetime  time.Time  `json:"created_datetime"`
	UpdatedDatetime  time.Time  `json:"updated_datetime"`
	RevokedDatetime  *time.Time `json:"revoked_datetime"`
	LastUsedDatetime *time.Time `json:"last_used_datetime"`
}

// ConnectionSecrets are a connection's secrets, each sealed (AES-256-GCM) by
// the hub's vault under the key KeyID before they reach the store.
type ConnectionSecrets struct {
	KeyID         string
	AccessToken   []byte
	RefreshToken  []byte // nil when the provider issued none
	WebhookSecret []byte // nil without a webhook
}

// RefreshLease is the right to refresh one connection, held by one owner
// (a hub process) until Expires. Fence increases with every lease granted:
// CompleteRefresh refuses a lease whose fence is no longer current, so a
// process that stalled past its lease cannot overwrite newer tokens.
type RefreshLease struct {
	ConnectionID int64
	Owner        string
	Fence        int64
	Expires      time.Time
	Connection   Connection        // as it was when the lease was granted
	Secrets      ConnectionSecrets // the tokens to refresh with
}

// Activity is one helpdesk event the hub received, by webhook or by polling.
type Activity struct {
	ID           int64     `json:"id"`
	ConnectionID int64     `json:"connection_id"`
	Account      string    `json:"account"` // filled by reads
	EventID      int64     `json:"event_id"`
	EventType    string    `json:"event_type"`
	Summary      string    `json:"summary"`
	Via          string    `json:"via"` // "webhook" or "poll"
	Received     time.Time `json:"received_datetime"`
}

// HubStore is the hub's database. Both sqlstore backends implement it
// (sqlstore.OpenHub) and pass storetest.RunHub.
type HubStore interface {
	// UpsertHubUser stores u by (Issuer, Subject), updating email and name
	// of a known one, and sets u.ID. Errors: EINVALID.
	UpsertHubUser(ctx context.Context, u *HubUser) error
	// CreateHubSession returns a new session secret (vss_…, stored hashed)
	// for the user. Errors: ENOTFOUND.
	CreateHubSession(ctx context.Context, userID int64, ttl time.Duration) (secret string, err error)
	// HubSessionUser returns the user of a live session. Errors:
	// EUNAUTHORIZED (unknown or expired).
	HubSessionUser(ctx context.Context, secret string) (*HubUser, error)
	// DeleteHubSession signs out; unknown secrets are not an error.
	DeleteHubSession(ctx context.Context, secret string) error

	// SaveConnection stores a new connection, or, when one of (Provider,
	// BaseURL, Account) exists, replaces its scopes, connector and secrets
	// and makes it active again (a Reconnect). c.ID and c.Generation are
	// set. A nil s.WebhookSecret keeps the stored webhook if s.KeyID is
	// unchanged. Errors: EINVALID, ECONFLICT (the account's connection is
	// another user's and not revoked).
	SaveConnection(ctx context.Context, c *Connection, s ConnectionSecrets) error
	// FindConnection returns a connection and its sealed secrets.
	// Errors: ENOTFOUND.
	FindConnection(ctx context.Context, id int64) (*Connection, *ConnectionSecrets, error)
	// ListConnections returns the user's connections (0: everyone's),
	// newest first.
	ListConnections(ctx context.Context, connectedBy int64) ([]Connection, error)
	// DueConnections returns up to limit active or degraded connections
	// whose NextRefresh is at or before t and whose refresh lease is not
	// held, soonest first.
	DueConnections(ctx context.Context, t time.Time, limit int) ([]Connection, error)
	// DeleteConnection deletes a connection with its secrets and activity.
	// Errors: ENOTFOUND.
	DeleteConnection(ctx context.Context, id int64) error

	// AcquireRefreshLease grants owner the connection's refresh lease for
	// ttl if no other owner holds an unexpired one, in a transaction that
	// locks the row (BEGIN IMMEDIATE on SQLite, SELECT … FOR UPDATE on
	// PostgreSQL). Errors: ENOTFOUND, ECONFLICT (held by another owner).
	AcquireRefreshLease(ctx context.Context, connectionID int64, owner string, ttl time.Duration) (*RefreshLease, error)
	// CompleteRefresh stores the refreshed secrets under the lease and
	// releases it: status active, failures and last error cleared, last
	// refresh now, generation increased. A nil s.WebhookSecret keeps the
	// stored one if s.KeyID is unchanged. Errors: ECONFLICT (the lease's
	// fence is no longer current), ENOTFOUND.
	CompleteRefresh(ctx context.Context, l *RefreshLease, s ConnectionSecrets, accessExpires, nextRefresh time.Time) (*Connection, error)
	// ReleaseRefreshLease gives a lease back unused (another process had
	// refreshed already). A lease whose fence is no longer current is
	// left alone and is not an error.
	ReleaseRefreshLease(ctx context.Context, l *RefreshLease) error
	// FailRefresh records a failed refresh under the lease and releases
	// it: the status (degraded or revoked), the error, failures+1 and when
	// to try next. Errors: ECONFLICT (stale fence), ENOTFOUND.
	FailRefresh(ctx context.Context, l *RefreshLease, status, lastError string, nextRefresh time.Time) error
	// MarkConnection sets the status and last error of a connection if its
	// generation is still generation (so a verdict about old tokens does
	// not overwrite a newer refresh). It reports whether it changed.
	// Errors: ENOTFOUND.
	MarkConnection(ctx context.Context, id, generation int64, status, lastError string) (bool, error)
	// TouchConnections records last-used times collected in memory.
	TouchConnections(ctx context.Context, lastUsed map[int64]time.Time) error
	// SetConnectionWebhook records the webhook registered on the helpdesk
	// and its signing secret, sealed under the key the stored tokens are
	// sealed with (their ConnectionSecrets.KeyID). Errors: ENOTFOUND.
	SetConnectionWebhook(ctx context.Context, id, integrationID int64, sealedSecret []byte) error
	// ResealConnections rewrites every connection's secrets with reseal, in
	// one transaction (vault key rotation), and returns how many it
	// rewrote. An error from reseal aborts it all.
	ResealConnections(ctx context.Context, reseal func(ConnectionSecrets) (ConnectionSecrets, error)) (int, error)

	// RecordActivity stores a received event unless (ConnectionID,
	// EventID) is known, and moves the connection's event cursor forward
	// to it. duplicate reports a known event (nothing stored).
	RecordActivity(ctx context.Context, a *Activity) (duplicate bool, err error)
	// ListActivity returns the newest activity of the user's connections
	// (0: everyone's), limit 1-200.
	ListActivity(ctx context.Context, connectedBy int64, limit int) ([]Activity, error)
	// PurgeActivity deletes up to limit (1-10,000) activity rows received
	// before the given time, oldest first, and returns how many it deleted.
	PurgeActivity(ctx context.Context, before time.Time, limit int) (int, error)

	Ping(ctx context.Context) error
	Close() error
}
