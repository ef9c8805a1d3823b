package hub

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/valethq/valet"
)

// The hub's web app: "Sign in with valet" (auth.go), Connect helpdesk
// (connect.go), the dashboard and connection pages (dashboard.go). This
// file holds what they share: configuration, routes, security headers,
// cookies, rendering and error pages.

// Config configures the hub's web app. cmd/valet builds it; no field is
// read from the environment here.
type Config struct {
	// PublicURL is the hub's own base URL, as browsers reach it: the
	// redirect URIs registered with the helpdesk are PublicURL +
	// SignInCallbackPath and PublicURL + ConnectCallbackPath. Cookies are
	// Secure when it is https.
	PublicURL string
	// Helpdesk is the helpdesk's issuer URL (valet's --issuer).
	Helpdesk string
	// ClientID and ClientSecret are the hub's app registration at the
	// helpdesk (a confidential app).
	ClientID, ClientSecret string
	// Scopes are what Connect asks for; nil means DefaultConnectScopes.
	Scopes []string
	// SessionTTL is how long a browser stays signed in (default 14 days).
	SessionTTL time.Duration
	// CookieKey (32+ bytes) seals the short-lived flow and flash cookies
	// and keys the CSRF tokens. Hub processes behind one address need the
	// same key; empty means a random key per process (flows in progress
	// then fail across a restart).
	CookieKey []byte
	// HTTPClient calls the helpdesk (discovery, token endpoint, API);
	// nil means one with a 30 s timeout.
	HTTPClient *http.Client
	Clock      valet.Clock
	Logger     *slog.Logger
}

// DefaultConnectScopes is what Connect helpdesk asks for: enough to read
// and answer tickets, keep the connection alive (offline) and register a
// webhook (integrations:write).
var DefaultConnectScopes = []string{"offline", "account:read", "users:read", "tickets:read", "tickets:write",
	"customers:read", "events:read", "integrations:read", "integrations:write"}

// SignInScopes is what "Sign in with valet" asks for: who the person is,
// nothing of the helpdesk's data.
var SignInScopes = []string{"openid", "email", "profile"}

// The callbacks registered with the helpdesk, under Config.PublicURL.
const (
	SignInCallbackPath  = "/signin/callback"
	ConnectCallbackPath = "/connect/callback"
)

// PublicBase returns PublicURL without a trailing slash.
func (c Config) PublicBase() string { return strings.TrimRight(c.PublicURL, "/") }

// SignInRedirectURL is the redirect URI of "Sign in with valet".
func (c Config) SignInRedirectURL() string { return c.PublicBase() + SignInCallbackPath }

// ConnectRedirectURL is the redirect URI of Connect helpdesk.
func (c Config) ConnectRedirectURL() string { return c.PublicBase() + ConnectCallbackPath }

// RedirectURIs are the redirect URIs to register for the hub's app.
func (c Config) RedirectURIs() []string {
	return []string{c.ConnectRedirectURL(), c.SignInRedirectURL()}
}

