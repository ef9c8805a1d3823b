package hub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/valethq/valet"
)

// "Sign in with valet": OpenID Connect against the helpdesk (authorization
// code flow with PKCE, state and nonce in a sealed cookie, RFC 9207 iss
// checked, the ID token verified), then a hub session of our own. Also
// the session and CSRF plumbing every signed-in page uses.

// session is a signed-in browser.
type session struct {
	secret string
	user   *valet.HubUser
	csrf   string // the token every form of this session carries
}

// loadSession resolves the session cookie; nil (no error) when the browser
// is not signed in or its session ended.
func (s *Server) loadSession(ctx context.Context, r *http.Request) (*session, error) {
	secret := s.cookie(r, sessionCookie)
	if secret == "" || !valet.HasSecretPrefix(secret, valet.PrefixSession) || len(secret) > 200 {
		return nil, nil
	}
	u, err := s.store.HubSessionUser(ctx, secret)
	switch valet.ErrorCode(err) {
	case "":
		return &session{secret: secret, user: u, csrf: s.csrfToken(secret)}, nil
	case valet.EUNAUTHORIZED, valet.ENOTFOUND:
		return nil, nil
	}
	return nil, err
}

// csrfToken is the session's form token: an HMAC of the session secret,
// so it needs no storage, differs per session and cannot be computed
// without the hub's key.
func (s *Server) csrfToken(sessionSecret string) string {
	mac := hmac.New(sha256.New, s.csrfKey)
	mac.Write([]byte("session\x00" + sessionSecret))
	return encodeCookie(mac.Sum(nil))
}

// sessionHash binds a connect flow to the session that started it.
func sessionHash(secret string) string {
	sum := sha256.Sum256([]byte("hub session\x00" + secret))
	return encodeCookie(sum[:])
}

func errCSRF() error {
	return &pageErr{Status: http.StatusForbidden, Heading: "This form has expired",
		Message: "It was left open across a sign-out, or did not come from the hub. Go back, reload the page and try again."}
}

// checkCSRF verifies a parsed form's token against want, in constant time.
// Cross-site requests are refused whatever they carry.
func checkCSRF(r *http.Request, want string) error {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errCSRF()
	}
	got := r.PostFormValue("csrf")
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		return errCSRF()
	}
	return nil
}

// maxFormBytes bounds the hub's forms, which carry a few short fields.
const maxFormBytes = 64 << 10

func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return &pageErr{Status: http.StatusBadRequest, Heading: "Bad request", Message: "The form could not be read.", Err: err}
	}
	return nil
}

// pageFunc handles a request of a signed-in browser; an error it returns
// is shown as an error page.
type pageFunc func(w http.ResponseWriter, r *http.Request, sess *session) error

// page wraps a handler that needs a signed-in browser: without a session
// it sends the browser to sign in, and it checks the CSRF token of every
// POST.
func (s *Server) page(fn pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.loadSession(r.Context(), r)
		if err != nil {
			s.fail(w, r, nil, err)
			return
		}
		if sess == nil {
			if s.cookie(r, sessionCookie) != "" {
				s.setCookie(w, sessionCookie, "", -1)
			}
			if strings.HasSuffix(r.URL.Path, ".json") {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "signed out"})
				return
			}
			to := "/signin"
			// Come back after signing in, but never to a callback: its
			// code is single-use and its flow cookie is gone by then.
			if r.Method == http.MethodGet && r.URL.Path != ConnectCallbackPath {
				to += "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if err := parseForm(w, r); err != nil {
				s.fail(w, r, sess, err)
				return
			}
			if err := checkCSRF(r, sess.csrf); err != nil {
				s.fail(w, r, sess, err)
				return
			}
		}
		if err := fn(w, r, sess); err != nil {
			s.fail(w, r, sess, err)
		}
	})
}

// --- flows ---

