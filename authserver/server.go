package authserver

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/valethq/valet"
)

// Paths of the endpoints, under the issuer.
const (
	AuthorizePath  = "/oauth/authorize"
	TokenPath      = "/oauth/token"
	UserinfoPath   = "/oauth/userinfo"
	RevokePath     = "/oauth/revoke"
	IntrospectPath = "/oauth/introspect"
	KeysPath       = "/oauth/keys"
	// ConsentPath is where the library sends the browser to sign in and
	// consent; the server package serves it.
	ConsentPath = "/oauth/consent"
)

// requestTTL bounds a flow from /oauth/authorize to consent.
const requestTTL = 10 * time.Minute

// Config configures the authorization server.
type Config struct {
	// Issuer is the public base URL (no trailing slash).
	Issuer string
	// AccessTokenTTL defaults to valet.DefaultAccessTTL.
	AccessTokenTTL time.Duration
	// Secret is the server secret (VALET_SECRET): signing keys are sealed
	// with a key derived from it, and so are pending authorization requests.
	Secret []byte
	Clock  valet.Clock
}

// Server is the OAuth 2.0 / OpenID Connect provider: the library's
// LegacyServer with valet's token rules around it.
type Server struct {
	*op.LegacyServer
	store       valet.OAuthStore
	clock       valet.Clock
	issuer      string
	accessTTL   time.Duration
	requestKey  []byte
	keys        *keyring
	consentPath string
	handler     http.Handler
}

