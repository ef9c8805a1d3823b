package authserver

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/valethq/valet"
)

// authRequest is an authorization request between /oauth/authorize and the
// code. It is never stored: its id is the request itself, sealed with
// AES-GCM, so a flow writes to the database only at consent and at code
// redemption (DESIGN.md §5).
type authRequest struct {
	ClientID      string                   `json:"c"`
	RedirectURI   string                   `json:"r"`
	State         string                   `json:"s,omitempty"`
	Nonce         string                   `json:"n,omitempty"`
	Scopes        []string                 `json:"sc"`
	ResponseType  oidc.ResponseType        `json:"rt"`
	ResponseMode  oidc.ResponseMode        `json:"rm,omitempty"`
	Challenge     string                   `json:"cc,omitempty"`
	ChallengeMeth oidc.CodeChallengeMethod `json:"cm,omitempty"`
	AccountHint   string                   `json:"a,omitempty"`
	Expires       int64                    `json:"e"`

	// prompt and max_age (OpenID Connect Core §3.1.2.1; prompt.go).
	NoPrompt   bool   `json:"pn,omitempty"` // prompt=none
	AskConsent bool   `json:"pc,omitempty"` // prompt=consent or select_account
	MaxAge     *int64 `json:"ma,omitempty"` // seconds; prompt=login is 0
	Requested  int64  `json:"t,omitempty"`  // when, with MaxAge (microseconds)
	// HintUser is the user an id_token_hint named (its verified subject).
	HintUser string `json:"hu,omitempty"`

	// Set once the person approved (the id handed to the callback). The
	// code is minted at approval and travels sealed, so replaying the
	// callback only re-sends that one single-use code to the registered
	// redirect URI; it never mints another.
	UserID    int64  `json:"u,omitempty"`
	GrantID   int64  `json:"g,omitempty"`
	AuthTime  int64  `json:"at,omitempty"`
	AccountID int64  `json:"ac,omitempty"`
	Code      string `json:"cd,omitempty"`

	id string
}

var _ interface {
	GetID() string
	Done() bool
} = (*authRequest)(nil)

func (a *authRequest) GetID() string         { return a.id }
func (a *authRequest) GetACR() string        { return "" }
func (a *authRequest) GetAMR() []string      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string { return []string{a.ClientID} }
func (a *authRequest) GetAuthTime() time.Time {
	if a.AuthTime == 0 {
		return time.Time{}
	}
	return time.UnixMicro(a.AuthTime).UTC()
}
func (a *authRequest) GetClientID() string { return a.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.Challenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.Challenge, Method: a.ChallengeMeth}
}
func (a *authRequest) GetNonce() string                   { return a.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.Scopes }
func (a *authRequest) GetState() string                   { return a.State }
func (a *authRequest) GetSubject() string {
	if a.UserID == 0 {
		return ""
	}
	return strconv.FormatInt(a.UserID, 10)
}
func (a *authRequest) Done() bool { return a.Code != "" }

func (s *Server) seal(a *authRequest) (string, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	sealed, err := valet.SealKey(s.requestKey, b)
	if err != nil {
		return "", err
	}
	a.id = base64.RawURLEncoding.EncodeToString(sealed)
	return a.id, nil
}

// unseal opens a request id; a forged, corrupt or expired one is ENOTFOUND.
func (s *Server) unseal(id string) (*authRequest, error) {
	notFound := valet.Errorf(valet.ENOTFOUND, "This authorization request is unknown or has expired. Please start again from the app.")
	if len(id) > 8192 {
		return nil, notFound
	}
	sealed, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		return nil, notFound
	}
	b, err := valet.OpenKey(s.requestKey, sealed)
	if err != nil {
		return nil, notFound
	}
	a := &authRequest{}
	if err := json.Unmarshal(b, a); err != nil {
		return nil, notFound
	}
	if !s.clock.Now().Before(time.UnixMicro(a.Expires)) {
		return nil, notFound
	}
	a.id = id
	return a, nil
}
