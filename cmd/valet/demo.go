package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/seed"
	"github.com/valethq/valet/sqlstore"
)

// runDemo serves a seeded helpdesk. The data lives in a SQLite file
// (valet-demo.db in the working directory unless --db says otherwise) and
// is seeded only when the file has no demo account, so a second run finds
// what the first one left, replies and all.
func (m *Main) runDemo(ctx context.Context) error {
	log := newLogger(&m.Config, m.Stderr)
	if m.DemoReset {
		if isPostgres(m.Config.DB) {
			return usageErrorf("--reset deletes a SQLite file; drop a PostgreSQL demo database yourself")
		}
		// The hub's connections point into the helpdesk's data: they go too.
		for _, db := range []string{m.Config.DB, demoHubDB(m.Config.DB)} {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				if err := os.Remove(db + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("reset the demo database: %w", err)
				}
			}
		}
	}
	// The demo's hub receives its webhooks on this machine.
	m.Config.WebhookAllowPrivate = true
	if m.Config.Secret == "" {
		// The demo's data is public anyway (its passwords are printed); a
		// fixed secret keeps its signing keys and webhook secrets usable
		// across runs. Set before opening the store, which derives the
		// webhook seal key from it.
		m.Config.Secret = demoSecret
	}
	// The store reads time from the seed clock, which the seeder moves back
	// so the tickets spread over the last weeks, and which is the wall clock
	// the rest of the time.
	clock := &seed.Clock{}
	store, err := m.openStore(ctx, sqlstore.WithClock(clock))
	if err != nil {
		return err
	}
	defer store.Close()
	began := time.Now()
	info, seeded, err := seed.EnsureDemo(ctx, store, seed.WithClock(clock))
	if err != nil {
		return fmt.Errorf("seed the demo: %w", err)
	}
	if seeded {
		log.Info("seeded the demo helpdesk", "account", info.Account.Name, "customers", info.Customers,
			"tickets", info.Tickets, "messages", info.Messages, "took", time.Since(began).Round(time.Millisecond).String())
	}
	app, appSecret, err := ensureDemoApp(ctx, store)
	if err != nil {
		return fmt.Errorf("register the demo app: %w", err)
	}
	var dh *demoHub
	if !m.Config.Hub.Off {
		if dh, err = m.prepareDemoHub(ctx, store, log); err != nil {
			return err
		}
		if dh != nil {
			defer dh.store.Close()
		}
	}
	err = m.serve(ctx, store, store.Dialect(), log, func(url string) {
		hubURL := ""
		if dh != nil {
			hubURL = dh.url
		}
		m.printDemo(url, info, seeded, hubURL)
		m.printDemoApp(url, app, appSecret)
		if dh != nil {
			dh.start(ctx, m, url, log)
			m.printDemoHub(dh, info)
		}
	})
	if dh != nil {
		err = errors.Join(err, dh.wait())
	}
	return err
}

const (
	demoSecret      = "valet demo secret: never use it in production"
	demoClientID    = "valet-demo-app"
	demoRedirectURI = "http://localhost:8081/callback"
)

// ensureDemoApp registers the sample OAuth app, or gives it a new secret
// (secrets are shown once, so each run prints a fresh one).
func ensureDemoApp(ctx context.Context, store *sqlstore.Store) (*valet.App, string, error) {
	app, err := store.FindApp(ctx, demoClientID)
	if err == nil {
		secret, err := store.RotateAppSecret(ctx, app.ID)
		return app, secret, err
	}
	if valet.ErrorCode(err) != valet.ENOTFOUND {
		return nil, "", err
	}
	app = &valet.App{ClientID: demoClientID, Name: "Demo app", DeveloperName: "valet",
		Description: "The sample app of valet demo.", RedirectURIs: []string{demoRedirectURI},
		Scopes: valet.ScopeSet{"openid", "email", "profile", "offline", "account:read", "tickets:read", "tickets:write", "customers:read"}}
	secret, err := store.RegisterApp(ctx, app)
	return app, secret, err
}

func (m *Main) printDemoApp(url string, app *valet.App, secret string) {
	if m.Config.JSON {
		return
	}
	w := m.Stdout
	fmt.Fprintf(w, "OAuth: the demo app %q is registered (client_id %s, client_secret %s).\n", app.Name, app.ClientID, secret)
	fmt.Fprintf(w, "1. Open, sign in and allow:\n   %s/oauth/authorize?response_type=code&client_id=%s&redirect_uri=%s&scope=openid+offline+tickets:read&state=xyz\n",
		url, app.ClientID, demoRedirectURI)
	fmt.Fprintf(w, "2. Copy the code from the address %s?code=...&state=xyz&iss=... and run:\n", demoRedirectURI)
	fmt.Fprintf(w, "   curl -u '%s:%s' -d grant_type=authorization_code -d redirect_uri=%s -d code=CODE %s/oauth/token\n",
		app.ClientID, secret, demoRedirectURI, url)
	fmt.Fprintf(w, "3. curl -H 'Authorization: Bearer vat_...' %s/api/tickets\n\n", url)
}

func (m *Main) printDemo(url string, info *seed.Info, seeded bool, hubURL string) {
	if m.Config.JSON {
		writeJSON(m.Stdout, struct {
			URL    string `json:"url"`
			HubURL string `json:"hub_url,omitempty"`
			DB     string `json:"db"`
			Seeded bool   `json:"seeded"`
			*seed.Info
		}{url, hubURL, redactDSN(m.Config.DB), seeded, info})
		return
	}
	w := m.Stdout
	fmt.Fprintf(w, "\nvalet demo is running at %s/\n\n", url)
	fmt.Fprintf(w, "Sign in to %s (account %s) as:\n", info.Account.DisplayName, info.Account.Name)
	for _, u := range info.Users {
		fmt.Fprintf(w, "  %-6s %-36s password: %s\n", u.Role, u.Email, u.Password)
	}
	if k := info.APIKey; k != nil {
		fmt.Fprintf(w, "\nTry the API with the owner's key (its secret is shown only now):\n")
		fmt.Fprintf(w, "  curl -H 'Authorization: Bearer %s' '%s/api/tickets?limit=5'\n", k.Secret, url)
		fmt.Fprintf(w, "  curl -u '%s:%s' %s/api/account\n", info.Owner().Email, k.Secret, url)
	}
	state := "kept from an earlier run; --reset starts afresh"
	if seeded {
		state = fmt.Sprintf("seeded with %d customers and %d tickets", info.Customers, info.Tickets)
	}
	fmt.Fprintf(w, "\nData: %s (%s).\n", redactDSN(m.Config.DB), state)
	if hubURL == "" {
		fmt.Fprint(w, "Stop with Ctrl-C.\n")
	}
	fmt.Fprintln(w)
}
