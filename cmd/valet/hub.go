package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/hub"
	"github.com/valethq/valet/sqlstore"
)

// valet hub: the integration hub's web app, token refresher, last-used
// flusher and event poller on a database of its own; and valet hub
// rotate-key, which re-encrypts every connection under the current key.

// HubConfig is the configuration of valet hub (Config.Hub).
type HubConfig struct {
	// Addr is where the hub listens.
	Addr string
	// DB is the hub's own database: a SQLite file or a postgres:// DSN.
	DB string
	// Helpdesk is the helpdesk's issuer URL.
	Helpdesk string
	// ClientID and ClientSecret are the hub's app registration there.
	ClientID, ClientSecret string
	// PublicURL is the hub's base URL as browsers and the helpdesk reach
	// it; "" means http:// + the address listened on.
	PublicURL string
	// Scopes (space-separated) are what Connect asks for; "" means
	// hub.DefaultConnectScopes.
	Scopes string
	// Key (VALET_HUB_KEY) seals tokens at rest; OldKeys (separated by
	// commas or newlines, so keys cannot contain either) still open what
	// older keys sealed, until rotate-key.
	Key     string
	OldKeys string
	// OldKey is rotate-key's --old-key, added to OldKeys.
	OldKey string
	// Off makes valet demo run without its hub (--no-hub).
	Off bool
}

// Hub defaults.
const (
	defaultHubAddr = "127.0.0.1:8090"
	defaultHubDB   = "valet-hub.db"
	// hubRefreshEvery is how often the refresher looks for tokens due;
	// each token is renewed minutes before it expires, so this only
	// bounds how late within that margin.
	hubRefreshEvery = 30 * time.Second
	// hubPollEvery is how often connections without a webhook are polled.
	hubPollEvery = 15 * time.Second
	// hubFlushEvery is how often last-used times go to the store.
	hubFlushEvery = 30 * time.Second
	// hubActivityRetention is how long the activity feed keeps an event.
	// It must outlast the helpdesk's 24 hours of webhook retries: the
	// feed's rows are also what de-duplicates a late redelivery.
	hubActivityRetention = 7 * 24 * time.Hour
	hubPurgeEvery        = time.Hour
)