// Flow cookies hold an authorization request in progress (state, nonce,
// PKCE verifier), sealed with AES-GCM: nothing is stored until the
// callback, and a browser can neither read nor forge them. One cookie per
// kind of flow; a second flow of the same kind in another tab replaces
// the first.
const (
	flowSignIn  = "valet_hub_signin"
	flowConnect = "valet_hub_connect"
	flowTTL     = 10 * time.Minute
)

type flow struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Session  string    `json:"h,omitempty"` // connect: sessionHash of the session that started it
	Next     string    `json:"r,omitempty"` // sign-in: where to go afterwards
	Account  string    `json:"a,omitempty"` // connect: the account asked for (Reconnect)
	Expires  time.Time `json:"e"`
}

func newFlow() *flow {
	return &flow{State: valet.NewSecret(""), Nonce: valet.NewSecret(""), Verifier: oauth2.GenerateVerifier()}
}

func (s *Server) saveFlow(w http.ResponseWriter, name string, f *flow) {
	f.Expires = s.clock.Now().Add(flowTTL)
	b, _ := json.Marshal(f)
	s.setCookie(w, name, s.seal(name, b), flowTTL)
}

var errNoFlow = errors.New("hub: no flow cookie, or an unreadable or expired one")

// takeFlow returns the flow of the cookie name and deletes the cookie: a
// flow is used once, whatever its outcome.
func (s *Server) takeFlow(w http.ResponseWriter, r *http.Request, name string) (*flow, error) {
	v := s.cookie(r, name)
	if v == "" {
		return nil, errNoFlow
	}
	s.setCookie(w, name, "", -1)
	b, err := s.unseal(name, v)
	if err != nil {
		return nil, errNoFlow
	}
	var f flow
	if err := json.Unmarshal(b, &f); err != nil || !s.clock.Now().Before(f.Expires) {
		return nil, errNoFlow
	}
	return &f, nil
}

// checkResponse checks an authorization response against the flow that
// started it: the state (which ties it to this browser), then the issuer
// (RFC 9207, which rules out a mix-up with another authorization server).
// It runs before anything else in the response is believed, errors
// included.
func checkResponse(q url.Values, f *flow, p *Provider) error {
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		return &pageErr{Status: http.StatusBadRequest, Heading: "This answer does not belong to your request",
			Message: "The helpdesk's answer carries a state that this browser did not send. Nothing was changed; start again."}
	}
	return checkIssuer(p, q.Get("iss"))
}

// checkIssuer applies RFC 9207: a provider that announces the iss
// parameter must send its own issuer; one that does not announce it may
// leave it out, but never send another.
func checkIssuer(p *Provider, iss string) error {
	want := p.Issuer
	if want == "" {
		if iss == "" {
			return nil
		}
		want = p.BaseURL
	}
	if iss != want {
		return &pageErr{Status: http.StatusBadRequest, Heading: "The answer came from the wrong server",
			Message: fmt.Sprintf("The authorization answer names the issuer %q, not %q. Nothing was changed.", truncate(iss, 200), want)}
	}
	return nil
}

// authError turns an error answer of the authorization endpoint into a
// page. retry says which flow the page offers to start again.
func authError(q url.Values, retry string) error {
	code := q.Get("error")
	switch code {
	case "":
		return nil
	case "access_denied":
		msg := "You did not allow the hub to sign you in. Nothing was shared."
		if retry == "connect" {
			msg = "You did not allow the hub to access your helpdesk. Nothing was connected."
		}
		return &pageErr{Status: http.StatusForbidden, Heading: "Access was not allowed", Message: msg, Retry: retry}
	}
	status := http.StatusBadRequest
	if code == "server_error" || code == "temporarily_unavailable" {
		status = http.StatusBadGateway
	}
	msg := "The helpdesk refused the request (" + truncate(code, 60) + ")"
	if d := q.Get("error_description"); d != "" {
		msg += ": " + truncate(d, 300)
	}
	return &pageErr{Status: status, Heading: "The helpdesk refused the request", Message: msg + ".", Retry: retry}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// clientCtx carries the hub's HTTP client to x/oauth2 and go-oidc.
func (s *Server) clientCtx(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, s.http), s.http)
}

