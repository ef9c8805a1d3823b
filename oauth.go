package valet

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Lifetimes of the OAuth artefacts (DESIGN.md §3, issue 3).
const (
	AuthCodeTTL        = 60 * time.Second
	RefreshIdleTTL     = 30 * 24 * time.Hour
	RefreshAbsoluteTTL = 365 * 24 * time.Hour
	DefaultAccessTTL   = 24 * time.Hour
	MaxRefreshLeeway   = 60 // seconds
	// CodeTombstoneTTL is how long a code's row outlives its expiry.
	CodeTombstoneTTL = 24 * time.Hour
)

// Signing algorithms an app may choose for its ID tokens.
const (
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
)

// PrefixClientSecret marks app client secrets.
const PrefixClientSecret = "vcs_"

// ValidateRedirectURI reports whether u may be registered as a redirect URI:
// absolute, https (or http on a loopback host, for development), no
// fragment, no wildcard, no user info. Matching at authorize is exact.
func ValidateRedirectURI(u string) error {
	if u == "" {
		return errors.New("must not be empty")
	}
	if len(u) > 2000 {
		return errors.New("must be at most 2000 characters")
	}
	if strings.ContainsAny(u, "*\x00 \t\r\n") {
		return errors.New("must not contain wildcards or spaces")
	}
	if strings.Contains(u, "#") {
		return errors.New("must not contain a fragment")
	}
	p, err := url.Parse(u)
	if err != nil || !p.IsAbs() || p.Host == "" || p.Opaque != "" {
		return errors.New("must be an absolute URL")
	}
	if p.User != nil {
		return errors.New("must not contain user information")
	}
	// url.Parse lowercases the scheme, but matching at authorize is on the
	// string as registered.
	if !strings.HasPrefix(u, p.Scheme+"://") {
		return errors.New("must start with https:// (or http:// on a loopback address) in lowercase")
	}
	switch p.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(p.Hostname()) {
			return nil
		}
		return errors.New("must use https (http only on a loopback address)")
	}
	return errors.New("must use https")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateWebURL(p Problems, field, u string, schemes ...string) {
	if u == "" {
		return
	}
	if len(u) > 2000 {
		p.Add(field, "must be at most 2000 characters")
		return
	}
	parsed, err := url.Parse(u)
	if err != nil || !slices.Contains(schemes, parsed.Scheme) || parsed.Host == "" {
		p.Add(field, "must be an "+strings.Join(schemes, " or ")+" URL")
	}
}

// Validate fills an app's defaults and reports EINVALID for a malformed
// registration: the partner portal's and the CLI's rules.
func (a *App) Validate() error {
	p := Problems{}
	a.Name = strings.TrimSpace(a.Name)
	// Lengths are in characters, as the form's maxlength counts them.
	if n := utf8.RuneCountInString(a.Name); n == 0 || n > 100 {
		p.Add("name", "must be 1-100 characters")
	}
	if utf8.RuneCountInString(a.Description) > 1000 {
		p.Add("description", "must be at most 1000 characters")
	}
	if utf8.RuneCountInString(a.DeveloperName) > 100 {
		p.Add("developer_name", "must be at most 100 characters")
	}
	validateWebURL(p, "homepage_url", a.HomepageURL, "https", "http")
	// Pages load images over https only (their Content-Security-Policy).
	validateWebURL(p, "logo_url", a.LogoURL, "https")
	if len(a.RedirectURIs) == 0 {
		p.Add("redirect_uris", "at least one is required")
	}
	if len(a.RedirectURIs) > 20 {
		p.Add("redirect_uris", "at most 20")
	}
	for _, u := range a.RedirectURIs {
		if err := ValidateRedirectURI(u); err != nil {
			p.Add("redirect_uris", u+": "+err.Error())
		}
	}
	scopes, err := ParseScopes(a.Scopes.String())
	if err != nil {
		for _, problem := range ErrorFields(err)["scopes"] {
			p.Add("scopes", problem)
		}
	}
	a.Scopes = scopes
	if len(a.Scopes) == 0 && err == nil {
		p.Add("scopes", "at least one is required")
	}
	if a.RefreshLeeway < 0 || a.RefreshLeeway > MaxRefreshLeeway {
		p.Add("refresh_reuse_leeway", "must be 0-60 seconds")
	}
	switch a.IDTokenAlg {
	case "":
		a.IDTokenAlg = AlgRS256
	case AlgRS256, AlgES256, AlgEdDSA:
	default:
		p.Add("id_token_signed_response_alg", "must be RS256, ES256 or EdDSA")
	}
	return p.Err()
}

