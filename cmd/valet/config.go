package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/server"
)

// Config is everything a valet command is configured with. It is built as
// DefaultConfig, then the VALET_* environment (LoadEnv), then flags
// (ParseFlags), then checked by Validate. This file is the only place that
// reads the environment.
type Config struct {
	// Addr is the TCP address serve and demo listen on.
	Addr string
	// DB is a SQLite file path or a postgres:// DSN.
	DB string
	// Issuer is the public base URL; "" means http:// + the address listened on.
	Issuer string
	// LogFormat is "text" or "json"; LogLevel filters log records.
	LogFormat string
	LogLevel  slog.Level
	// JSON makes commands print their results (and errors) as JSON.
	JSON bool
	// ShutdownTimeout bounds the graceful shutdown after SIGINT/SIGTERM.
	ShutdownTimeout time.Duration
	// Rate limits and sessions, handed to the server.
	APIKeyLimit server.RateLimit
	OAuthLimit  server.RateLimit
	SignInLimit server.RateLimit
	SessionTTL  time.Duration
	// Token lifetimes of the authorization server: access tokens, and
	// refresh tokens unused (idle) and from their code on (absolute).
	AccessTokenTTL, RefreshIdleTTL, RefreshAbsoluteTTL time.Duration
	// Password is the fallback for the admin commands' password flags, so a
	// script can pass it as VALET_PASSWORD(_FILE) instead of on the command
	// line, where other users of the machine could read it.
	Password string
	// Secret (VALET_SECRET) seals the ID token signing keys in the store;
	// without it the OAuth authorization server is off.
	Secret string
	// DebugAddr, when set, is a loopback address serving Go's profiler
	// (/debug/pprof/) for operators; off by default.
	DebugAddr string
	// WebhookAllowPrivate lets webhooks be delivered to loopback and
	// private addresses (the demo's hub; receivers on the same network).
	WebhookAllowPrivate bool
	// Hub configures valet hub, the integration hub (hub.go).
	Hub HubConfig
}

// DefaultConfig returns the defaults: a local SQLite file on 127.0.0.1:8080
// and the server's (Gorgias's) rate limits.
func DefaultConfig() Config {
	sc := server.DefaultConfig()
	return Config{
		Addr:               "127.0.0.1:8080",
		DB:                 "valet.db",
		LogFormat:          "text",
		LogLevel:           slog.LevelInfo,
		ShutdownTimeout:    15 * time.Second,
		APIKeyLimit:        sc.APIKeyLimit,
		OAuthLimit:         sc.OAuthLimit,
		SignInLimit:        sc.SignInLimit,
		SessionTTL:         sc.SessionTTL,
		AccessTokenTTL:     valet.DefaultAccessTTL,
		RefreshIdleTTL:     valet.RefreshIdleTTL,
		RefreshAbsoluteTTL: valet.RefreshAbsoluteTTL,
		Hub:                HubConfig{Addr: defaultHubAddr, DB: defaultHubDB},
	}
}