// helpdesk resolves the valet helpdesk's provider template (discovery).
func (s *Server) helpdesk(ctx context.Context) (*Provider, error) {
	p, err := s.providers.Resolve(ctx, ProviderValet, s.cfg.Helpdesk, "")
	if err != nil {
		return nil, &pageErr{Status: http.StatusBadGateway, Heading: "The helpdesk cannot be reached",
			Message: "The hub could not read the helpdesk's OpenID configuration at " + s.cfg.Helpdesk + ". Try again in a moment.", Err: err}
	}
	return p, nil
}

// idVerifier returns the verifier of the helpdesk's ID tokens; the
// provider (discovery and signing keys) is fetched once.
func (s *Server) idVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	s.oidcMu.Lock()
	defer s.oidcMu.Unlock()
	if s.oidcProv == nil {
		p, err := oidc.NewProvider(s.clientCtx(ctx), s.cfg.Helpdesk)
		if err != nil {
			return nil, err
		}
		s.oidcProv = p
	}
	return s.oidcProv.Verifier(&oidc.Config{ClientID: s.cfg.ClientID, Now: s.clock.Now}), nil
}

// signinPage is GET /signin: the "Sign in with valet" button.
func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	sess, err := s.loadSession(r.Context(), r)
	if err != nil {
		s.fail(w, r, nil, err)
		return
	}
	if sess != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderSignin(w, r, http.StatusOK, r.URL.Query().Get("next"))
}

// signinData is the sign-in page's data.
type signinData struct {
	layout
	Next string
}

func (s *Server) renderSignin(w http.ResponseWriter, r *http.Request, status int, next string) {
	l := s.layout(w, r, nil, "Sign in")
	// Signed out there is no session to key the token on: a double-submit
	// cookie, which a cross-site page can neither read nor set.
	l.CSRF = s.cookie(r, csrfCookie)
	if len(l.CSRF) < 32 || len(l.CSRF) > 64 {
		l.CSRF = valet.NewSecret("")
		s.setCookie(w, csrfCookie, l.CSRF, 2*time.Hour)
	}
	if next = safeNext(next); next == "/" {
		next = ""
	}
	s.render(w, r, status, "signin", signinData{layout: l, Next: next})
}

// startSignIn is POST /signin: it sends the browser to the helpdesk's
// authorization endpoint.
func (s *Server) startSignIn(w http.ResponseWriter, r *http.Request) {
	if err := s.beginSignIn(w, r); err != nil {
		s.fail(w, r, nil, err)
	}
}

func (s *Server) beginSignIn(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	if err := checkCSRF(r, s.cookie(r, csrfCookie)); err != nil {
		return err
	}
	p, err := s.helpdesk(r.Context())
	if err != nil {
		return err
	}
	conf, err := s.providers.OAuth2(p, SignInScopes...)
	if err != nil {
		return err
	}
	conf.RedirectURL = s.cfg.SignInRedirectURL()
	f := newFlow()
	f.Next = safeNext(r.PostFormValue("next"))
	s.saveFlow(w, flowSignIn, f)
	http.Redirect(w, r, conf.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)), http.StatusSeeOther)
	return nil
}

// signInCallback is GET /signin/callback: the helpdesk's answer.
func (s *Server) signInCallback(w http.ResponseWriter, r *http.Request) {
	if err := s.finishSignIn(w, r); err != nil {
		s.fail(w, r, nil, err)
	}
}

