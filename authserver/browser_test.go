package authserver_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/valethq/valet"
	"github.com/valethq/valet/internal/browsertest"
)

// TestBrowserConsent clicks through sign-in and consent in headless
// Chromium as a person would, lands on the app's callback, and writes
// screenshots of the consent and connected-apps pages.
func TestBrowserConsent(t *testing.T) {
	e := newEnv(t)
	codes := make(chan string, 1)
	appSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case codes <- r.URL.Query().Get("code"):
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Hub</title><p id="done">Connected to valet.</p>`)
	}))
	t.Cleanup(appSrv.Close)
	app := &valet.App{Name: "Acme Hub", DeveloperName: "Hub Inc", Description: "Answers your customers with AI, drafts replies and escalates what it cannot solve.",
		HomepageURL: "https://hub.example", RedirectURIs: []string{appSrv.URL + "/cb"},
		Scopes: valet.ScopeSet{"openid", "email", "offline", "account:read", "tickets:read", "tickets:write", "customers:read", "events:read"}}
	secret, err := e.store.RegisterApp(ctx, app)
	must(t, err)
	conf := &oauth2.Config{ClientID: app.ClientID, ClientSecret: secret, RedirectURL: app.RedirectURIs[0],
		Scopes:   []string{"openid", "email", "offline", "account:read", "tickets:read", "tickets:write", "customers:read", "events:read"},
		Endpoint: oauth2.Endpoint{AuthURL: e.issuer + "/oauth/authorize", TokenURL: e.issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	out := browsertest.ArtifactsDir(t)

	bctx := browsertest.Start(t, 1366, 900)
	console := browsertest.WatchConsole(bctx)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(out, name+".png")
		must(t, os.WriteFile(path, buf, 0o644))
		t.Logf("screenshot %s", path)
	}

	do("authorize", chromedp.Navigate(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier))), chromedp.WaitVisible(chromedp.ID("email")))
	do("sign in", chromedp.SendKeys(chromedp.ID("email"), e.user.Email), chromedp.SendKeys(chromedp.ID("password"), password))
	if _, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.CSS(`button[type="submit"]`))); err != nil {
		t.Fatalf("submit sign-in: %v", err)
	}
	do("consent page", chromedp.WaitVisible(chromedp.CSS(".consent-card")))
	shot("11-consent")
	do("allow", chromedp.Click(chromedp.CSS(`button[value="allow"]`), chromedp.NodeVisible), chromedp.WaitVisible(chromedp.ID("done")))
	loc, err := chromedp.Run(bctx, chromedp.Location())
	must(t, err)
	if !strings.HasPrefix(loc, appSrv.URL+"/cb?") || !strings.Contains(loc, "iss=") {
		t.Fatalf("landed on %s", loc)
	}
	code := <-codes
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	must(t, err)
	wantStatus(t, "api", e.api(tok.AccessToken, "/api/tickets"), http.StatusOK)

	do("connected apps", chromedp.Navigate(e.issuer+"/settings/apps"), chromedp.WaitVisible(chromedp.CSS(".connected-apps")))
	shot("12-connected-apps")
	do("audit log", chromedp.Navigate(e.issuer+"/settings/audit"), chromedp.WaitVisible(chromedp.CSS(".audit-log")))
	shot("13-audit-log")
	if errs := console.Errors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