// envVars documents every variable LoadEnv reads, for the usage text and the
// README. Secrets (marked) may also be given as NAME_FILE, a file holding the
// value, so they stay out of process listings and shell history.
var envVars = []struct {
	name, flag, help string
	secret           bool
}{
	{"VALET_ADDR", "addr", "address to listen on", false},
	{"VALET_DB", "db", "SQLite file or postgres:// DSN", true},
	{"VALET_ISSUER", "issuer", "public base URL", false},
	{"VALET_LOG_FORMAT", "log-format", "text or json", false},
	{"VALET_LOG_LEVEL", "log-level", "debug, info, warn or error", false},
	{"VALET_SHUTDOWN_TIMEOUT", "shutdown-timeout", "graceful shutdown bound", false},
	{"VALET_API_KEY_RATE_LIMIT", "api-key-rate-limit", "API key calls per account, N/duration", false},
	{"VALET_OAUTH_RATE_LIMIT", "oauth-rate-limit", "OAuth app calls per account, N/duration", false},
	{"VALET_SIGN_IN_RATE_LIMIT", "sign-in-rate-limit", "failed sign-ins per email and address, N/duration", false},
	{"VALET_SESSION_TTL", "session-ttl", "how long a browser stays signed in", false},
	{"VALET_ACCESS_TOKEN_TTL", "access-token-ttl", "OAuth access token lifetime", false},
	{"VALET_REFRESH_IDLE_TTL", "refresh-idle-ttl", "how long an unused refresh token lives", false},
	{"VALET_REFRESH_ABSOLUTE_TTL", "refresh-absolute-ttl", "how long refresh rotations may go on from a code", false},
	{"VALET_PASSWORD", "password / owner-password", "admin commands' password", true},
	{"VALET_SECRET", "secret", "server secret (16+ bytes) sealing signing keys; enables OAuth", true},
	{"VALET_DEBUG_ADDR", "debug-addr", "loopback address serving /debug/pprof/ (off when empty)", false},
	{"VALET_HUB_ADDR", "addr (hub)", "address the hub listens on", false},
	{"VALET_HUB_DB", "db (hub)", "the hub's SQLite file or postgres:// DSN", true},
	{"VALET_HUB_HELPDESK", "helpdesk (hub)", "the helpdesk's issuer URL", false},
	{"VALET_HUB_CLIENT_ID", "client-id (hub)", "the hub's client_id at the helpdesk", false},
	{"VALET_HUB_CLIENT_SECRET", "client-secret (hub)", "the hub's client secret", true},
	{"VALET_HUB_PUBLIC_URL", "public-url (hub)", "the hub's public base URL", false},
	{"VALET_HUB_SCOPES", "scopes (hub)", "scopes Connect asks for, space-separated", false},
	{"VALET_HUB_KEY", "(hub)", "key (32+ bytes) encrypting the hub's tokens at rest", true},
	{"VALET_HUB_OLD_KEYS", "old-key (hub rotate-key)", "earlier hub keys, comma-separated, until rotate-key", true},
}

// LoadEnv applies the VALET_* variables that getenv returns non-empty;
// readFile reads the NAME_FILE variants of secrets. Errors name the
// variable.
func (c *Config) LoadEnv(getenv func(string) string, readFile func(string) ([]byte, error)) error {
	var errs []error
	str := func(name string, dst *string, secret bool) {
		v := getenv(name)
		if secret {
			if path := getenv(name + "_FILE"); path != "" {
				if v != "" {
					errs = append(errs, fmt.Errorf("set %s or %s_FILE, not both", name, name))
					return
				}
				b, err := readFile(path)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s_FILE: %w", name, err))
					return
				}
				v = strings.TrimRight(string(b), "\r\n")
			}
		}
		if v != "" {
			*dst = v
		}
	}
	parsed := func(name string, set func(string) error) {
		if v := getenv(name); v != "" {
			if err := set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	}
	str("VALET_ADDR", &c.Addr, false)
	str("VALET_DB", &c.DB, true)
	str("VALET_ISSUER", &c.Issuer, false)
	str("VALET_LOG_FORMAT", &c.LogFormat, false)
	str("VALET_PASSWORD", &c.Password, true)
	str("VALET_SECRET", &c.Secret, true)
	str("VALET_DEBUG_ADDR", &c.DebugAddr, false)
	str("VALET_HUB_ADDR", &c.Hub.Addr, false)
	str("VALET_HUB_DB", &c.Hub.DB, true)
	str("VALET_HUB_HELPDESK", &c.Hub.Helpdesk, false)
	str("VALET_HUB_CLIENT_ID", &c.Hub.ClientID, false)
	str("VALET_HUB_CLIENT_SECRET", &c.Hub.ClientSecret, true)
	str("VALET_HUB_PUBLIC_URL", &c.Hub.PublicURL, false)
	str("VALET_HUB_SCOPES", &c.Hub.Scopes, false)
	str("VALET_HUB_KEY", &c.Hub.Key, true)
	str("VALET_HUB_OLD_KEYS", &c.Hub.OldKeys, true)
	parsed("VALET_LOG_LEVEL", func(v string) error { return c.LogLevel.UnmarshalText([]byte(v)) })
	parsed("VALET_SHUTDOWN_TIMEOUT", durationValue{&c.ShutdownTimeout}.Set)
	parsed("VALET_SESSION_TTL", durationValue{&c.SessionTTL}.Set)
	parsed("VALET_ACCESS_TOKEN_TTL", durationValue{&c.AccessTokenTTL}.Set)
	parsed("VALET_REFRESH_IDLE_TTL", durationValue{&c.RefreshIdleTTL}.Set)
	parsed("VALET_REFRESH_ABSOLUTE_TTL", durationValue{&c.RefreshAbsoluteTTL}.Set)
	parsed("VALET_API_KEY_RATE_LIMIT", rateLimitValue{&c.APIKeyLimit}.Set)
	parsed("VALET_OAUTH_RATE_LIMIT", rateLimitValue{&c.OAuthLimit}.Set)
	parsed("VALET_SIGN_IN_RATE_LIMIT", rateLimitValue{&c.SignInLimit}.Set)
	parsed("VALET_WEBHOOK_ALLOW_PRIVATE", func(v string) (err error) {
		c.WebhookAllowPrivate, err = strconv.ParseBool(v)
		return err
	})
	return errors.Join(errs...)
}