// New builds the provider on store, creating signing keys on first start.
func New(ctx context.Context, store valet.OAuthStore, cfg Config) (*Server, error) {
	s := &Server{store: store, clock: cfg.Clock, issuer: strings.TrimRight(cfg.Issuer, "/"),
		accessTTL: cfg.AccessTokenTTL, consentPath: ConsentPath}
	if s.clock == nil {
		s.clock = valet.SystemClock{}
	}
	if s.accessTTL <= 0 {
		s.accessTTL = valet.DefaultAccessTTL
	}
	var err error
	if s.requestKey, err = valet.DeriveKey(cfg.Secret, "authorization requests"); err != nil {
		return nil, err
	}
	sealKey, err := valet.DeriveKey(cfg.Secret, "signing keys")
	if err != nil {
		return nil, err
	}
	s.keys = &keyring{store: store, seal: sealKey, clock: s.clock}
	if err := s.keys.load(ctx); err != nil {
		return nil, err
	}
	var scopes []string
	for _, info := range valet.Scopes {
		scopes = append(scopes, string(info.Scope))
	}
	config := &op.Config{
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedScopes:       scopes,
		SupportedClaims:       []string{"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "at_hash", "email", "email_verified", "name", "account"},
	}
	opts := []op.Option{op.WithCrypto(noCrypto{})}
	if strings.HasPrefix(s.issuer, "http://") {
		opts = append(opts, op.WithAllowInsecure())
	}
	provider, err := op.NewOpenIDProvider(s.issuer, config, storage{s}, opts...)
	if err != nil {
		return nil, err
	}
	s.LegacyServer = op.NewLegacyServer(provider, op.Endpoints{
		Authorization: op.NewEndpoint(AuthorizePath),
		Token:         op.NewEndpoint(TokenPath),
		Userinfo:      op.NewEndpoint(UserinfoPath),
		Revocation:    op.NewEndpoint(RevokePath),
		Introspection: op.NewEndpoint(IntrospectPath),
		JwksURI:       op.NewEndpoint(KeysPath),
	})
	h := op.RegisterLegacyServer(s, s.callback, op.WithServerCORSOptions(&cors.Options{
		AllowOriginFunc:  func(string) bool { return true },
		AllowedMethods:   []string{http.MethodGet, http.MethodPost},
		AllowedHeaders:   []string{"Authorization", "Content-Type"},
		AllowCredentials: false,
		MaxAge:           600,
	}))
	s.handler = s.wrap(h)
	return s, nil
}

// Handler serves /oauth/... and /.well-known/openid-configuration.
func (s *Server) Handler() http.Handler { return s.handler }

// noCrypto refuses: valet's tokens are opaque random values stored hashed,
// never encrypted ids, so no library path may mint one.
type noCrypto struct{}

func (noCrypto) Encrypt(string) (string, error) { return "", errors.New("authserver: not supported") }
func (noCrypto) Decrypt(string) (string, error) { return "", errors.New("authserver: not supported") }

type ctxKey int

const (
	hintKey ctxKey = iota
	rawScopeKey
	requestURIKey // whether the authorization request has a request_uri
)

func accountHint(ctx context.Context) string {
	h, _ := ctx.Value(hintKey).(string)
	return h
}

// wrap adds what the library lacks around its handler: the raw scope and
// account hint for Authorize, RFC 9207 iss on authorization responses, an
// HTML page instead of a JSON error where the authorize endpoint cannot
// redirect, and no-store on token answers.
func (s *Server) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case AuthorizePath, AuthorizePath + "/callback":
			_ = r.ParseForm()
			ctx := context.WithValue(r.Context(), hintKey, r.Form.Get("account"))
			ctx = context.WithValue(ctx, rawScopeKey, r.Form.Get("scope"))
			ctx = context.WithValue(ctx, requestURIKey, r.Form.Has("request_uri"))
			rec := newBufferedWriter()
			h.ServeHTTP(rec, r.WithContext(ctx))
			s.finishAuthorize(w, r, rec)
			return
		case TokenPath, RevokePath, IntrospectPath:
			if r.Method == http.MethodOptions { // a CORS preflight
				break
			}
			if f := checkClientEndpoint(r); f != nil {
				f.write(w)
				return
			}
			rec := newBufferedWriter()
			h.ServeHTTP(rec, r.WithContext(withAppMemo(r.Context())))
			finishToken(w, rec)
			return
		case UserinfoPath:
			if r.Method == http.MethodOptions {
				break
			}
			if f := checkUserinfo(r); f != nil {
				f.write(w)
				return
			}
			rec := newBufferedWriter()
			h.ServeHTTP(rec, r)
			finishUserinfo(w, rec)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func newBufferedWriter() *bufferedWriter { return &bufferedWriter{header: http.Header{}} }

// bufferedWriter holds the library's answer so that wrap can amend it.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// oauthError is the error of a buffered JSON error answer (empty when the
// body is not one). A success is not read: a token answer's body is most
// of a kilobyte, and decoding it cost ~3% of an exchange's CPU.
func (b *bufferedWriter) oauthError() (code, description string) {
	if b.status < http.StatusBadRequest {
		return "", ""
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(b.body.Bytes(), &e)
	return e.Error, e.Description
}

// send writes the buffered answer to w.
func (b *bufferedWriter) send(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.WriteHeader(cmp.Or(b.status, http.StatusOK))
	_, _ = w.Write(b.body.Bytes())
}

// finishToken marks token answers not cacheable (RFC 6749 §5.1) and answers
// a failed client authentication with 401 (RFC 6749 §5.2).
func finishToken(w http.ResponseWriter, rec *bufferedWriter) {
	rec.header.Set("Cache-Control", "no-store")
	rec.header.Set("Pragma", "no-cache")
	if code, _ := rec.oauthError(); rec.status == http.StatusBadRequest && code == string(oidc.InvalidClient) {
		rec.status = http.StatusUnauthorized
		rec.header.Set("WWW-Authenticate", `Basic realm="valet"`)
	}
	rec.send(w)
}

// finishUserinfo adds the WWW-Authenticate challenge RFC 6750 §3 asks for
// (OpenID Connect Core §5.3.3): no error code when no token was sent.
func finishUserinfo(w http.ResponseWriter, rec *bufferedWriter) {
	code, _ := rec.oauthError()
	switch {
	case rec.status == http.StatusForbidden:
		rec.header.Set("WWW-Authenticate", `Bearer realm="valet", error="insufficient_scope", scope="openid"`)
	case rec.status == http.StatusUnauthorized && code == errInvalidToken:
		rec.header.Set("WWW-Authenticate", `Bearer realm="valet", error="invalid_token"`)
	case rec.status == http.StatusUnauthorized:
		rec.header.Set("WWW-Authenticate", `Bearer realm="valet"`)
	}
	rec.send(w)
}

// RFC 6750 §3.1's error codes, which the library does not name.
const (
	errInvalidToken      = "invalid_token"
	errInsufficientScope = "insufficient_scope"
)

// finishAuthorize adds iss to the authorization responses sent to the app
// (RFC 9207) and turns the library's JSON errors, answered while client
// and redirect URI are not known good, into a page: never a redirect.
func (s *Server) finishAuthorize(w http.ResponseWriter, r *http.Request, rec *bufferedWriter) {
	switch {
	case rec.status >= 300 && rec.status < 400:
		if loc := rec.header.Get("Location"); loc != "" {
			rec.header.Set("Location", s.withIssuer(loc, r.Form.Get("response_type")))
		}
	case rec.status >= 400 && !strings.HasPrefix(rec.header.Get("Content-Type"), "text/html"): // the callback's is a page already
		code, description := rec.oauthError()
		writeErrorPage(w, http.StatusBadRequest, code, description)
		return
	}
	rec.send(w)
}

// withIssuer adds iss to a redirect to the app that answers it (a code or
// an error), in the query, or in the fragment where the library put an
// error for a response mode or type valet refuses; a redirect to valet's
// own consent page is left as it is.
func (s *Server) withIssuer(loc, responseType string) string {
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() && !strings.HasPrefix(loc, "//") {
		return loc
	}
	params, fragment := u.Query(), false
	if params.Get("code") == "" && params.Get("error") == "" && u.Fragment != "" {
		if f, err := url.ParseQuery(u.Fragment); err == nil && f.Get("error") != "" {
			params, fragment = f, true
		}
	}
	if params.Get("code") == "" && params.Get("error") == "" {
		return loc
	}
	// The library calls a response type no client may use
	// unauthorized_client; valet supports code alone.
	if params.Get("error") == string(oidc.UnauthorizedClient) && responseType != string(oidc.ResponseTypeCode) {
		params.Set("error", "unsupported_response_type")
		params.Set("error_description", "only response_type=code is supported")
	}
	params.Set("iss", s.issuer)
	if fragment {
		u.Fragment = params.Encode()
	} else {
		u.RawQuery = params.Encode()
	}
	return u.String()
}

// Discovery advertises valet's choices.
func (s *Server) Discovery(ctx context.Context, r *op.Request[struct{}]) (*op.Response, error) {
	p := s.Provider()
	c := op.CreateDiscoveryConfig(ctx, p, p.Storage())
	c.ScopesSupported = nil
	for _, info := range valet.Scopes {
		c.ScopesSupported = append(c.ScopesSupported, string(info.Scope))
	}
	c.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	c.ResponseModesSupported = []string{"query"}
	c.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	c.CodeChallengeMethodsSupported = []oidc.CodeChallengeMethod{oidc.CodeChallengeMethodS256}
	c.TokenEndpointAuthMethodsSupported = []oidc.AuthMethod{oidc.AuthMethodBasic, oidc.AuthMethodPost}
	c.RevocationEndpointAuthMethodsSupported = c.TokenEndpointAuthMethodsSupported
	c.IntrospectionEndpointAuthMethodsSupported = c.TokenEndpointAuthMethodsSupported
	c.IDTokenSigningAlgValuesSupported = []string{"RS256", "ES256", "EdDSA"}
	c.AuthorizationEndpoint = s.issuer + AuthorizePath
	c.TokenEndpoint = s.issuer + TokenPath
	c.UserinfoEndpoint = s.issuer + UserinfoPath
	c.RevocationEndpoint = s.issuer + RevokePath
	c.IntrospectionEndpoint = s.issuer + IntrospectPath
	c.JwksURI = s.issuer + KeysPath
	c.EndSessionEndpoint = ""
	// No device flow, no JWT client authentication, no request objects.
	c.DeviceAuthorizationEndpoint = ""
	c.TokenEndpointAuthSigningAlgValuesSupported = nil
	c.RevocationEndpointAuthSigningAlgValuesSupported = nil
	c.IntrospectionEndpointAuthSigningAlgValuesSupported = nil
	c.RequestObjectSigningAlgValuesSupported = nil
	c.RequestParameterSupported, c.RequestURIParameterSupported = false, false
	return op.NewResponse(discovery{DiscoveryConfiguration: c, IssParameterSupported: true,
		PromptValuesSupported: []string{oidc.PromptNone, oidc.PromptLogin, oidc.PromptConsent, oidc.PromptSelectAccount}}), nil
}

type discovery struct {
	*oidc.DiscoveryConfiguration
	IssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	PromptValuesSupported []string `json:"prompt_values_supported"`
}

// Authorize adds valet's rules once client and redirect URI are known good:
// every requested scope registered (else invalid_scope), PKCE S256 for
// public apps, plain refused, query response mode only.
func (s *Server) Authorize(ctx context.Context, r *op.ClientRequest[oidc.AuthRequest]) (*op.Redirect, error) {
	c, ok := r.Client.(*client)
	if !ok {
		return nil, oidc.ErrServerError()
	}
	raw, _ := ctx.Value(rawScopeKey).(string)
	requested, err := valet.ParseScopes(raw)
	if err != nil || !c.app.Scopes.Contains(requested) {
		return nil, oidc.ErrInvalidScope().WithDescription("the app did not register some of the requested scopes")
	}
	if len(requested) == 0 {
		return nil, oidc.ErrInvalidScope().WithDescription("no scope requested")
	}
	// The request travels sealed in the consent page's URL: bound what it carries.
	if len(r.Data.State) > 1024 || len(r.Data.Nonce) > 1024 || len(r.Data.CodeChallenge) > 128 {
		return nil, oidc.ErrInvalidRequest().WithDescription("state and nonce are limited to 1024 characters, code_challenge to 128")
	}
	if r.Data.ResponseMode != "" && r.Data.ResponseMode != oidc.ResponseModeQuery {
		return nil, oidc.ErrInvalidRequest().WithDescription("only response_mode=query is supported")
	}
	if r.Data.CodeChallenge != "" && r.Data.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	if r.Data.CodeChallenge != "" && !challengePattern.MatchString(r.Data.CodeChallenge) {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge must be the 43-character base64url SHA-256 of the verifier (RFC 7636)")
	}
	if requestURI, _ := ctx.Value(requestURIKey).(bool); requestURI {
		return nil, &oidc.Error{ErrorType: "request_uri_not_supported", Description: "request_uri is not supported"}
	}
	if c.app.Public && r.Data.CodeChallenge == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE (S256) is required for this app")
	}
	r.Data.Scopes = oidc.SpaceDelimitedArray(strings.Fields(requested.String()))
	return s.LegacyServer.Authorize(ctx, r)
}

// Pending returns the authorization request behind a consent page's id.
// Errors: ENOTFOUND (unknown, forged or expired).
func (s *Server) Pending(ctx context.Context, id string) (*valet.PendingAuthorization, error) {
	a, err := s.unseal(id)
	if err != nil || a.Done() {
		return nil, errUnknownRequest
	}
	app, err := s.store.FindApp(ctx, a.ClientID)
	if err != nil {
		return nil, err
	}
	p := &valet.PendingAuthorization{ID: id, App: app, Scopes: valet.ScopeSet(toScopes(a.Scopes)),
		AccountHint: a.AccountHint, Expires: time.UnixMicro(a.Expires).UTC()}
	s.pendingPrompt(p, a)
	if a.HintUser != "" {
		if p.HintUserID, err = strconv.ParseInt(a.HintUser, 10, 64); err != nil {
			return nil, errUnknownRequest
		}
	}
	return p, nil
}

// pending opens a request Pending returned, with the app Pending found for
// it in the same request. Errors: ENOTFOUND.
func (s *Server) pending(p *valet.PendingAuthorization) (*authRequest, *valet.App, error) {
	if p == nil {
		return nil, nil, errUnknownRequest
	}
	a, err := s.unseal(p.ID)
	if err != nil || a.Done() || p.App == nil || p.App.ClientID != a.ClientID {
		return nil, nil, errUnknownRequest
	}
	return a, p.App, nil
}

// errUnknownRequest answers a consent page id that does not open.
var errUnknownRequest = valet.Errorf(valet.ENOTFOUND, "This authorization request is unknown or has expired. Please start again from the app.")

// Approve records the user's consent on the account and returns where the
// browser goes next: the library's callback, which answers the app with a
// code. A remembered grant that already holds the requested scopes is used
// as it is: consent is recorded (and audited) when a person gave it, not
// on every silent re-authorization. Errors: ENOTFOUND, EUNAUTHORIZED (a
// sign-in at authTime is too old for the request's max_age or
// prompt=login), and the store's Consent errors.
func (s *Server) Approve(ctx context.Context, p *valet.PendingAuthorization, userID, accountID int64, authTime time.Time, remembered *valet.Grant) (string, error) {
	a, app, err := s.pending(p)
	if err != nil {
		return "", err
	}
	if authTime.Before(a.signInSince(s.clock.Now())) {
		return "", errSignInAgain
	}
	if a.HintUser != "" && a.HintUser != strconv.FormatInt(userID, 10) {
		return "", errOtherUser
	}
	requested := valet.ScopeSet(toScopes(a.Scopes))
	g := remembered
	if g == nil || g.AccountID != accountID || g.UserID != userID || g.AppID != app.ID || !g.Scopes.Contains(requested) {
		// The code's transaction still refuses a grant revoked meanwhile.
		if g, err = s.store.Consent(ctx, accountID, userID, app.ID, requested); err != nil {
			return "", err
		}
	}
	a.UserID, a.AccountID, a.GrantID, a.AuthTime = userID, accountID, g.ID, authTime.UnixMicro()
	a.Code, err = s.store.CreateAuthCode(ctx, &valet.AuthCode{GrantID: a.GrantID, RedirectURI: a.RedirectURI,
		CodeChallenge: a.Challenge, CodeChallengeMethod: string(a.ChallengeMeth), Nonce: a.Nonce,
		Scopes: requested, AuthTime: a.GetAuthTime()})
	if err != nil {
		return "", err
	}
	// The approved request is good for a short hop to the callback only:
	// no longer than its code.
	a.Expires = min(a.Expires, s.clock.Now().Add(valet.AuthCodeTTL).UnixMicro())
	done, err := s.seal(a)
	if err != nil {
		return "", err
	}
	return s.LegacyServer.AuthCallbackURL()(ctx, done), nil
}

// Deny records the refusal and returns the app's redirect URI with
// error=access_denied, state and iss. Errors: ENOTFOUND.
func (s *Server) Deny(ctx context.Context, p *valet.PendingAuthorization, userID, accountID int64) (string, error) {
	a, app, err := s.pending(p)
	if err != nil {
		return "", err
	}
	details, _ := json.Marshal(map[string]any{"user_id": userID, "scopes": strings.Join(a.Scopes, " ")})
	if err := s.store.AppendAudit(ctx, &valet.AuditEntry{AccountID: accountID, ActorUserID: userID, AppID: app.ID,
		Action: valet.AuditConsentDenied, Details: details}); err != nil {
		return "", err
	}
	return op.AuthResponseURL(a.RedirectURI, a.ResponseType, oidc.ResponseModeQuery, &authError{
		Error: "access_denied", Description: "The user denied the request.", State: a.State, Issuer: s.issuer,
	}, s.Provider().Encoder())
}

type authError struct {
	Error       string `schema:"error"`
	Description string `schema:"error_description,omitempty"`
	State       string `schema:"state,omitempty"`
	Issuer      string `schema:"iss"`
}

type codeResponse struct {
	Code   string `schema:"code"`
	State  string `schema:"state,omitempty"`
	Issuer string `schema:"iss"`
}

// callback answers the app with the code minted when the request was
// approved.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	a, err := s.unseal(r.FormValue("id"))
	if err != nil || !a.Done() {
		writeErrorPage(w, http.StatusBadRequest, "invalid_request", "This authorization request is unknown or has expired. Please start again from the app.")
		return
	}
	to, err := op.AuthResponseURL(a.RedirectURI, a.ResponseType, oidc.ResponseModeQuery,
		&codeResponse{Code: a.Code, State: a.State, Issuer: s.issuer}, s.Provider().Encoder())
	if err != nil {
		writeErrorPage(w, http.StatusInternalServerError, "server_error", "")
		return
	}
	http.Redirect(w, r, to, http.StatusFound)
}