// AppScopes are the scopes to allow the hub's app at the helpdesk: sign-in's
// and Connect's.
func (c Config) AppScopes() []string {
	out := append([]string(nil), SignInScopes...)
	for _, s := range c.connectScopes() {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (c Config) connectScopes() []string {
	if len(c.Scopes) > 0 {
		return c.Scopes
	}
	return DefaultConnectScopes
}

func (c Config) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// Providers returns the provider registry holding the hub's registration
// at the valet helpdesk, for NewTokens and NewServer to share.
func (c Config) Providers() *Providers {
	return &Providers{HTTP: c.httpClient(), Clients: map[string]Client{
		ProviderValet: {ID: c.ClientID, Secret: c.ClientSecret, RedirectURL: c.ConnectRedirectURL()}}}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var p []string
	for name, v := range map[string]string{"public URL": c.PublicURL, "helpdesk URL": c.Helpdesk} {
		u, err := url.Parse(v)
		if v == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			p = append(p, fmt.Sprintf("the %s %q must be an absolute http(s) URL", name, v))
		}
	}
	if c.ClientID == "" {
		p = append(p, "the client id is required")
	}
	if len(c.CookieKey) > 0 && len(c.CookieKey) < 32 {
		p = append(p, "the cookie key must be at least 32 bytes")
	}
	if len(p) > 0 {
		return fmt.Errorf("hub: %s", strings.Join(p, "; "))
	}
	return nil
}

// EventHooks is what the web app needs from the webhook side (Events):
// a webhook registered on connect, removed on disconnect, and the
// receiver of its deliveries, mounted at POST /webhooks/{id}.
type EventHooks interface {
	Register(ctx context.Context, conn *valet.Connection) error
	Unregister(ctx context.Context, conn *valet.Connection) error
	http.Handler
}

var _ EventHooks = (*Events)(nil)

// Deps are the parts the web app works with.
type Deps struct {
	Store valet.HubStore
	Vault *Vault
	// Providers nil means cfg.Providers(); Tokens nil means NewTokens on
	// them with the default configuration.
	Providers *Providers
	Tokens    *Tokens
	// Events nil means no webhooks: connections live on polling alone.
	Events EventHooks
}

// Server is the hub's web app.
type Server struct {
	cfg       Config
	store     valet.HubStore
	vault     *Vault
	providers *Providers
	tokens    *Tokens
	events    EventHooks
	clock     valet.Clock
	log       *slog.Logger
	http      *http.Client

	secure     bool   // PublicURL is https: Secure, __Host- cookies
	formAction string // CSP form-action: ourselves and the helpdesk we redirect forms to
	cookies    cipher.AEAD
	csrfKey    []byte
	pages      map[string]*template.Template
	assets     map[string]string // file name -> URL with a content hash
	mux        *http.ServeMux

	oidcMu   sync.Mutex
	oidcProv *oidc.Provider
}

//go:embed ui/templates/*.html ui/static/*
var uiFS embed.FS

// pageNames are the templates every hub must have: NewServer fails at
// start if one is missing or does not parse.
var pageNames = []string{"signin", "dashboard", "connection", "error"}

// NewServer builds the web app.
func NewServer(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Vault == nil {
		return nil, errors.New("hub: NewServer needs a store and a vault")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 14 * 24 * time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = valet.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Helpdesk = strings.TrimRight(cfg.Helpdesk, "/")
	s := &Server{cfg: cfg, store: deps.Store, vault: deps.Vault, providers: deps.Providers, tokens: deps.Tokens,
		events: deps.Events, clock: cfg.Clock, log: cfg.Logger}
	if s.providers == nil {
		s.providers = cfg.Providers()
	}
	s.http = s.providers.httpClient()
	if s.tokens == nil {
		s.tokens = NewTokens(s.store, s.vault, s.providers, s.clock, s.log, TokensConfig{})
	}
	pub, _ := url.Parse(cfg.PublicURL)
	s.secure = pub.Scheme == "https"
	hd, _ := url.Parse(cfg.Helpdesk)
	s.formAction = "'self' " + hd.Scheme + "://" + hd.Host

	key := cfg.CookieKey
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	sealKey, err := valet.DeriveKey(key, "hub cookies")
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	if s.cookies, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	if s.csrfKey, err = valet.DeriveKey(key, "hub csrf"); err != nil {
		return nil, err
	}
	if err := s.parseUI(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Tokens returns the token keeper the server uses, for the refresher.
func (s *Server) Tokens() *Tokens { return s.tokens }

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /signin", s.signinPage)
	mux.HandleFunc("POST /signin", s.startSignIn)
	mux.HandleFunc("GET "+SignInCallbackPath, s.signInCallback)
	mux.Handle("POST /signout", s.page(s.signOut))
	mux.Handle("POST /connect", s.page(s.startConnect))
	mux.Handle("GET "+ConnectCallbackPath, s.page(s.connectCallback))
	mux.Handle("GET /connections/{id}", s.page(s.connectionPage))
	mux.Handle("POST /connections/{id}/disconnect", s.page(s.disconnect))
	mux.Handle("GET /activity.json", s.page(s.activityJSON))
	mux.HandleFunc("GET /static/{file}", s.static)
	if s.events != nil {
		mux.Handle("POST /webhooks/{id}", s.events)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c, ok := s.events.(prometheus.Collector); ok {
		reg.MustRegister(c)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.store.Ping(r.Context()); err != nil {
			s.log.Warn("readyz: store unreachable", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("store unreachable\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, notFound())
	})
	s.mux = mux
}

// Handler returns the web app with its middleware: request ids, security
// headers, panic recovery and a request log without query strings (the
// callbacks' carry authorization codes).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.clock.Now()
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		h := w.Header()
		h.Set("X-Request-Id", id)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// form-action names the helpdesk because the sign-in and connect
		// forms answer with a redirect to it, which browsers check too.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; form-action "+
			s.formAction+"; frame-ancestors 'none'; base-uri 'none'")
		// The callbacks' URLs hold codes: no other origin may see them.
		h.Set("Referrer-Policy", "same-origin")
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic", "panic", p, "path", r.URL.Path, "request_id", id)
				if rec.status == 0 {
					s.fail(rec, r, nil, fmt.Errorf("panic: %v", p))
				}
			}
			s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
				"took", s.clock.Now().Sub(start).String(), "request_id", id)
		}()
		s.mux.ServeHTTP(rec, r)
	})
}