// dbFlag registers --db, accepted by every command.
func (c *Config) dbFlag(fs *flag.FlagSet) {
	fs.StringVar(&c.DB, "db", c.DB, "SQLite file path, or a postgres:// DSN (env VALET_DB)")
}

// outputFlags registers --json and the log flags.
func (c *Config) outputFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.JSON, "json", c.JSON, "print results and errors as JSON")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json (env VALET_LOG_FORMAT)")
	fs.TextVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error (env VALET_LOG_LEVEL)")
}

// serveFlags registers the flags of serve and demo.
func (c *Config) serveFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "address to listen on (env VALET_ADDR)")
	fs.StringVar(&c.Issuer, "issuer", c.Issuer, "public base URL (env VALET_ISSUER; default http:// + the address)")
	fs.Var(durationValue{&c.ShutdownTimeout}, "shutdown-timeout", "how long a graceful shutdown may take (env VALET_SHUTDOWN_TIMEOUT)")
	fs.Var(rateLimitValue{&c.APIKeyLimit}, "api-key-rate-limit", "API calls per account with API keys, as N/duration (env VALET_API_KEY_RATE_LIMIT)")
	fs.Var(rateLimitValue{&c.OAuthLimit}, "oauth-rate-limit", "API calls per account with OAuth tokens, as N/duration (env VALET_OAUTH_RATE_LIMIT)")
	fs.Var(rateLimitValue{&c.SignInLimit}, "sign-in-rate-limit", "failed sign-ins per email and per address, as N/duration (env VALET_SIGN_IN_RATE_LIMIT)")
	fs.Var(durationValue{&c.SessionTTL}, "session-ttl", "how long a browser stays signed in (env VALET_SESSION_TTL)")
	fs.Var(durationValue{&c.AccessTokenTTL}, "access-token-ttl", "OAuth access token lifetime (env VALET_ACCESS_TOKEN_TTL)")
	fs.Var(durationValue{&c.RefreshIdleTTL}, "refresh-idle-ttl", "how long an unused refresh token lives (env VALET_REFRESH_IDLE_TTL)")
	fs.Var(durationValue{&c.RefreshAbsoluteTTL}, "refresh-absolute-ttl", "how long refresh rotations may go on from one authorization (env VALET_REFRESH_ABSOLUTE_TTL)")
	fs.StringVar(&c.Secret, "secret", c.Secret, "server secret sealing signing keys; enables OAuth (env VALET_SECRET, better VALET_SECRET_FILE)")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "loopback address serving Go's profiler at /debug/pprof/, e.g. 127.0.0.1:6060 (env VALET_DEBUG_ADDR; off by default)")
	fs.BoolVar(&c.WebhookAllowPrivate, "webhook-allow-private", c.WebhookAllowPrivate, "deliver webhooks to loopback and private addresses too (env VALET_WEBHOOK_ALLOW_PRIVATE)")
}

