package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/valethq/valet"
	"github.com/valethq/valet/authserver"
)

// AppInput is what the admin app, grant and audit commands act on.
type AppInput struct {
	Name          string
	Description   string
	DeveloperName string
	HomepageURL   string
	LogoURL       string
	RedirectURIs  stringList
	Public        bool
	Leeway        int
	Alg           string
	ClientID      string
	GrantID       int64
	Limit         int
	Edit          appEdit
}

// appEdit is what "admin app update" changes: only the flags given.
type appEdit struct {
	Name, Description, DeveloperName, HomepageURL, LogoURL, Scopes, Alg optional[string]
	Leeway                                                              optional[int]
	RedirectURIs                                                        stringList // replaces the list when given
}

// optional is a flag that remembers whether it was given.
type optional[T string | int] struct {
	value T
	set   bool
}

func (o *optional[T]) String() string { return fmt.Sprint(o.value) }
func (o *optional[T]) Set(v string) error {
	switch p := any(&o.value).(type) {
	case *string:
		*p = v
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("must be a whole number")
		}
		*p = n
	}
	o.set = true
	return nil
}

// apply sets *dst to the flag's value if it was given.
func (o *optional[T]) apply(dst *T) {
	if o.set {
		*dst = o.value
	}
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// The OAuth admin commands join the table that main.go's init builds; this
// file's init runs after it (files initialise in name order).
func init() {
	commands = append(commands,
		command{name: "admin app create", args: "--name N --redirect-uri URI [--redirect-uri URI2] --scopes \"openid email ...\" [--public]",
			summary: "register an OAuth app; prints client_id and, for a confidential app, client_secret once",
			register: func(m *Main, fs *flag.FlagSet) {
				m.Config.dbFlag(fs)
				a := &m.Admin.App
				fs.StringVar(&a.Name, "name", "", "app name")
				fs.StringVar(&a.Description, "description", "", "what the app does")
				fs.StringVar(&a.DeveloperName, "developer", "", "developer name shown on the consent page")
				fs.StringVar(&a.HomepageURL, "homepage", "", "homepage URL")
				fs.StringVar(&a.LogoURL, "logo", "", "logo URL")
				fs.Var(&a.RedirectURIs, "redirect-uri", "redirect URI (https, or http on loopback); repeat for several")
				fs.StringVar(&m.Admin.Scopes, "scopes", "", "space-separated scopes the app may request")
				fs.BoolVar(&a.Public, "public", false, "a public app (no secret; PKCE required)")
				fs.IntVar(&a.Leeway, "refresh-reuse-leeway", 0, "seconds (0-60) a refresh token may be reused after rotation")
				fs.StringVar(&a.Alg, "id-token-alg", "RS256", "ID token signature: RS256, ES256 or EdDSA")
			},
			check: func(m *Main) error {
				return required(map[string]string{"name": m.Admin.App.Name, "scopes": m.Admin.Scopes,
					"redirect-uri": m.Admin.App.RedirectURIs.String()})
			},
			run: (*Main).runAppCreate},
		command{name: "admin app update", args: "--client-id ID [--name N] [--redirect-uri URI ...] [--scopes \"...\"] [--refresh-reuse-leeway S] [--id-token-alg A] ...",
			summary: "change a registered app; only the flags given change (--redirect-uri replaces the whole list)",
			register: func(m *Main, fs *flag.FlagSet) {
				clientIDFlag(m, fs)
				e := &m.Admin.App.Edit
				fs.Var(&e.Name, "name", "app name")
				fs.Var(&e.Description, "description", "what the app does")
				fs.Var(&e.DeveloperName, "developer", "developer name shown on the consent page")
				fs.Var(&e.HomepageURL, "homepage", "homepage URL")
				fs.Var(&e.LogoURL, "logo", "logo URL")
				fs.Var(&e.RedirectURIs, "redirect-uri", "redirect URI; repeat for several; replaces the registered list")
				fs.Var(&e.Scopes, "scopes", "space-separated scopes the app may request (replaces them)")
				fs.Var(&e.Leeway, "refresh-reuse-leeway", "seconds (0-60) a refresh token may be reused after rotation")
				fs.Var(&e.Alg, "id-token-alg", "ID token signature: RS256, ES256 or EdDSA")
			},
			check: func(m *Main) error { return required(map[string]string{"client-id": m.Admin.App.ClientID}) },
			run:   (*Main).runAppUpdate},
		command{name: "admin app list", args: "",
			summary:  "list the registered OAuth apps",
			register: func(m *Main, fs *flag.FlagSet) { m.Config.dbFlag(fs) },
			run:      (*Main).runAppList},
		command{name: "admin app rotate-secret", args: "--client-id ID",
			summary:  "replace a confidential app's client secret; prints the new one once",
			register: clientIDFlag,
			check:    func(m *Main) error { return required(map[string]string{"client-id": m.Admin.App.ClientID}) },
			run:      (*Main).runAppRotate},
		command{name: "admin app delete", args: "--client-id ID",
			summary:  "delete an app, revoking every grant and token",
			register: clientIDFlag,
			check:    func(m *Main) error { return required(map[string]string{"client-id": m.Admin.App.ClientID}) },
			run:      (*Main).runAppDelete},
		command{name: "admin grant list", args: "--account NAME",
			summary:  "list the apps installed on an account",
			register: accountFlag,
			check:    func(m *Main) error { return required(map[string]string{"account": m.Admin.Account}) },
			run:      (*Main).runGrantList},
		command{name: "admin grant revoke", args: "--account NAME --id GRANT",
			summary: "revoke an installed app: every token stops working at once",
			register: func(m *Main, fs *flag.FlagSet) {
				accountFlag(m, fs)
				fs.Int64Var(&m.Admin.App.GrantID, "id", 0, "grant id")
			},
			check: func(m *Main) error {
				if m.Admin.App.GrantID <= 0 {
					return usageErrorf("missing --id")
				}
				return required(map[string]string{"account": m.Admin.Account})
			},
			run: (*Main).runGrantRevoke},
		command{name: "admin keys rotate", args: "[--secret S]",
			summary: "make new ID token signing keys; the old ones stay published until their tokens expire",
			register: func(m *Main, fs *flag.FlagSet) {
				m.Config.dbFlag(fs)
				fs.StringVar(&m.Config.Secret, "secret", m.Config.Secret, "the server secret (env VALET_SECRET, better VALET_SECRET_FILE)")
			},
			check: func(m *Main) error { return required(map[string]string{"secret (or VALET_SECRET)": m.Config.Secret}) },
			run:   (*Main).runKeysRotate},
		command{name: "admin audit list", args: "[--account NAME] [--limit N]",
			summary: "print an account's security audit log, newest first; without --account, the entries of no account (app secret rotations, failed client authentication)",
			register: func(m *Main, fs *flag.FlagSet) {
				accountFlag(m, fs)
				fs.IntVar(&m.Admin.App.Limit, "limit", 100, "at most this many entries (1-1000)")
			},
			run: (*Main).runAuditList},
	)
}

func clientIDFlag(m *Main, fs *flag.FlagSet) {
	m.Config.dbFlag(fs)
	fs.StringVar(&m.Admin.App.ClientID, "client-id", "", "the app's client_id")
}

func accountFlag(m *Main, fs *flag.FlagSet) {
	m.Config.dbFlag(fs)
	fs.StringVar(&m.Admin.Account, "account", "", "account name")
}

type appOutput struct {
	ClientID     string     `json:"client_id"`
	ClientSecret string     `json:"client_secret,omitempty"`
	App          *valet.App `json:"app"`
}

func (m *Main) runAppCreate(ctx context.Context) error {
	in := m.Admin.App
	scopes, err := valet.ParseScopes(m.Admin.Scopes)
	if err != nil {
		return err
	}
	app := &valet.App{Name: in.Name, Description: in.Description, DeveloperName: in.DeveloperName,
		HomepageURL: in.HomepageURL, LogoURL: in.LogoURL, RedirectURIs: in.RedirectURIs, Scopes: scopes,
		Public: in.Public, RefreshLeeway: in.Leeway, IDTokenAlg: in.Alg}
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	secret, err := store.RegisterApp(ctx, app)
	if err != nil {
		return err
	}
	writeJSON(m.Stdout, appOutput{ClientID: app.ClientID, ClientSecret: secret, App: app})
	return nil
}

func (m *Main) runAppUpdate(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	app, err := store.FindApp(ctx, m.Admin.App.ClientID)
	if err != nil {
		return err
	}
	e := &m.Admin.App.Edit
	e.Name.apply(&app.Name)
	e.Description.apply(&app.Description)
	e.DeveloperName.apply(&app.DeveloperName)
	e.HomepageURL.apply(&app.HomepageURL)
	e.LogoURL.apply(&app.LogoURL)
	e.Alg.apply(&app.IDTokenAlg)
	e.Leeway.apply(&app.RefreshLeeway)
	if e.Scopes.set {
		if app.Scopes, err = valet.ParseScopes(e.Scopes.value); err != nil {
			return err
		}
	}
	if len(e.RedirectURIs) > 0 {
		app.RedirectURIs = e.RedirectURIs
	}
	if err := store.UpdateApp(ctx, app); err != nil {
		return err
	}
	writeJSON(m.Stdout, appOutput{ClientID: app.ClientID, App: app})
	return nil
}

func (m *Main) runAppList(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	apps, err := store.ListApps(ctx, 0)
	if err != nil {
		return err
	}
	writeJSON(m.Stdout, map[string]any{"data": apps})
	return nil
}

func (m *Main) runAppRotate(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	app, err := store.FindApp(ctx, m.Admin.App.ClientID)
	if err != nil {
		return err
	}
	secret, err := store.RotateAppSecret(ctx, app.ID)
	if err != nil {
		return err
	}
	writeJSON(m.Stdout, map[string]string{"client_id": app.ClientID, "client_secret": secret})
	return nil
}

func (m *Main) runAppDelete(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	app, err := store.FindApp(ctx, m.Admin.App.ClientID)
	if err != nil {
		return err
	}
	if err := store.DeleteApp(ctx, app.ID); err != nil {
		return err
	}
	writeJSON(m.Stdout, map[string]any{"client_id": app.ClientID, "deleted": true})
	return nil
}

func (m *Main) runGrantList(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	acct, err := findAccount(ctx, store, m.Admin.Account)
	if err != nil {
		return err
	}
	grants, err := store.ListGrants(ctx, acct.ID)
	if err != nil {
		return err
	}
	writeJSON(m.Stdout, map[string]any{"account": acct.Name, "data": grants})
	return nil
}

func (m *Main) runGrantRevoke(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	acct, err := findAccount(ctx, store, m.Admin.Account)
	if err != nil {
		return err
	}
	id := m.Admin.App.GrantID
	// Only an active grant is revoked and audited: a second revocation
	// would change nothing and log a revocation that did not happen.
	grants, err := store.ListGrants(ctx, acct.ID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(grants, func(g valet.Grant) bool { return g.ID == id })
	if i < 0 {
		return valet.Errorf(valet.ENOTFOUND, "Account %s has no active grant %d (unknown, or already revoked).", acct.Name, id)
	}
	if err := store.RevokeGrant(ctx, acct.ID, id); err != nil {
		return err
	}
	details, _ := json.Marshal(map[string]any{"grant_id": id, "by": "valet admin"})
	if err := store.AppendAudit(ctx, &valet.AuditEntry{AccountID: acct.ID, AppID: grants[i].AppID,
		Action: valet.AuditGrantRevoked, Details: details}); err != nil {
		return err
	}
	writeJSON(m.Stdout, map[string]any{"account": acct.Name, "grant_id": id, "revoked": true})
	return nil
}

func (m *Main) runAuditList(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if m.Admin.Account == "" {
		entries, err := store.ListAudit(ctx, 0, m.Admin.App.Limit)
		if err != nil {
			return err
		}
		writeJSON(m.Stdout, map[string]any{"account": nil, "data": entries})
		return nil
	}
	acct, err := findAccount(ctx, store, m.Admin.Account)
	if err != nil {
		return err
	}
	entries, err := store.ListAudit(ctx, acct.ID, m.Admin.App.Limit)
	if err != nil {
		return err
	}
	writeJSON(m.Stdout, map[string]any{"account": acct.Name, "data": entries})
	return nil
}

func (m *Main) runKeysRotate(ctx context.Context) error {
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	keys, err := authserver.RotateKeys(ctx, store, []byte(m.Config.Secret))
	if err != nil {
		return err
	}
	type keyOutput struct {
		Kid       string `json:"kid"`
		Algorithm string `json:"alg"`
	}
	out := []keyOutput{}
	for _, k := range keys {
		out = append(out, keyOutput{k.ID, k.Algorithm})
	}
	writeJSON(m.Stdout, map[string]any{"created": out, "new_keys_sign_after": authserver.KeyPublishDelay.String(),
		"old_keys_published_for": authserver.RetiredKeyOverlap.String()})
	return nil
}
