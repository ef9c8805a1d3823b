package authserver_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/valethq/valet"
)

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactsDir is $VALET_TEST_ARTIFACTS, or artifacts/ at the repository root.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VALET_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	must(t, os.MkdirAll(dir, 0o755))
	return dir
}

// TestBrowserConsent clicks through sign-in and consent in headless
// Chromium as a person would, lands on the app's callback, and writes
// screenshots of the consent and connected-apps pages.
func TestBrowserConsent(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		if os.Getenv("VALET_REQUIRE_BROWSER") == "1" {
			t.Fatal("VALET_REQUIRE_BROWSER=1 but no chromium is installed")
		}
		t.Skip("chromium is not installed")
	}
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
	out := artifactsDir(t)

	root, stop := context.WithTimeout(context.Background(), 2*time.Minute)
	defer stop()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(root,
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1366, 900),
	)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var consoleErrors []string
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" || strings.Contains(m.Text, "Content Security Policy") {
				mu.Lock()
				consoleErrors = append(consoleErrors, fmt.Sprintf("%s: %s (%s)", m.Type, m.Text, m.URL))
				mu.Unlock()
			}
		}
	}()
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
	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(consoleErrors, "\n"))
	}
}