// tokenResponse is RFC 6749 §5.1's answer with the account the app was
// installed on.
type tokenResponse struct {
	*oidc.AccessTokenResponse
	Account string `json:"account"`
}

func (s *Server) tokenAnswer(ctx context.Context, c *client, issued *valet.IssuedTokens, withIDToken bool) (*op.Response, error) {
	resp := &oidc.AccessTokenResponse{
		AccessToken:  issued.AccessToken,
		TokenType:    oidc.BearerToken,
		RefreshToken: issued.RefreshToken,
		ExpiresIn:    uint64(issued.AccessTokenTTL / time.Second),
		Scope:        oidc.SpaceDelimitedArray(strings.Fields(issued.Scopes.String())),
	}
	if withIDToken && issued.Scopes.Has(valet.ScopeOpenID) {
		idToken, err := s.idToken(ctx, c.app.ClientID, c.app.IDTokenAlg, issued)
		if err != nil {
			return nil, oidc.ErrServerError().WithParent(err)
		}
		resp.IDToken = idToken
	}
	out := op.NewResponse(tokenResponse{AccessTokenResponse: resp, Account: issued.AccountName})
	out.Header = http.Header{"Cache-Control": {"no-store"}, "Pragma": {"no-cache"}}
	return out, nil
}

// grantError maps the store's refusals to RFC 6749 errors.
func grantError(err error) error {
	var oe *oidc.Error
	if errors.As(err, &oe) {
		return err
	}
	switch valet.ErrorCode(err) {
	case valet.ENOTFOUND, valet.EUNAUTHORIZED, valet.ECONFLICT:
		return oidc.ErrInvalidGrant().WithDescription("%s", valet.ErrorMessage(err))
	case valet.EINVALID:
		return oidc.ErrInvalidScope().WithDescription("a refresh can only narrow the granted scopes")
	}
	return oidc.ErrServerError().WithParent(err)
}

