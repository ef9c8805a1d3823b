package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/valethq/valet"
	"github.com/valethq/valet/hub"
	"github.com/valethq/valet/seed"
	"github.com/valethq/valet/sqlstore"
)

// valet demo's integration hub: its app registered on the demo helpdesk,
// its own SQLite file next to the demo's, a fixed vault key, and the hub
// serving beside the helpdesk.

const (
	demoHubClientID = "valet-demo-hub"
	// demoHubKey seals the demo hub's tokens. Like demoSecret it is public:
	// the demo's data is.
	demoHubKey = "valet demo hub vault key: never use it in production"
	// demoHubLeeway is the refresh reuse leeway of the hub's app (issue 4):
	// a hub that crashes between a refresh answer and its write keeps the
	// connection.
	demoHubLeeway = 30
)

// demoHubDB is the demo hub's database, next to the demo helpdesk's:
// valet-demo.db -> valet-demo-hub.db.
func demoHubDB(helpdeskDB string) string {
	if isPostgres(helpdeskDB) {
		return "valet-demo-hub.db"
	}
	return strings.TrimSuffix(helpdeskDB, ".db") + "-hub.db"
}

// demoHub is the demo's hub, listening but not serving until the
// helpdesk is up.
type demoHub struct {
	ln       net.Listener
	url      string
	cfg      HubConfig
	store    *sqlstore.HubStore
	done     chan error
	startErr error
}

// prepareDemoHub listens on the hub's address, opens its database and
// registers (or updates) its app on the demo helpdesk. A hub address in
// use is not fatal: the demo then runs without the hub and says so.
func (m *Main) prepareDemoHub(ctx context.Context, store *sqlstore.Store, log *slog.Logger) (*demoHub, error) {
	ln, err := net.Listen("tcp", m.Config.Hub.Addr)
	if err != nil {
		log.Warn("the demo runs without its hub: its address is taken (choose another with --hub-addr)", "addr", m.Config.Hub.Addr, "err", err)
		return nil, nil
	}
	dh := &demoHub{ln: ln, url: "http://" + dialableAddr(ln.Addr()), done: make(chan error, 1)}
	// The demo's hub ignores the VALET_HUB_* environment, as the demo
	// ignores VALET_DB: it must never touch a real hub's database or key.
	dh.cfg = HubConfig{Addr: m.Config.Hub.Addr, DB: demoHubDB(m.Config.DB), Key: demoHubKey, PublicURL: dh.url}
	hc := hub.Config{PublicURL: dh.url}
	if dh.cfg.ClientID, dh.cfg.ClientSecret, err = ensureDemoHubApp(ctx, store, hc.RedirectURIs(), hc.AppScopes()); err != nil {
		ln.Close()
		return nil, fmt.Errorf("register the hub's app: %w", err)
	}
	if dh.store, err = openHubStore(ctx, dh.cfg.DB); err != nil {
		ln.Close()
		return nil, err
	}
	return dh, nil
}

// start serves the hub against the helpdesk at helpdeskURL until ctx ends.
func (dh *demoHub) start(ctx context.Context, m *Main, helpdeskURL string, log *slog.Logger) {
	dh.cfg.Helpdesk = helpdeskURL
	running, err := m.startHub(ctx, dh.ln, dh.cfg, dh.store, log)
	if err != nil {
		dh.startErr = err
		log.Error("the demo hub did not start", "err", err)
		close(dh.done)
		return
	}
	go func() { dh.done <- running.wait() }()
}

// wait returns when the hub has shut down, with its shutdown error. A
// hub that did not start was reported then; the helpdesk ran anyway.
func (dh *demoHub) wait() error { return <-dh.done }

// ensureDemoHubApp registers the hub's app on the demo helpdesk, or brings
// an earlier registration up to date (the hub's address may have changed),
// and gives it a fresh secret: the hub gets it in memory, nobody else.
func ensureDemoHubApp(ctx context.Context, store *sqlstore.Store, redirectURIs, scopes []string) (clientID, secret string, err error) {
	want := make(valet.ScopeSet, 0, len(scopes))
	for _, s := range scopes {
		want = append(want, valet.Scope(s))
	}
	app, err := store.FindApp(ctx, demoHubClientID)
	if valet.ErrorCode(err) == valet.ENOTFOUND {
		app = &valet.App{ClientID: demoHubClientID, Name: "valet hub", DeveloperName: "valet",
			Description:  "The demo's integration hub: connects this helpdesk in one click and keeps the connection alive.",
			RedirectURIs: redirectURIs, Scopes: want, RefreshLeeway: demoHubLeeway}
		secret, err := store.RegisterApp(ctx, app)
		return app.ClientID, secret, err
	}
	if err != nil {
		return "", "", err
	}
	if !slices.Equal(app.RedirectURIs, redirectURIs) || !app.Scopes.Contains(want) || !want.Contains(app.Scopes) ||
		app.RefreshLeeway != demoHubLeeway {
		app.RedirectURIs, app.Scopes, app.RefreshLeeway = redirectURIs, want, demoHubLeeway
		if err := store.UpdateApp(ctx, app); err != nil {
			return "", "", err
		}
	}
	secret, err = store.RotateAppSecret(ctx, app.ID)
	return app.ClientID, secret, err
}

func (m *Main) printDemoHub(dh *demoHub, info *seed.Info) {
	if m.Config.JSON {
		return
	}
	w := m.Stdout
	if dh.startErr != nil {
		fmt.Fprintf(w, "The integration hub did not start: %v\n\nStop with Ctrl-C.\n\n", dh.startErr)
		return
	}
	owner := info.Owner()
	fmt.Fprintf(w, "The integration hub is running at %s/ (its data: %s).\n", dh.url, dh.cfg.DB)
	fmt.Fprintf(w, "  1. Open it, press \"Sign in with valet\", sign in as %s (password %s) and allow.\n", owner.Email, owner.Password)
	fmt.Fprint(w, "  2. Press \"Connect helpdesk\" and allow the access it asks for.\n")
	fmt.Fprint(w, "  3. The dashboard says \"Connected to acme\"; open the connection to see the account's tickets.\n")
	fmt.Fprint(w, "     Change a ticket in the helpdesk and watch it arrive in the hub's activity feed.\n\nStop with Ctrl-C.\n\n")
}
