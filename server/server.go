package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/valethq/valet"
)

// RateLimit is a leaky bucket's capacity and the time it takes to drain.
type RateLimit struct {
	Requests int
	Per      time.Duration
}

// Config configures a Server. DefaultConfig gives the production defaults.
type Config struct {
	// Issuer is the public base URL (scheme, host, optional path). Cookies
	// are Secure when it is https.
	Issuer string
	// OAuthLimit and APIKeyLimit bound API calls per account and credential kind.
	OAuthLimit  RateLimit
	APIKeyLimit RateLimit
	// SignInLimit bounds failed sign-ins per account email and per client address.
	SignInLimit RateLimit
	// SessionTTL is how long a browser stays signed in.
	SessionTTL time.Duration
}

// DefaultConfig returns Gorgias's API limits and sane page settings.
func DefaultConfig() Config {
	return Config{
		Issuer:      "http://127.0.0.1:8080",
		OAuthLimit:  RateLimit{Requests: 80, Per: 20 * time.Second},
		APIKeyLimit: RateLimit{Requests: 40, Per: 20 * time.Second},
		SignInLimit: RateLimit{Requests: 10, Per: 5 * time.Minute},
		SessionTTL:  14 * 24 * time.Hour,
	}
}

// Server serves the helpdesk: REST API, web inbox and operations endpoints.
type Server struct {
	store  valet.Store
	cfg    Config
	log    *slog.Logger
	clock  valet.Clock
	reg    *prometheus.Registry
	reqs   *prometheus.CounterVec
	lat    *prometheus.HistogramVec
	mux    *http.ServeMux
	pages  *pageState
	api    *apiState
	secure bool
	oauth  OAuthProvider // nil: no authorization server
}

// Option changes a Server built by New.
type Option func(*Server)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithClock sets the clock (default: valet.SystemClock).
func WithClock(c valet.Clock) Option { return func(s *Server) { s.clock = c } }

// New builds a Server on store. It fails if a page template is missing.
func New(store valet.Store, cfg Config, opts ...Option) (*Server, error) {
	s := &Server{store: store, cfg: cfg, log: slog.Default(), clock: valet.SystemClock{},
		mux: http.NewServeMux(), secure: strings.HasPrefix(cfg.Issuer, "https://")}
	for _, o := range opts {
		o(s)
	}
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "valet_http_requests_total", Help: "HTTP requests by route and status.",
	}, []string{"route", "method", "status"})
	s.lat = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "valet_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method"})
	s.reg.MustRegister(s.reqs, s.lat)

	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	if err := s.registerAPI(s.mux); err != nil {
		return nil, err
	}
	s.registerOAuth(s.mux)
	if err := s.registerPages(s.mux); err != nil {
		_ = s.closeAPI(context.Background()) // stop the last-used flusher registerAPI started
		return nil, err
	}
	return s, nil
}

// Handler returns the root handler with logging, metrics, recovery and
// security headers around every route.
func (s *Server) Handler() http.Handler { return s.observe(s.mux) }

// Close stops background work (flushing API key last-used times).
func (s *Server) Close(ctx context.Context) error { return s.closeAPI(ctx) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.store.Ping(ctx); err != nil {
		s.log.ErrorContext(ctx, "readyz: store unreachable", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("store unreachable\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

type requestIDKey struct{}

// RequestID returns the id the server gave the request, for logs and error pages.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe is the outermost middleware. The mux must be called with the same
// *http.Request it gets, because the mux records the matched route pattern
// on it, which becomes the metrics label.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		h := w.Header()
		h.Set("X-Request-Id", id)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("Referrer-Policy", "same-origin")
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				s.log.ErrorContext(r.Context(), "panic", "panic", p, "path", r.URL.Path, "request_id", id)
				if rec.status == 0 {
					http.Error(rec, "internal error (request "+id+")", http.StatusInternalServerError)
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			s.reqs.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
			s.lat.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())
			level := slog.LevelDebug
			if rec.status >= 500 {
				level = slog.LevelError
			}
			s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "route", route,
				"status", rec.status, "duration", elapsed, "request_id", id)
		}()
		next.ServeHTTP(rec, r)
	})
}