// VerifyClient leaves checking a confidential client's secret on a code
// exchange or a refresh that keeps its scopes to the store, which checks
// it with the code or token in the same statement where it can
// (valet.OAuthService.ExchangeAsClient): on PostgreSQL that saves the
// request a round trip. Anything else, and whatever the store leaves
// undecided, is authenticated by the library's VerifyClient, with its
// invalid_client answer and our audit of the failure.
func (s *Server) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	grantType := oidc.GrantType(r.Form.Get("grant_type"))
	if (grantType == oidc.GrantTypeCode || grantType == oidc.GrantTypeRefreshToken && r.Form.Get("scope") == "") &&
		r.Data.ClientID != "" && r.Data.ClientSecret != "" &&
		r.Data.ClientAssertion == "" && r.Data.ClientAssertionType == "" {
		return &client{app: &valet.App{ClientID: r.Data.ClientID}, loginPath: s.consentPath, unverified: r}, nil
	}
	return s.LegacyServer.VerifyClient(ctx, r)
}

// verified authenticates an unverified client the library's way.
func (s *Server) verified(ctx context.Context, c *client) (*client, error) {
	if c.unverified == nil {
		return c, nil
	}
	verified, err := s.LegacyServer.VerifyClient(ctx, c.unverified)
	if err != nil {
		return nil, err
	}
	vc, ok := verified.(*client)
	if !ok {
		return nil, oidc.ErrServerError()
	}
	return vc, nil
}

