package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

//go:embed templates static
var embedded embed.FS

// Page names: one template file per page under templates/, each defining
// "page" (which picks a layout) and "content".
const (
	pageSignIn        = "signin"
	pageAccounts      = "accounts"
	pageTickets       = "tickets"
	pageTicket        = "ticket"
	pageCustomers     = "customers"
	pageCustomer      = "customer"
	pageSettings      = "settings"
	pageAPIKeyCreated = "apikey"
	pageConsent       = "consent"
	pageConnectedApps = "connected_apps"
	pageDevelopers    = "developers"
	pageAppSecret     = "app_secret"
	pageAppEdit       = "app_edit"
	pageIntegrations  = "integrations"
	pageIntegration   = "integration"
	pageWebhookSecret = "integration_secret"
	pageAudit         = "audit"
	pageError         = "error"
)

var pageNames = []string{pageSignIn, pageAccounts, pageTickets, pageTicket, pageCustomers,
	pageCustomer, pageSettings, pageAPIKeyCreated, pageConsent, pageConnectedApps,
	pageDevelopers, pageAppSecret, pageAppEdit, pageIntegrations, pageIntegration, pageWebhookSecret, pageAudit, pageError}

// StaticPrefix is the path under which Static is mounted. Asset URLs carry
// a content hash after it (/static/<hash>/app.css), so they can be cached
// for a year and still change the moment a file does.
const StaticPrefix = "/static/"

// UI holds the parsed pages and the static files.
type UI struct {
	pages   map[string]*template.Template
	static  fs.FS
	version string
	bufs    sync.Pool
}

// New parses every page of the embedded templates. It fails if a page is
// missing or does not parse.
func New() (*UI, error) { return newUI(embedded) }

// newUI builds a UI from fsys, which holds templates/ and static/.
func newUI(fsys fs.FS) (*UI, error) {
	static, err := fs.Sub(fsys, "static")
	if err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	version, err := hashFiles(static)
	if err != nil {
		return nil, fmt.Errorf("webui: static files: %w", err)
	}
	u := &UI{pages: make(map[string]*template.Template), static: static, version: version}
	u.bufs.New = func() any { return new(bytes.Buffer) }
	funcs := u.funcs()
	for _, name := range pageNames {
		file := "templates/" + name + ".html"
		if _, err := fs.Stat(fsys, file); err != nil {
			return nil, fmt.Errorf("webui: page %q is missing: %w", name, err)
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(fsys, "templates/layout.html", file)
		if err != nil {
			return nil, fmt.Errorf("webui: page %q: %w", name, err)
		}
		for _, must := range []string{"page", "content"} {
			if t.Lookup(must) == nil {
				return nil, fmt.Errorf("webui: page %q does not define %q", name, must)
			}
		}
		u.pages[name] = t
	}
	return u, nil
}

// hashFiles returns a short hash of every file under fsys, names included.
func hashFiles(fsys fs.FS) (string, error) {
	h := sha256.New()
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no static files")
	}
	slices.Sort(names)
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// Asset returns the versioned URL of a static file, e.g. /static/3f2a…/app.css.
func (u *UI) Asset(name string) string { return StaticPrefix + u.version + "/" + name }

// Static serves the static files. Mount it at StaticPrefix. A request for the
// current version is cacheable for a year; an old version still gets the
// current file but must be revalidated, so a page cached across a deploy
// degrades gracefully.
func (u *UI) Static() http.Handler {
	files := http.FileServerFS(u.static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, StaticPrefix)
		version, file, ok := strings.Cut(rest, "/")
		if !ok || file == "" || strings.HasSuffix(file, "/") || path.Clean("/"+file) != "/"+file {
			http.NotFound(w, r)
			return
		}
		if _, err := fs.Stat(u.static, file); err != nil {
			http.NotFound(w, r)
			return
		}
		if version == u.version {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + file
		r2.URL.RawPath = ""
		files.ServeHTTP(w, r2)
	})
}

// render executes page into a buffer and writes it with status only if the
// template succeeded; on error nothing has been written.
func (u *UI) render(w http.ResponseWriter, status int, page string, data any) error {
	t := u.pages[page]
	if t == nil {
		return fmt.Errorf("webui: no page %q", page)
	}
	buf := u.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			u.bufs.Put(buf)
		}
	}()
	if err := t.ExecuteTemplate(buf, "page", data); err != nil {
		return fmt.Errorf("webui: render %s: %w", page, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show one person's view of private data: never cache them.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := io.Copy(w, buf)
	return err
}

// ago says how long before now t was, in the short form inbox lists use.
// t may be a time.Time or a *time.Time (nil gives "").
func ago(now time.Time, t any) string {
	var at time.Time
	switch v := t.(type) {
	case time.Time:
		at = v
	case *time.Time:
		if v == nil {
			return ""
		}
		at = *v
	default:
		return ""
	}
	if at.IsZero() {
		return ""
	}
	d := now.Sub(at)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	case d < 7*24*time.Hour:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	case at.Year() == now.Year():
		return at.UTC().Format("Jan 2")
	default:
		return at.UTC().Format("Jan 2, 2006")
	}
}

func timeOf(t any) (time.Time, bool) {
	switch v := t.(type) {
	case time.Time:
		return v, !v.IsZero()
	case *time.Time:
		if v == nil {
			return time.Time{}, false
		}
		return *v, !v.IsZero()
	}
	return time.Time{}, false
}

func (u *UI) funcs() template.FuncMap {
	return template.FuncMap{
		"asset": u.Asset,
		"ago":   ago,
		// datetime is the full time for title attributes and detail rows.
		"datetime": func(t any) string {
			at, ok := timeOf(t)
			if !ok {
				return ""
			}
			return at.UTC().Format("Jan 2, 2006, 15:04 UTC")
		},
		// iso is the machine-readable time of a <time datetime=...>.
		"iso": func(t any) string {
			at, ok := timeOf(t)
			if !ok {
				return ""
			}
			return at.UTC().Format(time.RFC3339)
		},
		"initials":  initials,
		"avatar":    avatarClass,
		"plural":    plural,
		"scopeText": scopeText,
		"bodyText":  bodyText,
		"firstErr": func(errs map[string][]string, field string) string {
			if len(errs[field]) == 0 {
				return ""
			}
			return strings.Join(errs[field], "; ")
		},
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