// AllowsRedirectURI reports whether u is one of the app's redirect URIs,
// compared exactly.
func (a *App) AllowsRedirectURI(u string) bool {
	for _, r := range a.RedirectURIs {
		if r == u {
			return true
		}
	}
	return false
}

// CheckSecret reports whether secret is the confidential app's client
// secret, comparing hashes in constant time.
func (a *App) CheckSecret(secret string) bool {
	if a.Public || len(a.SecretHash) == 0 || secret == "" {
		return false
	}
	return subtle.ConstantTimeCompare(a.SecretHash, HashSecret(secret)) == 1
}

// Union returns the scopes of s and other together.
func (s ScopeSet) Union(other ScopeSet) ScopeSet {
	return append(slices.Clone(s), other...).normalize()
}

// Minus returns the scopes of s not in other.
func (s ScopeSet) Minus(other ScopeSet) ScopeSet {
	out := ScopeSet{}
	for _, sc := range s {
		if !other.Has(sc) {
			out = append(out, sc)
		}
	}
	return out
}

// AuthCode is an authorization code: single use, AuthCodeTTL long, bound to
// the app, the redirect URI and the PKCE challenge of its request.
type AuthCode struct {
	ID                  int64
	GrantID             int64
	AppID               int64
	AccountID           int64
	UserID              int64
	RedirectURI         string
	CodeChallenge       string
	CodeChallengeMethod string
	Nonce               string
	Scopes              ScopeSet
	AuthTime            time.Time
	CreatedDatetime     time.Time
	ExpiresDatetime     time.Time
	UsedDatetime        *time.Time
}

// CodeRedemption is a client presenting a code at the token endpoint. The
// code must have been issued to AppID for RedirectURI; a code issued with a
// PKCE challenge needs its verifier, whatever the client (RFC 9700
// §2.1.1), and a public client's code must have been issued with one.
type CodeRedemption struct {
	AppID        int64
	PublicClient bool
	RedirectURI  string
	CodeVerifier string // "" when the request has none
}

// PKCEChallenge is the S256 code_challenge of a code_verifier (RFC 7636
// §4.2): BASE64URL(SHA256(verifier)), unpadded. Only S256 is accepted.
func PKCEChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// RefreshToken is what a vrt_ token resolves to. Every refresh token of a
// code exchange shares the code's family (CodeID).
type RefreshToken struct {
	ID              int64
	GrantID         int64
	AppID           int64
	AccountID       int64
	UserID          int64
	CodeID          int64
	Scopes          ScopeSet
	Nonce           string
	AuthTime        time.Time
	CreatedDatetime time.Time
	FamilyDatetime  time.Time // when the family began: the absolute lifetime counts from it
	ExpiresDatetime time.Time // idle expiry
	UsedDatetime    *time.Time
}

// IssuedTokens is the answer of a code exchange or a refresh.
type IssuedTokens struct {
	AccessToken    string
	AccessExpires  time.Time
	RefreshToken   string // empty without the offline scope
	Scopes         ScopeSet
	GrantID        int64
	AppID          int64
	AccountID      int64
	AccountName    string
	UserID         int64
	Nonce          string
	AuthTime       time.Time
	AccessTokenTTL time.Duration
	IDTokenAlg     string // the app's; set by ExchangeAsClient and RefreshAsClient
	// UserEmail and UserName are the grant's user's, read with a code
	// (ExchangeAuthCode, ExchangeAsClient) for the ID token's claims.
	UserEmail, UserName string
}

// SigningKey is an ID token signing key. Sealed is the private key (PKCS #8
// DER) sealed with SealKey: the store never sees it in the clear.
type SigningKey struct {
	ID              string // the JWK kid
	Algorithm       string
	Sealed          []byte
	CreatedDatetime time.Time
	RetiredDatetime *time.Time // no longer signs; still published until purged
}

// Audit actions.
const (
	AuditConsentGiven     = "consent.given"
	AuditConsentDenied    = "consent.denied"
	AuditCodeReplay       = "code.replay"
	AuditRefreshReuse     = "refresh.reuse"
	AuditGrantRevoked     = "grant.revoked"
	AuditTokenRevoked     = "token.revoked"
	AuditSecretRotated    = "app.secret_rotated"
	AuditAppUpdated       = "app.updated"
	AuditAppDeleted       = "app.deleted"
	AuditClientAuthFailed = "client.auth_failed"
)