// oneStepClient is the client of an answer the store gave in one step:
// what the ID token needs of its app.
func (s *Server) oneStepClient(clientID string, issued *valet.IssuedTokens) *client {
	return &client{app: &valet.App{ID: issued.AppID, ClientID: clientID, IDTokenAlg: issued.IDTokenAlg},
		loginPath: s.consentPath}
}

// CodeExchange redeems a code. Unlike the library's, it requires the PKCE
// verifier whenever the code was issued with a challenge (RFC 9700
// §2.1.1), for confidential apps too: the store checks the client,
// redirect URI and verifier (valet.CodeRedemption) with the redemption
// itself, in one statement on PostgreSQL.
func (s *Server) CodeExchange(ctx context.Context, r *op.ClientRequest[oidc.AccessTokenRequest]) (*op.Response, error) {
	c, ok := r.Client.(*client)
	if !ok {
		return nil, oidc.ErrServerError()
	}
	redemption := valet.CodeRedemption{RedirectURI: r.Data.RedirectURI, CodeVerifier: r.Data.CodeVerifier}
	if c.unverified != nil {
		issued, err := s.store.ExchangeAsClient(ctx, r.Data.Code, c.app.ClientID, c.unverified.Data.ClientSecret,
			redemption, s.accessTTL)
		if err != nil {
			return nil, grantError(err)
		}
		if issued != nil {
			return s.tokenAnswer(ctx, s.oneStepClient(c.app.ClientID, issued), issued, true)
		}
		if c, err = s.verified(ctx, c); err != nil {
			return nil, err
		}
	}
	redemption.AppID, redemption.PublicClient = c.app.ID, c.app.Public
	issued, err := s.store.ExchangeAuthCode(ctx, r.Data.Code, redemption, s.accessTTL)
	if err != nil {
		return nil, grantError(err)
	}
	return s.tokenAnswer(ctx, c, issued, true)
}