// Validate checks the configuration and normalises the issuer.
func (c *Config) Validate() error {
	var p []string
	if host, port, err := net.SplitHostPort(c.Addr); err != nil {
		p = append(p, fmt.Sprintf("--addr %q: want host:port", c.Addr))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p = append(p, fmt.Sprintf("--addr %q: bad port", c.Addr))
	} else {
		_ = host // an empty host listens on every interface, which is allowed
	}
	if c.DebugAddr != "" && !loopbackAddr(c.DebugAddr) {
		// Profiles show the command line (a --secret on it) and memory.
		p = append(p, fmt.Sprintf("--debug-addr %q: want a loopback host:port, such as 127.0.0.1:6060", c.DebugAddr))
	}
	if strings.TrimSpace(c.DB) == "" {
		p = append(p, "--db is required")
	}
	if c.Issuer != "" {
		u, err := url.Parse(c.Issuer)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			p = append(p, fmt.Sprintf("--issuer %q: want an absolute http(s) URL without query, fragment or user", c.Issuer))
		}
		c.Issuer = strings.TrimRight(c.Issuer, "/")
	}
	if c.Secret != "" && len(c.Secret) < 16 {
		p = append(p, "VALET_SECRET must be at least 16 bytes")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		p = append(p, fmt.Sprintf("--log-format %q: want text or json", c.LogFormat))
	}
	if c.ShutdownTimeout <= 0 {
		p = append(p, "--shutdown-timeout must be positive")
	}
	if c.SessionTTL <= 0 {
		p = append(p, "--session-ttl must be positive")
	}
	if c.AccessTokenTTL < time.Minute {
		p = append(p, "--access-token-ttl must be at least 1m")
	}
	if c.RefreshIdleTTL < time.Minute || c.RefreshAbsoluteTTL < c.RefreshIdleTTL {
		p = append(p, "--refresh-idle-ttl must be at least 1m and --refresh-absolute-ttl at least as long")
	}
	for name, l := range map[string]server.RateLimit{"api-key-rate-limit": c.APIKeyLimit,
		"oauth-rate-limit": c.OAuthLimit, "sign-in-rate-limit": c.SignInLimit} {
		if l.Requests <= 0 || l.Per <= 0 {
			p = append(p, "--"+name+" must be a positive N/duration")
		}
	}
	if len(p) > 0 {
		return usageErrorf("invalid configuration: %s", strings.Join(p, "; "))
	}
	return nil
}

// loopbackAddr reports whether addr is host:port with a loopback host
// (an IP address, or localhost).
func loopbackAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServerConfig is the server's share of the configuration; issuer is the
// resolved public URL.
func (c *Config) ServerConfig(issuer string) server.Config {
	sc := server.DefaultConfig()
	sc.Issuer = issuer
	sc.APIKeyLimit = c.APIKeyLimit
	sc.OAuthLimit = c.OAuthLimit
	sc.SignInLimit = c.SignInLimit
	sc.SessionTTL = c.SessionTTL
	return sc
}

// isPostgres tells a PostgreSQL DSN from a SQLite path, as sqlstore.Open does.
func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// redactDSN hides a PostgreSQL password so the DSN can be logged and printed.
func redactDSN(dsn string) string {
	if !isPostgres(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable DSN)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// rateLimitValue is a flag.Value for "N/duration", e.g. 40/20s.
type rateLimitValue struct{ l *server.RateLimit }

func (v rateLimitValue) String() string {
	if v.l == nil {
		return ""
	}
	return fmt.Sprintf("%d/%s", v.l.Requests, shortDuration(v.l.Per))
}

func (v rateLimitValue) Set(s string) error {
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return errors.New("want N/duration, e.g. 40/20s")
	}
	requests, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || requests <= 0 {
		return errors.New("want a positive request count before the /")
	}
	d, err := time.ParseDuration(strings.TrimSpace(per))
	if err != nil || d <= 0 {
		return errors.New("want a positive duration after the /, e.g. 20s")
	}
	*v.l = server.RateLimit{Requests: requests, Per: d}
	return nil
}

// durationValue is flag.Duration on an existing field, with short output.
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return shortDuration(*v.d)
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 15s or 2h")
	}
	*v.d = d
	return nil
}

// shortDuration prints 5m rather than 5m0s and 336h rather than 336h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