// AuditEntry is one security event.
type AuditEntry struct {
	ID              int64           `json:"id"`
	AccountID       int64           `json:"account_id,omitempty"` // 0: not tied to an account
	ActorUserID     int64           `json:"actor_user_id,omitempty"`
	AppID           int64           `json:"app_id,omitempty"`
	Action          string          `json:"action"`
	Details         json.RawMessage `json:"details"`
	CreatedDatetime time.Time       `json:"created_datetime"`
}

// OAuthService is the authorization server's storage: apps, consent
// (grants), codes, refresh tokens, signing keys and the audit log.
type OAuthService interface {
	// RegisterApp validates and stores a (App.Validate); a confidential
	// app gets a client secret, returned once and stored as a hash.
	// Errors: EINVALID, ECONFLICT (client_id).
	RegisterApp(ctx context.Context, a *App) (secret string, err error)
	// FindApp returns the app with the client id. Errors: ENOTFOUND.
	FindApp(ctx context.Context, clientID string) (*App, error)
	// ListApps returns the apps owned by a user (0: every app), newest first.
	ListApps(ctx context.Context, ownerUserID int64) ([]App, error)
	// UpdateApp stores a's editable fields (by ID), audited on account 0.
	// Errors: EINVALID, ENOTFOUND.
	UpdateApp(ctx context.Context, a *App) error
	// RotateAppSecret replaces a confidential app's secret and returns the
	// new one (audited). Errors: ENOTFOUND, EINVALID (public app).
	RotateAppSecret(ctx context.Context, appID int64) (secret string, err error)
	// DeleteApp deletes the app with every grant and token, audited on
	// every account it was installed on and on account 0. Errors: ENOTFOUND.
	DeleteApp(ctx context.Context, appID int64) error

	// FindActiveGrant returns the unrevoked grant of (account, user, app).
	// Errors: ENOTFOUND.
	FindActiveGrant(ctx context.Context, accountID, userID, appID int64) (*Grant, error)
	// Consent records that the user approved scopes for the app on the
	// account: the active grant's scopes become the union, or a new grant is
	// made (audited). Errors: ENOTFOUND (app, or user not a member), EINVALID
	// (scopes the app did not register).
	Consent(ctx context.Context, accountID, userID, appID int64, scopes ScopeSet) (*Grant, error)
	// ListGrants returns the account's active grants, newest first.
	ListGrants(ctx context.Context, accountID int64) ([]Grant, error)

	// CreateAuthCode stores c (GrantID, RedirectURI, Scopes… set; the scopes
	// within the grant's) and returns the code, stored as a hash.
	// Errors: ENOTFOUND (grant revoked or absent), EINVALID.
	CreateAuthCode(ctx context.Context, c *AuthCode) (code string, err error)
	// ExchangeAuthCode redeems a code atomically: the code is marked used
	// and an access token (and with offline a refresh token) issued, when
	// the redemption matches it (see CodeRedemption). A code used before:
	// every token issued from it is revoked, the replay audited, and
	// ECONFLICT returned. A redemption that does not match changes nothing.
	// Errors: ENOTFOUND (unknown), EUNAUTHORIZED (expired, grant revoked,
	// another client or redirect URI, PKCE failed), ECONFLICT.
	ExchangeAuthCode(ctx context.Context, code string, r CodeRedemption, accessTTL time.Duration) (*IssuedTokens, error)
	// Refresh rotates a refresh token of the app appID (the authenticated
	// client; another app's token answers EUNAUTHORIZED and stays as it
	// was); scopes, when not empty, narrow the new access token. An already-used
	// token revokes its grant (audited) and answers ECONFLICT — unless the
	// app's leeway has not passed and the token's successor is unused, in
	// which case the successor is revoked and a new one issued. Errors:
	// ENOTFOUND, EUNAUTHORIZED (expired, revoked), EINVALID (wider scopes),
	// ECONFLICT (reuse).
	Refresh(ctx context.Context, token string, appID int64, scopes ScopeSet, accessTTL time.Duration) (*IssuedTokens, error)
	// ExchangeAsClient is ExchangeAuthCode for a confidential client the
	// server has not authenticated yet (r.AppID and r.PublicClient are not
	// used): the client's secret is checked against the app of the code as
	// the code is read, which saves the server a lookup of its own. When
	// the credentials authenticate the code's app, it answers as
	// ExchangeAuthCode would (or, where it cannot tell in the same step,
	// as below). When they do not, or the code is unknown, it returns nil
	// tokens and no error, having changed nothing: the caller then
	// authenticates the client its own way and calls ExchangeAuthCode.
	ExchangeAsClient(ctx context.Context, code, clientID, secret string, r CodeRedemption, accessTTL time.Duration) (*IssuedTokens, error)
	// RefreshAsClient is Refresh the same way, for a token rotated with its
	// scopes unchanged.
	RefreshAsClient(ctx context.Context, token, clientID, secret string, accessTTL time.Duration) (*IssuedTokens, error)
	// RevokeOAuthToken revokes a vat_ access token or a vrt_ refresh token
	// (with its family) of the app, as RFC 7009 asks: unknown tokens are
	// not an error. Errors: EFORBIDDEN (a token of another app, which RFC
	// 7009 §2.1 refuses).
	RevokeOAuthToken(ctx context.Context, appID int64, token string) error

	// CreateSigningKey stores k. Errors: ECONFLICT (kid).
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// ListSigningKeys returns every key, newest first.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// RetireSigningKey stops a key from signing. Errors: ENOTFOUND.
	RetireSigningKey(ctx context.Context, id string) error

	// PurgeOAuth deletes up to limit expired rows of each kind: access and
	// refresh tokens past their expiry, and codes a day past theirs (used
	// codes are kept that long so a late replay still revokes). It returns
	// how many rows went, so a janitor loops while it is limit or more.
	PurgeOAuth(ctx context.Context, limit int) (int, error)

	// AppendAudit records e (Action set; Details JSON or empty).
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// ListAudit returns the account's newest entries (limit 1-1000);
	// account 0 lists the entries tied to no account (secret rotations).
	ListAudit(ctx context.Context, accountID int64, limit int) ([]AuditEntry, error)
}