// RefreshToken rotates a refresh token (see valet.OAuthService.Refresh). An
// ID token comes back only when the request asks for openid again.
func (s *Server) RefreshToken(ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest]) (*op.Response, error) {
	c, ok := r.Client.(*client)
	if !ok {
		return nil, oidc.ErrServerError()
	}
	scopes := valet.ScopeSet(toScopes(r.Data.Scopes))
	if c.unverified != nil {
		if len(scopes) == 0 {
			issued, err := s.store.RefreshAsClient(ctx, r.Data.RefreshToken, c.app.ClientID,
				c.unverified.Data.ClientSecret, s.accessTTL)
			if err != nil {
				return nil, grantError(err)
			}
			if issued != nil {
				return s.tokenAnswer(ctx, s.oneStepClient(c.app.ClientID, issued), issued, false)
			}
		}
		var err error
		if c, err = s.verified(ctx, c); err != nil {
			return nil, err
		}
	}
	issued, err := s.store.Refresh(ctx, r.Data.RefreshToken, c.app.ID, scopes, s.accessTTL)
	if err != nil {
		return nil, grantError(err)
	}
	return s.tokenAnswer(ctx, c, issued, scopes.Has(valet.ScopeOpenID))
}

// Revocation implements RFC 7009 for the authenticated client's tokens.
func (s *Server) Revocation(ctx context.Context, r *op.ClientRequest[oidc.RevocationRequest]) (*op.Response, error) {
	c, ok := r.Client.(*client)
	if !ok {
		return nil, oidc.ErrServerError()
	}
	if err := s.store.RevokeOAuthToken(ctx, c.app.ID, r.Data.Token); err != nil {
		if valet.ErrorCode(err) == valet.EFORBIDDEN {
			return nil, op.RevocationError(oidc.ErrUnauthorizedClient().WithDescription("the token was not issued to this app"))
		}
		return nil, op.RevocationError(oidc.ErrServerError().WithParent(err))
	}
	return op.NewResponse(nil), nil
}