// purgeHubActivity deletes the activity older than hubActivityRetention,
// in batches so the writer is never held long.
func purgeHubActivity(ctx context.Context, store valet.HubStore, now time.Time) (int, error) {
	const batch = 1000
	total := 0
	for {
		n, err := store.PurgeActivity(ctx, now.Add(-hubActivityRetention), batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}

// hubFlags registers the flags of valet hub.
func (c *Config) hubFlags(fs *flag.FlagSet) {
	h := &c.Hub
	fs.StringVar(&h.Addr, "addr", h.Addr, "address to listen on (env VALET_HUB_ADDR)")
	hubDBFlag(c, fs)
	fs.StringVar(&h.Helpdesk, "helpdesk", h.Helpdesk, "the helpdesk's issuer URL (env VALET_HUB_HELPDESK)")
	fs.StringVar(&h.ClientID, "client-id", h.ClientID, "the hub's client_id at the helpdesk (env VALET_HUB_CLIENT_ID)")
	fs.StringVar(&h.ClientSecret, "client-secret", h.ClientSecret, "its client secret (env VALET_HUB_CLIENT_SECRET, better VALET_HUB_CLIENT_SECRET_FILE)")
	fs.StringVar(&h.PublicURL, "public-url", h.PublicURL, "the hub's public base URL (env VALET_HUB_PUBLIC_URL; default http:// + the address)")
	fs.StringVar(&h.Scopes, "scopes", h.Scopes, "space-separated scopes Connect asks for (env VALET_HUB_SCOPES; default: "+strings.Join(hub.DefaultConnectScopes, " ")+")")
	fs.Var(durationValue{&c.ShutdownTimeout}, "shutdown-timeout", "how long a graceful shutdown may take (env VALET_SHUTDOWN_TIMEOUT)")
}

func hubDBFlag(c *Config, fs *flag.FlagSet) {
	fs.StringVar(&c.Hub.DB, "db", c.Hub.DB, "the hub's database: SQLite file path, or a postgres:// DSN (env VALET_HUB_DB)")
}

// validate checks the hub's configuration; serving needs the helpdesk
// and the client registration, rotate-key only the database and keys.
func (h *HubConfig) validate(serving bool) error {
	var p []string
	if serving {
		if _, port, err := net.SplitHostPort(h.Addr); err != nil {
			p = append(p, fmt.Sprintf("--addr %q: want host:port", h.Addr))
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			p = append(p, fmt.Sprintf("--addr %q: bad port", h.Addr))
		}
		if h.Helpdesk == "" {
			p = append(p, "--helpdesk (or VALET_HUB_HELPDESK) is required: the helpdesk's issuer URL")
		} else if !absoluteURL(h.Helpdesk) {
			p = append(p, fmt.Sprintf("--helpdesk %q: want an absolute http(s) URL without query or fragment", h.Helpdesk))
		}
		h.Helpdesk = strings.TrimRight(h.Helpdesk, "/")
		if h.ClientID == "" {
			p = append(p, "--client-id (or VALET_HUB_CLIENT_ID) is required")
		}
		if h.ClientSecret == "" {
			p = append(p, "--client-secret (or VALET_HUB_CLIENT_SECRET) is required: the hub is a confidential app")
		}
		for _, sc := range strings.Fields(h.Scopes) {
			if _, ok := valet.LookupScope(valet.Scope(sc)); !ok {
				p = append(p, fmt.Sprintf("--scopes: unknown scope %q", sc))
			}
		}
		if h.PublicURL != "" {
			if !absoluteURL(h.PublicURL) {
				p = append(p, fmt.Sprintf("--public-url %q: want an absolute http(s) URL without query or fragment", h.PublicURL))
			}
			h.PublicURL = strings.TrimRight(h.PublicURL, "/")
		}
	}
	if strings.TrimSpace(h.DB) == "" {
		p = append(p, "--db is required")
	}
	if h.Key == "" {
		p = append(p, "VALET_HUB_KEY (or VALET_HUB_KEY_FILE) is required: the key that encrypts tokens at rest")
	} else if len(h.Key) < hub.MinKeyLength {
		p = append(p, fmt.Sprintf("VALET_HUB_KEY must be at least %d bytes", hub.MinKeyLength))
	}
	for _, k := range h.oldKeys() {
		if len(k) < hub.MinKeyLength {
			p = append(p, fmt.Sprintf("every old key (VALET_HUB_OLD_KEYS, --old-key; separated by commas or newlines) must be at least %d bytes", hub.MinKeyLength))
			break
		}
	}
	if len(p) > 0 {
		return usageErrorf("invalid configuration: %s", strings.Join(p, "; "))
	}
	return nil
}

func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}

// oldKeys splits OldKeys (commas or newlines, as a key file has them) and
// adds OldKey.
func (h *HubConfig) oldKeys() []string {
	var out []string
	for _, k := range strings.FieldsFunc(h.OldKeys+"\n"+h.OldKey, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if k = strings.TrimSpace(k); k != "" && k != h.Key {
			out = append(out, k)
		}
	}
	return out
}

// vault builds the hub's vault: the current key seals, the old ones open.
func (h *HubConfig) vault() (*hub.Vault, error) {
	return hub.NewVault(append([]string{h.Key}, h.oldKeys()...)...)
}

// openHubStore opens the hub's database, applying its migrations.
func openHubStore(ctx context.Context, dsn string) (*sqlstore.HubStore, error) {
	store, err := sqlstore.OpenHub(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open the hub database %s: %w", redactDSN(dsn), err)
	}
	return store, nil
}

func (m *Main) runHub(ctx context.Context) error {
	log := newLogger(&m.Config, m.Stderr)
	if m.OwnsProcess {
		tuneGC(log)
	}
	h := m.Config.Hub
	store, err := openHubStore(ctx, h.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	ln, err := net.Listen("tcp", h.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", h.Addr, err)
	}
	running, err := m.startHub(ctx, ln, h, store, log)
	if err != nil {
		return err
	}
	if m.Config.JSON {
		writeJSON(m.Stdout, map[string]string{"url": running.url, "helpdesk": h.Helpdesk, "db": redactDSN(h.DB)})
	}
	if m.OnListen != nil {
		m.OnListen(running.url)
	}
	return running.wait()
}

// runningHub is a started hub.
type runningHub struct {
	url  string
	wait func() error // blocks until ctx ends and the hub has shut down
}

// startHub serves the hub on ln with its background work (refresher,
// poller, last-used flusher) until ctx ends, then shuts down within
// ShutdownTimeout: it stops accepting, waits for requests in flight and
// for the background work, and flushes the last-used times. The store is
// the caller's to close after wait returns.
func (m *Main) startHub(ctx context.Context, ln net.Listener, h HubConfig, store valet.HubStore, log *slog.Logger) (*runningHub, error) {
	log = log.With("component", "hub")
	publicURL := h.PublicURL
	if publicURL == "" {
		publicURL = "http://" + dialableAddr(ln.Addr())
	}
	vault, err := h.vault()
	if err != nil {
		ln.Close()
		return nil, err
	}
	cookieKey, err := valet.DeriveKey([]byte(h.Key), "hub cookie key")
	if err != nil {
		ln.Close()
		return nil, err
	}
	cfg := hub.Config{PublicURL: publicURL, Helpdesk: h.Helpdesk, ClientID: h.ClientID, ClientSecret: h.ClientSecret,
		Scopes: strings.Fields(h.Scopes), CookieKey: cookieKey, SessionTTL: m.Config.SessionTTL, Logger: log}
	providers := cfg.Providers()
	tokens := hub.NewTokens(store, vault, providers, nil, log, hub.TokensConfig{})
	events := hub.NewEvents(store, vault, tokens, publicURL, nil, log)
	srv, err := hub.NewServer(cfg, hub.Deps{Store: store, Vault: vault, Providers: providers, Tokens: tokens, Events: events})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("build the hub: %w", err)
	}

	// Background work stops with bg, before the store may close.
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { tokens.RunRefresher(bg, hubRefreshEvery) })
	wg.Go(func() { events.RunPoller(bg, hubPollEvery) })
	wg.Go(func() {
		tick := time.NewTicker(hubPurgeEvery)
		defer tick.Stop()
		for {
			if n, err := purgeHubActivity(bg, store, time.Now()); err != nil && bg.Err() == nil {
				log.Warn("purge old activity", "err", err)
			} else if n > 0 {
				log.Info("purged old activity", "rows", n)
			}
			select {
			case <-bg.Done():
				return
			case <-tick.C:
			}
		}
	})
	wg.Go(func() {
		tick := time.NewTicker(hubFlushEvery)
		defer tick.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-tick.C:
				if err := tokens.FlushLastUsed(bg); err != nil && bg.Err() == nil {
					log.Warn("flush last-used times", "err", err)
				}
			}
		}
	})

	baseCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("valet hub serving", "url", publicURL, "addr", ln.Addr().String(), "helpdesk", h.Helpdesk,
		"db", redactDSN(h.DB), "key_id", vault.KeyID())

	wait := func() error {
		var errs []error
		select {
		case err := <-serveErr:
			errs = append(errs, fmt.Errorf("hub: serve: %w", err))
		case <-ctx.Done():
			log.Info("hub shutting down", "timeout", m.Config.ShutdownTimeout.String())
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.Config.ShutdownTimeout)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil {
				log.Warn("hub shutdown timed out; cancelling requests in flight", "err", err)
				cancelRequests()
				_ = hs.Close()
				errs = append(errs, fmt.Errorf("hub: graceful shutdown: %w", err))
			}
		}
		stopBG()
		wg.Wait()
		cancelRequests()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tokens.FlushLastUsed(fctx); err != nil {
			errs = append(errs, fmt.Errorf("hub: flush last-used times: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		log.Info("hub stopped")
		return nil
	}
	return &runningHub{url: publicURL, wait: wait}, nil
}

// runHubRotateKey re-encrypts every connection's secrets under
// VALET_HUB_KEY, opening them with whichever key (current or old) sealed
// them. It is one transaction: a secret no key opens aborts it all.
func (m *Main) runHubRotateKey(ctx context.Context) error {
	h := m.Config.Hub
	vault, err := h.vault()
	if err != nil {
		return err
	}
	store, err := openHubStore(ctx, h.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	n, err := store.ResealConnections(ctx, vault.Reseal)
	if err != nil {
		return fmt.Errorf("re-encrypt the hub's connections (nothing was changed): %w", err)
	}
	out := struct {
		DB       string `json:"db"`
		KeyID    string `json:"key_id"`
		Resealed int    `json:"resealed"`
	}{redactDSN(h.DB), vault.KeyID(), n}
	if m.Config.JSON {
		writeJSON(m.Stdout, out)
		return nil
	}
	fmt.Fprintf(m.Stdout, "re-encrypted %d connection(s) of %s under key %s; the old keys can now be dropped\n", n, out.DB, out.KeyID)
	return nil
}