// OAuthStore is a Store that also keeps the authorization server's state.
type OAuthStore interface {
	Store
	OAuthService
}

// DeriveKey derives a 256-bit key for purpose from the server secret
// (VALET_SECRET) with HKDF-SHA-256.
func DeriveKey(secret []byte, purpose string) ([]byte, error) {
	if len(secret) < 16 {
		return nil, errors.New("valet: the server secret must be at least 16 bytes")
	}
	return hkdf.Key(sha256.New, secret, nil, "valet "+purpose, 32)
}

// SealKey encrypts plaintext with AES-256-GCM under key (32 bytes); the
// nonce leads the result.
func SealKey(key, plaintext []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, plaintext, nil), nil
}

// OpenKey decrypts what SealKey sealed under key.
func OpenKey(key, sealed []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("valet: sealed value too short")
	}
	return aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("valet: a sealing key is 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// PendingAuthorization is an authorization request waiting for the
// person's sign-in and consent, as the consent page shows it.
type PendingAuthorization struct {
	ID          string // opaque; sealed, so it carries the request itself
	App         *App
	Scopes      ScopeSet // what the app asks for, all registered
	AccountHint string   // the account=NAME parameter, if any
	Expires     time.Time

	// What the app's prompt and max_age parameters ask of the pages
	// (OpenID Connect Core §3.1.2.1). NoPrompt (prompt=none): show no
	// page; what would need one goes back to the app as an error.
	// AskConsent (prompt=consent or select_account): show the consent page
	// and its account picker even when consent is remembered.
	NoPrompt, AskConsent bool
	// SignInSince is how recent the sign-in the code vouches for must be
	// (max_age, and prompt=login as max_age=0): a sign-in made since the
	// request always is. Zero when the app asked for neither.
	SignInSince time.Time
	// HintUserID is the user the app's id_token_hint names (0 without
	// one): another signed-in user must sign in as that user first
	// (OpenID Connect Core §3.1.2.1).
	HintUserID int64
}

// OtherUser reports whether a user signed in as userID is not the one the
// request's id_token_hint names.
func (p *PendingAuthorization) OtherUser(userID int64) bool {
	return p.HintUserID != 0 && p.HintUserID != userID
}

// PromptError is how the authorization server answers a request with
// prompt=none that cannot go on without showing a page (OpenID Connect
// Core §3.1.2.6).
type PromptError string

const (
	LoginRequired            PromptError = "login_required"             // no session, or one too old
	ConsentRequired          PromptError = "consent_required"           // consent not given, or not for every scope
	AccountSelectionRequired PromptError = "account_selection_required" // the account picker would be needed
	InteractionRequired      PromptError = "interaction_required"       // any other page
)

// NeedsSignIn reports whether a session signed in at authTime is too old
// for the request: the person must enter their password again first.
func (p *PendingAuthorization) NeedsSignIn(authTime time.Time) bool {
	return authTime.Before(p.SignInSince)
}