func (s *Server) finishSignIn(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	f, err := s.takeFlow(w, r, flowSignIn)
	if err != nil {
		return &pageErr{Status: http.StatusBadRequest, Heading: "This sign-in has expired",
			Message: "It took longer than 10 minutes, or was started in another browser. Start again.", Retry: "signin", Err: err}
	}
	p, err := s.helpdesk(ctx)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := checkResponse(q, f, p); err != nil {
		return err
	}
	if err := authError(q, "signin"); err != nil {
		return err
	}
	code := q.Get("code")
	if code == "" {
		return &pageErr{Status: http.StatusBadRequest, Heading: "The sign-in answer is incomplete",
			Message: "The helpdesk's answer has no authorization code. Start again.", Retry: "signin"}
	}
	conf, err := s.providers.OAuth2(p, SignInScopes...)
	if err != nil {
		return err
	}
	conf.RedirectURL = s.cfg.SignInRedirectURL()
	tok, err := conf.Exchange(s.clientCtx(ctx), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return &pageErr{Status: http.StatusBadGateway, Heading: "The helpdesk did not complete the sign-in",
			Message: "Its token endpoint refused the authorization code" + oauthErrorText(err) + ". Start again.", Retry: "signin", Err: err}
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return &pageErr{Status: http.StatusBadGateway, Heading: "The helpdesk did not say who you are",
			Message: "Its answer has no ID token.", Retry: "signin"}
	}
	verifier, err := s.idVerifier(ctx)
	if err != nil {
		return &pageErr{Status: http.StatusBadGateway, Heading: "The helpdesk cannot be reached",
			Message: "The hub could not read the helpdesk's signing keys. Try again in a moment.", Err: err}
	}
	idt, err := verifier.Verify(s.clientCtx(ctx), raw)
	if err == nil && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		err = errors.New("hub: the ID token's nonce is not the one sent")
	}
	if err == nil && idt.AccessTokenHash != "" {
		err = idt.VerifyAccessToken(tok.AccessToken)
	}
	if err != nil {
		return &pageErr{Status: http.StatusBadGateway, Heading: "The sign-in could not be verified",
			Message: "The helpdesk's ID token failed verification (issuer, audience, signature, expiry or nonce). Start again.", Retry: "signin", Err: err}
	}
	var claims struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	}
	if err := idt.Claims(&claims); err != nil {
		return fmt.Errorf("hub: read the ID token's claims: %w", err)
	}
	u := &valet.HubUser{Issuer: idt.Issuer, Subject: idt.Subject, Email: claims.Email, Name: claims.Name}
	if err := s.store.UpsertHubUser(ctx, u); err != nil {
		return fmt.Errorf("hub: store the signed-in user: %w", err)
	}
	// A new session on every sign-in: a session id planted before it
	// (session fixation) is dropped.
	if old := s.cookie(r, sessionCookie); old != "" {
		_ = s.store.DeleteHubSession(ctx, old)
	}
	secret, err := s.store.CreateHubSession(ctx, u.ID, s.cfg.SessionTTL)
	if err != nil {
		return fmt.Errorf("hub: create a session: %w", err)
	}
	s.setCookie(w, sessionCookie, secret, s.cfg.SessionTTL)
	s.log.Info("signed in", "user", u.ID, "email", u.Email)
	s.setFlash(w, "Signed in as "+displayName(u)+".")
	http.Redirect(w, r, safeNext(f.Next), http.StatusSeeOther)
	return nil
}

// signOut is POST /signout.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request, sess *session) error {
	if err := s.store.DeleteHubSession(r.Context(), sess.secret); err != nil {
		return fmt.Errorf("hub: sign out: %w", err)
	}
	s.setCookie(w, sessionCookie, "", -1)
	s.setFlash(w, "Signed out of the hub.")
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}

// safeNext keeps a post-sign-in destination on this site: a local path,
// never "//host" or "/\host", which browsers treat as another host.
func safeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n\t") || len(next) > 1000 {
		return "/"
	}
	return next
}

func displayName(u *valet.HubUser) string {
	if u.Name != "" {
		return u.Name
	}
	return u.Email
}

// oauthErrorText names the OAuth error of a token endpoint answer, without
// its body.
func oauthErrorText(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return " (" + truncate(re.ErrorCode, 60) + ")"
	}
	return ""
}

func encodeCookie(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeCookie(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