type requestIDKey struct{}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// --- cookies ---

// Cookie names. Over https the __Host- prefix makes browsers refuse the
// cookie unless it is Secure, host-only and Path=/.
const (
	sessionCookie = "valet_hub_session"
	csrfCookie    = "valet_hub_csrf"  // double-submit token of the signed-out sign-in form
	flashCookie   = "valet_hub_flash" // a one-time message for the next page
)

func (s *Server) cookieName(base string) string {
	if s.secure {
		return "__Host-" + base
	}
	return base
}

// setCookie sets a cookie with the attributes of every hub cookie:
// HttpOnly, SameSite=Lax, Path=/, Secure over https. maxAge < 0 deletes.
func (s *Server) setCookie(w http.ResponseWriter, base, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: s.cookieName(base), Value: value, Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteLaxMode}
	switch {
	case maxAge < 0:
		c.MaxAge = -1
	case maxAge > 0:
		c.MaxAge = int(maxAge / time.Second)
		c.Expires = s.clock.Now().Add(maxAge)
	}
	http.SetCookie(w, c)
}

func (s *Server) cookie(r *http.Request, base string) string {
	c, err := r.Cookie(s.cookieName(base))
	if err != nil {
		return ""
	}
	return c.Value
}

// seal encrypts v (already encoded) for the cookie name with AES-256-GCM;
// the name is the associated data, so one cookie's value cannot stand in
// for another's.
func (s *Server) seal(name string, plaintext []byte) string {
	nonce := make([]byte, s.cookies.NonceSize())
	_, _ = rand.Read(nonce)
	return encodeCookie(s.cookies.Seal(nonce, nonce, plaintext, []byte(name)))
}

func (s *Server) unseal(name, value string) ([]byte, error) {
	raw, err := decodeCookie(value)
	if err != nil || len(raw) < s.cookies.NonceSize() {
		return nil, errors.New("hub: malformed sealed cookie")
	}
	n := s.cookies.NonceSize()
	return s.cookies.Open(nil, raw[:n], raw[n:], []byte(name))
}

// setFlash leaves a message for the next page the browser sees.
func (s *Server) setFlash(w http.ResponseWriter, msg string) {
	s.setCookie(w, flashCookie, s.seal(flashCookie, []byte(msg)), 5*time.Minute)
}

// takeFlash returns the pending message, if any, and clears it.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) string {
	v := s.cookie(r, flashCookie)
	if v == "" {
		return ""
	}
	s.setCookie(w, flashCookie, "", -1)
	msg, err := s.unseal(flashCookie, v)
	if err != nil {
		return ""
	}
	return string(msg)
}

// --- rendering ---

func (s *Server) parseUI() error {
	funcs := template.FuncMap{
		"asset": func(name string) string { return s.assets[name] },
		"when":  s.when,
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("dict: odd number of arguments")
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, errors.New("dict: keys must be strings")
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
		"primaryIf": func(b bool) string {
			if b {
				return "btn-primary"
			}
			return ""
		},
		"scopeText": func(sc string) string {
			if info, ok := valet.LookupScope(valet.Scope(sc)); ok {
				return info.Consent
			}
			return sc
		},
	}
	s.assets = make(map[string]string)
	static, err := fs.ReadDir(uiFS, "ui/static")
	if err != nil {
		return err
	}
	for _, e := range static {
		b, err := uiFS.ReadFile("ui/static/" + e.Name())
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		s.assets[e.Name()] = "/static/" + e.Name() + "?v=" + hex.EncodeToString(sum[:6])
	}
	s.pages = make(map[string]*template.Template)
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(uiFS, "ui/templates/layout.html", "ui/templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("hub: parse page %s: %w", name, err)
		}
		if t.Lookup("page") == nil {
			return fmt.Errorf("hub: page %s defines no \"page\" template", name)
		}
		s.pages[name] = t
	}
	return nil
}