// UserInfo answers for a vat_ token holding openid.
func (s *Server) UserInfo(ctx context.Context, r *op.Request[oidc.UserInfoRequest]) (*op.Response, error) {
	cred, err := s.store.Authenticate(ctx, r.Data.AccessToken)
	if err != nil || cred.Kind != valet.CredentialOAuth {
		return nil, op.NewStatusError(&oidc.Error{ErrorType: errInvalidToken,
			Description: "the access token is unknown, expired or revoked"}, http.StatusUnauthorized)
	}
	if !cred.Scopes.Has(valet.ScopeOpenID) {
		return nil, op.NewStatusError(&oidc.Error{ErrorType: errInsufficientScope,
			Description: "the token lacks the openid scope"}, http.StatusForbidden)
	}
	user, err := s.store.FindUserByID(ctx, cred.UserID)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	account, err := s.store.FindAccountByID(ctx, cred.AccountID)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	info := &oidc.UserInfo{}
	setUserClaims(info, user, cred.Scopes)
	info.AppendClaims("account", account.Name)
	return op.NewResponse(info), nil
}

// Introspect implements RFC 7662 for an authenticated app's own tokens.
func (s *Server) Introspect(ctx context.Context, r *op.Request[op.IntrospectionRequest]) (*op.Response, error) {
	cc := r.Data.ClientCredentials
	if cc == nil {
		return nil, oidc.ErrInvalidClient()
	}
	if err := (storage{s}).AuthorizeClientIDSecret(ctx, cc.ClientID, cc.ClientSecret); err != nil {
		return nil, err
	}
	caller, err := (storage{s}).findApp(ctx, cc.ClientID)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	resp := &oidc.IntrospectionResponse{}
	// An app learns about its own tokens only: valet's API is the one
	// resource server, and another app's token is none of its business.
	cred, err := s.store.Authenticate(ctx, r.Data.Token)
	if err != nil || cred.Kind != valet.CredentialOAuth || cred.AppID != caller.ID {
		return op.NewResponse(resp), nil
	}
	resp.ClientID = caller.ClientID
	account, err := s.store.FindAccountByID(ctx, cred.AccountID)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	resp.Active = true
	resp.Scope = oidc.SpaceDelimitedArray(strings.Fields(cred.Scopes.String()))
	resp.Subject = strconv.FormatInt(cred.UserID, 10)
	resp.TokenType = oidc.BearerToken
	resp.Expiration = oidc.FromTime(cred.ExpiresAt)
	resp.Issuer = s.issuer
	resp.Claims = map[string]any{"account": account.Name}
	out := op.NewResponse(resp)
	out.Header = http.Header{"Cache-Control": {"no-store"}}
	return out, nil
}

func writeErrorPage(w http.ResponseWriter, status int, code, description string) {
	h := w.Header()
	h.Del("Location")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if description == "" {
		description = "The request could not be completed."
	}
	_, _ = fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Authorization error</title></head>
<body><main><h1>This app sent an invalid request</h1><p>%s</p><p>Error: <code>%s</code></p>
<p>Please go back to the app and try again, or contact its developer.</p></main></body></html>`,
		html.EscapeString(description), html.EscapeString(code))
}

// RunJanitor purges expired codes and tokens every interval, in bounded
// batches, until ctx is done.
func (s *Server) RunJanitor(ctx context.Context, every time.Duration) {
	const batch = 1000
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := s.store.PurgeOAuth(ctx, batch)
			if err != nil {
				if ctx.Err() == nil {
					slog.ErrorContext(ctx, "authserver: purging expired tokens", "err", err)
				}
				break
			}
			if n < batch {
				break
			}
		}
	}
}
