package authserver

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/valethq/valet"
)

// client is an app as the protocol engine sees it.
type client struct {
	app       *valet.App
	loginPath string

	// unverified is set, and app holds the client_id alone, while the
	// store has still to check the client's secret (Server.VerifyClient).
	unverified *op.Request[op.ClientCredentials]
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                    { return c.app.ClientID }
func (c *client) RedirectURIs() []string           { return c.app.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return nil }

// ApplicationType is web for every app, public ones included: the library
// lets native apps' loopback redirect URIs vary in port (RFC 8252 §7.3),
// and valet matches redirect URIs exactly.
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.app.Public {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic // client_secret_post is accepted as well
}
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string           { return c.loginPath + "?id=" + id }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return time.Hour }
func (c *client) DevMode() bool                       { return true } // registration already allows only https or loopback http
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(scope string) bool     { return c.app.Scopes.Has(valet.Scope(scope)) }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }

// storage implements op.Storage on the store. Codes and tokens are issued
// by Server's CodeExchange and RefreshToken overrides, so the library's
// token storage methods refuse.
type storage struct {
	s *Server
}

var _ op.Storage = storage{}

var errUnused = oidc.ErrServerError().WithDescription("not supported by this server")

// CreateAuthRequest seals the request; hintUser is the subject of its
// id_token_hint, which the library verified (signature and issuer).
func (st storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, hintUser string) (op.AuthRequest, error) {
	now := st.s.clock.Now()
	a := &authRequest{ClientID: req.ClientID, RedirectURI: req.RedirectURI, State: req.State, Nonce: req.Nonce,
		Scopes: req.Scopes, ResponseType: req.ResponseType, ResponseMode: req.ResponseMode,
		Challenge: req.CodeChallenge, ChallengeMeth: req.CodeChallengeMethod,
		AccountHint: accountHint(ctx), Expires: now.Add(requestTTL).UnixMicro()}
	a.setPrompt(req, now)
	a.HintUser = hintUser
	if _, err := st.s.seal(a); err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return a, nil
}

func (st storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	a, err := st.s.unseal(id)
	if err != nil {
		return nil, oidc.ErrInvalidRequest().WithDescription("unknown or expired authorization request")
	}
	return a, nil
}

func (st storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, oidc.ErrInvalidGrant()
}
func (st storage) SaveAuthCode(context.Context, string, string) error { return errUnused }
func (st storage) DeleteAuthRequest(context.Context, string) error    { return nil }
func (st storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return "", time.Time{}, errUnused
}
func (st storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errUnused
}
func (st storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, oidc.ErrInvalidGrant()
}
func (st storage) TerminateSession(context.Context, string, string) error { return nil }
func (st storage) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return oidc.ErrServerError().WithDescription("not supported by this server")
}
func (st storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

// SigningKey is the key the library would sign with: valet signs its ID
// tokens itself (Server.idToken), with each app's algorithm.
func (st storage) SigningKey(context.Context) (op.SigningKey, error) {
	return st.s.keys.signer("")
}
func (st storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return algorithms, nil
}
func (st storage) KeySet(context.Context) ([]op.Key, error) { return st.s.keys.public(), nil }

// appMemoKey marks a token-endpoint request's context with the app it
// authenticated: the library looks the client up twice per request
// (AuthorizeClientIDSecret, then GetClientByClientID).
type appMemoKey struct{}

type appMemo struct {
	clientID string
	app      *valet.App
}

func withAppMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, appMemoKey{}, &appMemo{})
}

// findApp is the store's FindApp, once per request.
func (st storage) findApp(ctx context.Context, clientID string) (*valet.App, error) {
	m, _ := ctx.Value(appMemoKey{}).(*appMemo)
	if m != nil && m.app != nil && m.clientID == clientID {
		return m.app, nil
	}
	app, err := st.s.store.FindApp(ctx, clientID)
	if m != nil && err == nil {
		m.clientID, m.app = clientID, app
	}
	return app, err
}

func (st storage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	app, err := st.findApp(ctx, clientID)
	if err != nil {
		if valet.ErrorCode(err) == valet.ENOTFOUND {
			// An *oidc.Error, or the library calls it a server error.
			return nil, oidc.ErrInvalidClient().WithDescription("no app is registered with this client_id")
		}
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return &client{app: app, loginPath: st.s.consentPath}, nil
}

func (st storage) AuthorizeClientIDSecret(ctx context.Context, clientID, secret string) error {
	app, err := st.findApp(ctx, clientID)
	if err != nil && valet.ErrorCode(err) != valet.ENOTFOUND {
		return oidc.ErrServerError().WithParent(err)
	}
	if app != nil && app.CheckSecret(secret) {
		return nil
	}
	if app != nil {
		details, _ := json.Marshal(map[string]string{"client_id": clientID})
		_ = st.s.store.AppendAudit(ctx, &valet.AuditEntry{AppID: app.ID, Action: valet.AuditClientAuthFailed, Details: details})
	}
	return oidc.ErrInvalidClient().WithDescription("client authentication failed")
}

func (st storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the identity claims of an ID token the
// library makes; valet's own are made by Server.idToken.
func (st storage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	id, err := strconv.ParseInt(req.GetSubject(), 10, 64)
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	user, err := st.s.store.FindUserByID(ctx, id)
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	setUserClaims(info, user, valet.ScopeSet(toScopes(scopes)))
	return nil
}

func setUserClaims(info *oidc.UserInfo, user *valet.User, scopes valet.ScopeSet) {
	info.Subject = strconv.FormatInt(user.ID, 10)
	if scopes.Has(valet.ScopeEmail) {
		info.Email, info.EmailVerified = user.Email, true
	}
	if scopes.Has(valet.ScopeProfile) {
		info.Name = user.Name
	}
}

func toScopes(in []string) []valet.Scope {
	out := make([]valet.Scope, len(in))
	for i, s := range in {
		out[i] = valet.Scope(s)
	}
	return out
}

func (st storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errUnused
}
func (st storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errUnused
}
func (st storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}
func (st storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errUnused
}
func (st storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errUnused
}
func (st storage) Health(ctx context.Context) error { return st.s.store.Ping(ctx) }