// render executes a page into a buffer and writes it only then, so a
// template error becomes a clean error page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "page", data); err != nil {
		if name == "error" {
			s.log.Error("render the error page", "err", err, "request_id", requestID(r.Context()))
			http.Error(w, "Internal error", http.StatusInternalServerError)
			return
		}
		s.fail(w, r, nil, fmt.Errorf("hub: render %s: %w", name, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// static serves the embedded CSS and JavaScript. URLs carry a content
// hash, so browsers may keep them.
func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	name := path.Base(r.PathValue("file"))
	b, err := uiFS.ReadFile("ui/static/" + name)
	if err != nil {
		s.fail(w, r, nil, notFound())
		return
	}
	switch path.Ext(name) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	}
	w.Header().Set("Cache-Control", "public, max-age=86400")
	_, _ = w.Write(b)
}

// layout is what every page shows around its content.
type layout struct {
	Title    string
	User     *valet.HubUser // nil when signed out
	CSRF     string
	Flash    string
	Helpdesk string
}

func (s *Server) layout(w http.ResponseWriter, r *http.Request, sess *session, title string) layout {
	l := layout{Title: title, Flash: s.takeFlash(w, r), Helpdesk: s.cfg.Helpdesk}
	if sess != nil {
		l.User, l.CSRF = sess.user, sess.csrf
	}
	return l
}

// when formats a time for people: an absolute time and how far it is
// from now.
func (s *Server) when(t any) string {
	var tm time.Time
	switch v := t.(type) {
	case time.Time:
		tm = v
	case *time.Time:
		if v != nil {
			tm = *v
		}
	}
	if tm.IsZero() {
		return "never"
	}
	return tm.UTC().Format("2 Jan 15:04 UTC") + " (" + relative(s.clock.Now(), tm) + ")"
}

// relative says how far t is from now: "in 3h", "5m ago", "just now".
func relative(now, t time.Time) string {
	d := t.Sub(now)
	future := d > 0
	if !future {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		s = fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// --- errors ---

// pageErr is an error with what to tell the person: a status, a heading
// and a plain-words message, and optionally a button to try again. Err
// is for the log only.
type pageErr struct {
	Status  int
	Heading string
	Message string
	Retry   string // "signin" or "connect": which button to offer
	Err     error
}

func (e *pageErr) Error() string {
	if e.Err != nil {
		return e.Heading + ": " + e.Err.Error()
	}
	return e.Heading
}

func (e *pageErr) Unwrap() error { return e.Err }

func notFound() error {
	return &pageErr{Status: http.StatusNotFound, Heading: "Not found", Message: "There is nothing at this address."}
}

// errorPage is the error page's data.
type errorPage struct {
	layout
	Status    int
	Heading   string
	Message   string
	Retry     string
	RequestID string
}

// fail shows err as a readable page with its status. Internal errors are
// logged with the request id the page shows, never shown themselves.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	id := requestID(r.Context())
	p := errorPage{Status: http.StatusInternalServerError, Heading: "Something went wrong",
		Message: "The hub could not complete this request. Try again in a moment.", RequestID: id}
	var pe *pageErr
	var ve *valet.Error
	switch {
	case errors.As(err, &pe):
		p.Status, p.Heading, p.Message, p.Retry = pe.Status, pe.Heading, pe.Message, pe.Retry
	case errors.As(err, &ve) && ve.Code != valet.EINTERNAL:
		p.Status, p.Message = valet.HTTPStatus(ve.Code), valet.ErrorMessage(err)
		p.Heading = http.StatusText(p.Status)
	}
	if p.Status >= 500 {
		s.log.Error("request failed", "err", err, "path", r.URL.Path, "status", p.Status, "request_id", id)
	} else {
		s.log.Info("request refused", "err", err, "path", r.URL.Path, "status", p.Status, "request_id", id)
	}
	p.layout = s.layout(w, r, sess, p.Heading)
	s.render(w, r, p.Status, "error", p)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
