package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/authserver"
	"github.com/valethq/valet/server"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/webhook"
)

// openStore opens the configured database, applying pending migrations.
// With a server secret the store also gets the key sealing webhook signing
// secrets, derived from it: without one it refuses to create webhooks.
func (m *Main) openStore(ctx context.Context, opts ...sqlstore.Option) (*sqlstore.Store, error) {
	if m.Config.Secret != "" {
		key, err := valet.DeriveKey([]byte(m.Config.Secret), "webhook secrets")
		if err != nil {
			return nil, fmt.Errorf("derive the webhook seal key: %w", err)
		}
		opts = append([]sqlstore.Option{sqlstore.WithSealKey(key)}, opts...)
	}
	opts = append([]sqlstore.Option{sqlstore.WithRefreshLifetimes(m.Config.RefreshIdleTTL, m.Config.RefreshAbsoluteTTL)}, opts...)
	store, err := sqlstore.Open(ctx, m.Config.DB, opts...)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", redactDSN(m.Config.DB), err)
	}
	return store, nil
}

func (m *Main) runServe(ctx context.Context) error {
	log := newLogger(&m.Config, m.Stderr)
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	return m.serve(ctx, store, store.Dialect(), log, func(url string) {
		if m.Config.JSON {
			writeJSON(m.Stdout, map[string]string{"url": url, "db": redactDSN(m.Config.DB)})
		}
	})
}

// serve listens on m.Config.Addr and serves store until ctx is done, then
// shuts down gracefully within m.Config.ShutdownTimeout: it stops
// accepting, wakes long polls, waits for requests in flight and flushes the
// server's batched writes. ready is called once connections are accepted.
// A shutdown asked for by ctx is not an error.
func (m *Main) serve(ctx context.Context, store valet.Store, dialect string, log *slog.Logger, ready func(url string)) error {
	ln, err := net.Listen("tcp", m.Config.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.Config.Addr, err)
	}
	url := m.Config.Issuer
	if url == "" {
		url = "http://" + dialableAddr(ln.Addr())
	}
	if m.OwnsProcess {
		slog.SetDefault(log) // the protocol library logs through the default
		tuneGC(log)
	}
	opts := []server.Option{server.WithLogger(log)}
	if oauthStore, ok := store.(valet.OAuthStore); ok && m.Config.Secret != "" {
		auth, err := authserver.New(ctx, oauthStore, authserver.Config{Issuer: url, Secret: []byte(m.Config.Secret),
			AccessTokenTTL: m.Config.AccessTokenTTL})
		if err != nil {
			ln.Close()
			return fmt.Errorf("build authorization server: %w", err)
		}
		opts = append(opts, server.WithOAuth(auth))
		janitorCtx, stopJanitor := context.WithCancel(ctx)
		defer stopJanitor()
		go auth.RunJanitor(janitorCtx, time.Minute)
	} else {
		log.Warn("VALET_SECRET is not set: the OAuth authorization server and webhooks are off")
	}
	// The webhook dispatcher needs the seal key openStore derives from the
	// secret. It runs on every node (leases share the work out) and stops
	// before serve returns, so its last results are recorded before the
	// caller closes the store.
	if m.Config.Secret != "" {
		dispatcher := webhook.New(store, webhook.Config{Logger: log, AllowPrivate: m.Config.WebhookAllowPrivate})
		dctx, stopDispatcher := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			_ = dispatcher.Run(dctx)
		}()
		defer func() {
			stopDispatcher()
			<-stopped
		}()
	}
	srv, err := server.New(store, m.Config.ServerConfig(url), opts...)
	if err != nil {
		ln.Close()
		return fmt.Errorf("build server: %w", err)
	}
	// Requests get their own base context, cancelled only if shutdown runs
	// out of time, so a signal does not abort requests mid-transaction.
	baseCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		// Long enough for a 30 s long poll of /api/events, short enough that
		// a stalled client cannot hold a connection forever.
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return baseCtx },
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if m.Config.DebugAddr != "" {
		stopDebug, err := serveDebug(m.Config.DebugAddr, log)
		if err != nil {
			ln.Close()
			_ = srv.Close(context.WithoutCancel(ctx))
			return err
		}
		defer stopDebug()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("valet serving", "url", url, "addr", ln.Addr().String(), "db", redactDSN(m.Config.DB), "dialect", dialect)
	if ready != nil {
		ready(url)
	}
	if m.OnListen != nil {
		m.OnListen(url)
	}

	select {
	case err := <-serveErr:
		_ = srv.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", m.Config.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.Config.ShutdownTimeout)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- hs.Shutdown(sctx) }()
	// Closing the server wakes long polls (Shutdown would otherwise wait
	// out their wait=); the second Close flushes what requests that were
	// still running recorded.
	errs := []error{srv.Close(sctx)}
	if err := <-shutdown; err != nil {
		log.Warn("shutdown timed out; cancelling requests in flight", "err", err)
		cancelRequests()
		_ = hs.Close()
		errs = append(errs, fmt.Errorf("graceful shutdown: %w", err))
	}
	errs = append(errs, srv.Close(sctx))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// serveDebug serves Go's profiler (net/http/pprof) on addr, a loopback
// address Validate has checked, apart from the product's own listener, and
// returns what stops it.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --debug-addr %s: %w", addr, err)
	}
	hs := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = hs.Serve(ln) }()
	log.Info("profiler serving", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() { _ = hs.Close() }, nil
}

// debugHandler is net/http/pprof's handlers on a mux of their own (the
// package's init registers them on http.DefaultServeMux, which nothing
// serves).
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// dialableAddr turns a listener's address into one a browser can use: an
// unspecified host (":8080", "0.0.0.0") becomes localhost.
func dialableAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

func (m *Main) runMigrate(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	// Open has migrated already; Migrate again is a no-op that makes the
	// command's promise explicit.
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	version, err := store.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	out := struct {
		DB            string `json:"db"`
		Dialect       string `json:"dialect"`
		SchemaVersion int64  `json:"schema_version"`
	}{redactDSN(m.Config.DB), store.Dialect(), version}
	if m.Config.JSON {
		writeJSON(m.Stdout, out)
		return nil
	}
	fmt.Fprintf(m.Stdout, "%s (%s) is at schema version %d\n", out.DB, out.Dialect, out.SchemaVersion)
	return nil
}

// writeJSON prints v indented, for people and for jq alike.
func writeJSON(w io.Writer, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Only our own types reach here; a failure is a programming error.
		b, _ = json.Marshal(map[string]any{"error": map[string]string{"code": "internal_error", "msg": err.Error()}})
	}
	_, _ = w.Write(append(b, '\n'))
}
