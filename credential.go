package valet

import (
	"context"
	"time"
)

// CredentialKind tells API keys from OAuth access tokens; rate limits differ.
type CredentialKind string

const (
	CredentialAPIKey CredentialKind = "api_key"
	CredentialOAuth  CredentialKind = "oauth"
)

// Credential is what an Authorization header resolves to. The account is
// implied by it: every API call is scoped to Credential.AccountID.
type Credential struct {
	Kind      CredentialKind
	ID        int64 // API key or grant id
	AccountID int64
	UserID    int64
	UserEmail string // for Basic email:api_key, which must name the key's user
	Role      Role   // the user's role in the account, now
	AppID     int64  // 0 for API keys
	GrantID   int64  // 0 for API keys
	Scopes    ScopeSet
	ExpiresAt time.Time // zero: does not expire
}

// APIKey is a private integration's credential, owned by a user of an account.
type APIKey struct {
	ID               int64      `json:"id"`
	AccountID        int64      `json:"-"`
	UserID           int64      `json:"user_id"`
	Name             string     `json:"name"`
	Scopes           ScopeSet   `json:"scopes"`
	Hint             string     `json:"hint"` // last characters of the secret
	CreatedDatetime  time.Time  `json:"created_datetime"`
	LastUsedDatetime *time.Time `json:"last_used_datetime"`
}

// Validate fills defaults and reports EINVALID for a malformed key.
func (k *APIKey) Validate() error {
	p := Problems{}
	if k.Name == "" {
		k.Name = "API key"
	}
	if len(k.Name) > 100 {
		p.Add("name", "must be at most 100 characters")
	}
	if len(k.Scopes) == 0 {
		k.Scopes = APIScopes()
	}
	api := APIScopes()
	for _, s := range k.Scopes {
		if !api.Has(s) {
			p.Add("scopes", "an API key cannot hold "+string(s))
		}
	}
	return p.Err()
}

// App is an OAuth client registered in the partner portal. The authorization
// server issue grows it; the core needs it only to bind tokens to apps.
type App struct {
	ID              int64     `json:"id"`
	ClientID        string    `json:"client_id"`
	Name            string    `json:"name"`
	Scopes          ScopeSet  `json:"scopes"`
	CreatedDatetime time.Time `json:"created_datetime"`

	// The partner portal's fields (see oauth.go and App.Validate).
	Description   string   `json:"description"`
	DeveloperName string   `json:"developer_name"`
	HomepageURL   string   `json:"homepage_url"`
	LogoURL       string   `json:"logo_url"`
	RedirectURIs  []string `json:"redirect_uris"`
	// Public apps (native, single-page) have no secret and must use PKCE.
	Public     bool   `json:"public"`
	SecretHash []byte `json:"-"`
	SecretHint string `json:"secret_hint,omitempty"`
	// RefreshLeeway is the reuse leeway in seconds (0-60).
	RefreshLeeway int `json:"refresh_reuse_leeway"`
	// IDTokenAlg is id_token_signed_response_alg: RS256, ES256 or EdDSA.
	IDTokenAlg      string    `json:"id_token_signed_response_alg"`
	OwnerUserID     int64     `json:"owner_user_id,omitempty"`
	UpdatedDatetime time.Time `json:"updated_datetime"`
}

// Grant is one app installed on one account, approved by one user. Access and
// refresh tokens hang off it; revoking it kills them all.
type Grant struct {
	ID              int64      `json:"id"`
	AccountID       int64      `json:"-"`
	UserID          int64      `json:"user_id"`
	AppID           int64      `json:"app_id"`
	Scopes          ScopeSet   `json:"scopes"`
	CreatedDatetime time.Time  `json:"created_datetime"`
	RevokedDatetime *time.Time `json:"revoked_datetime"`
	UpdatedDatetime time.Time  `json:"updated_datetime"`
	// LastUsedDatetime is when one of its tokens last called the API, as
	// of the last flush of the servers' in-memory batches.
	LastUsedDatetime *time.Time `json:"last_used_datetime"`
}

// CredentialService manages API keys and resolves presented secrets.
type CredentialService interface {
	// CreateAPIKey stores k (AccountID and UserID set; the user must be a
	// member) and returns its secret, which is stored only as a hash and
	// never returned again. Errors: EINVALID, ENOTFOUND (user not a member).
	CreateAPIKey(ctx context.Context, k *APIKey) (secret string, err error)
	// ListAPIKeys returns the account's keys, newest first.
	ListAPIKeys(ctx context.Context, accountID int64) ([]APIKey, error)
	// DeleteAPIKey errors: ENOTFOUND.
	DeleteAPIKey(ctx context.Context, accountID, id int64) error
	// TouchAPIKeys records last-used times collected in memory, so that
	// authenticating writes nothing on the hot path.
	TouchAPIKeys(ctx context.Context, lastUsed map[int64]time.Time) error
	// TouchGrants does the same for installed apps' grants (by grant id).
	TouchGrants(ctx context.Context, lastUsed map[int64]time.Time) error

	// CreateApp stores a minimal app. Errors: EINVALID, ECONFLICT (client_id).
	CreateApp(ctx context.Context, a *App) error
	// CreateGrant stores g. Errors: ENOTFOUND (app, or user not a member).
	CreateGrant(ctx context.Context, g *Grant) error
	// CreateAccessToken issues a vat_ token for the grant with the given
	// scopes (a subset of the grant's) and lifetime; only its hash is stored.
	// Errors: ENOTFOUND (grant), EINVALID (scopes outside the grant).
	CreateAccessToken(ctx context.Context, grantID int64, scopes ScopeSet, ttl time.Duration) (secret string, err error)
	// RevokeGrant marks the grant revoked; its tokens stop working at once.
	// Errors: ENOTFOUND.
	RevokeGrant(ctx context.Context, accountID, grantID int64) error

	// Authenticate resolves a vak_ API key or a vat_ access token. It only
	// reads. Errors: EUNAUTHORIZED (unknown, expired, revoked, or the user
	// is no longer a member of the account).
	Authenticate(ctx context.Context, secret string) (*Credential, error)
}
