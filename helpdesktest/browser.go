package helpdesktest

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/valethq/valet"
)

// Browser is a cookie-keeping HTTP client standing in for a person's
// browser: it follows redirects between the helpdesk and any app, signs in
// on the helpdesk's sign-in page and answers its consent page as told.
type Browser struct {
	tb testing.TB
	h  *Helpdesk
	// Client keeps cookies for every host (the helpdesk and the app).
	Client *http.Client
	// Email and Password sign in on the helpdesk's sign-in page
	// (Password defaults to the package's Password).
	Email, Password string
	// Consents counts the consent pages answered; LastConsent is the
	// last one's HTML.
	Consents    int
	LastConsent string
}

// NewBrowser returns a browser that signs in to the helpdesk as email. It
// needs only h.URL (and h.Store for RevokeApp), so a test may point it at
// any valet helpdesk with &Helpdesk{URL: ...}.
func (h *Helpdesk) NewBrowser(tb testing.TB, email string) *Browser {
	jar, err := cookiejar.New(nil)
	must(tb, err)
	return &Browser{tb: tb, h: h, Email: email, Password: Password, Client: &http.Client{Jar: jar}}
}

// Form fields of the helpdesk's pages.
var (
	csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	idRe   = regexp.MustCompile(`name="id" value="([^"]+)"`)
	nextRe = regexp.MustCompile(`name="next" value="([^"]+)"`)
	// the account a consent form submits: the preselected option, or the hidden field
	accountRe = regexp.MustCompile(`(?:<option value="(\d+)" selected|name="account" value="(\d+)")`)
)

// Field returns the first submatch of re in body, unescaped, failing the
// test when there is none.
func Field(tb testing.TB, re *regexp.Regexp, body string) string {
	tb.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		tb.Fatalf("no %s in page:\n%s", re, body)
	}
	return html.UnescapeString(m[1])
}

// CSRF returns the csrf field of the first form in body.
func CSRF(tb testing.TB, body string) string {
	tb.Helper()
	return Field(tb, csrfRe, body)
}

// Do sends req and returns the final answer (after redirects) with its body.
func (b *Browser) Do(req *http.Request) (*http.Response, string) {
	b.tb.Helper()
	resp, err := b.Client.Do(req)
	must(b.tb, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(b.tb, err)
	return resp, string(body)
}

// Get fetches u.
func (b *Browser) Get(u string) (*http.Response, string) {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	must(b.tb, err)
	return b.Do(req)
}

// Post submits form to u as a browser submits a form.
func (b *Browser) Post(u string, form url.Values) (*http.Response, string) {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	must(b.tb, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.Do(req)
}

// Walk carries an answer through the helpdesk's sign-in page (as Email)
// and consent page (answering action: "allow" or "deny") until it lands
// anywhere else, and returns that answer: usually the app's page after its
// callback.
func (b *Browser) Walk(resp *http.Response, body, action string) (*http.Response, string) {
	b.tb.Helper()
	host := strings.TrimPrefix(b.h.URL, "http://")
	for range 6 {
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Host != host {
			return resp, body
		}
		switch resp.Request.URL.Path {
		case "/signin":
			resp, body = b.Post(b.h.URL+"/signin", url.Values{"csrf": {CSRF(b.tb, body)},
				"next": {Field(b.tb, nextRe, body)}, "email": {b.Email}, "password": {b.Password}})
		case "/oauth/consent":
			b.Consents++
			b.LastConsent = body
			form := url.Values{"csrf": {CSRF(b.tb, body)}, "id": {Field(b.tb, idRe, body)}, "action": {action}}
			if m := accountRe.FindStringSubmatch(body); m != nil {
				form.Set("account", m[1]+m[2])
			}
			resp, body = b.Post(b.h.URL+"/oauth/consent", form)
		default:
			return resp, body
		}
	}
	b.tb.Fatalf("the helpdesk's sign-in and consent did not finish: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	return nil, ""
}

// PostWalk posts form to u (an app's button that starts an authorization)
// and walks the answer through sign-in and consent, as Walk.
func (b *Browser) PostWalk(u string, form url.Values, action string) (*http.Response, string) {
	b.tb.Helper()
	resp, body := b.Post(u, form)
	return b.Walk(resp, body, action)
}

// RevokeApp revokes app's grant on the account from the helpdesk's
// connected-apps page, as its signed-in owner does with "Revoke access".
// The browser must be signed in to the helpdesk (Walk did that).
func (b *Browser) RevokeApp(app *valet.App) {
	b.tb.Helper()
	grants, err := b.h.Store.ListGrants(context.Background(), b.h.Account.ID)
	must(b.tb, err)
	var id int64
	for _, g := range grants {
		if g.AppID == app.ID && g.RevokedDatetime == nil {
			id = g.ID
		}
	}
	if id == 0 {
		b.tb.Fatalf("app %s has no live grant on %s", app.Name, b.h.Account.Name)
	}
	resp, body := b.Get(b.h.URL + "/settings/apps")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/settings/apps" {
		b.tb.Fatalf("connected apps page: %d %s", resp.StatusCode, resp.Request.URL)
	}
	resp, body = b.Post(b.h.URL+"/settings/apps/"+strconv.FormatInt(id, 10)+"/revoke", url.Values{"csrf": {CSRF(b.tb, body)}})
	if resp.StatusCode != http.StatusOK {
		b.tb.Fatalf("revoke %s: %d\n%s", app.Name, resp.StatusCode, body)
	}
}
