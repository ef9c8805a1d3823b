package hub_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/valethq/valet"
	"github.com/valethq/valet/helpdesktest"
	"github.com/valethq/valet/hub"
	"github.com/valethq/valet/internal/browsertest"
)

// TestBrowserHub drives the hub in headless Chromium as a person would:
// "Sign in with valet" -> the helpdesk's sign-in page -> consent -> the
// hub's dashboard -> Connect helpdesk -> consent -> back on the dashboard
// showing "Connected to acme", then the account's tickets and the live
// activity feed; then access revoked in the helpdesk's connected-apps
// page shows as revoked in the hub, and Reconnect restores it. Screenshots of each page go to the artifacts folder; any
// console error (a CSP violation included) fails the test.
func TestBrowserHub(t *testing.T) {
	e := newHubEnv(t)
	e.ticket("Tent pole snapped on day one")
	e.ticket("Can I return opened gas canisters")
	out := browsertest.ArtifactsDir(t)

	bctx := browsertest.Start(t, 1280, 900)
	console := browsertest.WatchConsole(bctx)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(sel, chromedp.NodeVisible))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(bctx, chromedp.Location())
		must(t, err)
		return loc
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
	// consent answers the helpdesk's consent page with Allow.
	consent := func(what, screenshot string) {
		t.Helper()
		do(what+": consent page", chromedp.WaitVisible(chromedp.CSS(".consent-card")))
		if !strings.HasPrefix(location(), e.h.URL+"/oauth/consent") {
			t.Fatalf("%s: at %s, not the helpdesk's consent page", what, location())
		}
		shot(screenshot)
		do(what+": allow", chromedp.Click(chromedp.CSS(`button[value="allow"]`), chromedp.NodeVisible))
	}

	do("hub home", chromedp.Navigate(e.URL+"/"), chromedp.WaitVisible(chromedp.ID("signin")))
	shot("21-hub-signin")
	do("sign in with valet", chromedp.Click(chromedp.ID("signin"), chromedp.NodeVisible), chromedp.WaitVisible(chromedp.ID("email")))
	if !strings.HasPrefix(location(), e.h.URL+"/signin") {
		t.Fatalf("Sign in with valet went to %s", location())
	}
	// The sign-in page is the last of a chain of redirects: wait until its
	// whole form is there, or a field found early may belong to a page
	// being replaced (CI once saw "Could not find node with given id").
	do("helpdesk sign-in page", chromedp.WaitReady(`button[type="submit"]`),
		chromedp.WaitVisible(chromedp.ID("password")))
	do("helpdesk sign-in", chromedp.SendKeys(chromedp.ID("email"), e.h.Owner.Email),
		chromedp.SendKeys(chromedp.ID("password"), helpdesktest.Password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`), chromedp.NodeVisible))
	consent("sign in", "22-helpdesk-consent-sign-in")
	do("dashboard", chromedp.WaitVisible(chromedp.CSS(`button[data-action="connect"]`)))
	if loc := location(); loc != e.URL+"/" {
		t.Fatalf("after sign-in: at %s", loc)
	}
	if s := text("#flash"); s != "Signed in as Olivia Owner." {
		t.Fatalf("flash after sign-in: %q", s)
	}
	shot("23-hub-dashboard-empty")

	do("connect helpdesk", chromedp.Click(chromedp.CSS(`button[data-action="connect"]`), chromedp.NodeVisible))
	consent("connect", "24-helpdesk-consent-connect")
	do("dashboard after connect", chromedp.WaitVisible(chromedp.CSS(`li.conn[data-account="acme"]`)))
	if loc := location(); loc != e.URL+"/" {
		t.Fatalf("after connect: at %s", loc)
	}
	if s := text("#flash"); !strings.Contains(s, "Connected to acme") {
		t.Fatalf("flash after connect: %q", s)
	}
	if s := text(`li.conn[data-account="acme"] .pill`); !strings.EqualFold(s, "active") {
		t.Fatalf("status pill %q", s)
	}
	c := e.only()
	// The live feed: an event recorded now shows up without a reload.
	_, err := e.store.RecordActivity(ctx, &valet.Activity{ConnectionID: c.ID, EventID: 1, EventType: "ticket-created",
		Summary: "Ticket #1 created: Tent pole snapped on day one", Via: hub.ViaWebhook})
	must(t, err)
	do("activity feed", chromedp.WaitVisible(chromedp.CSS(`#activity li[data-id]`)))
	if s := text(`#activity li .summary`); !strings.Contains(s, "Tent pole snapped") {
		t.Fatalf("activity shows %q", s)
	}
	shot("25-hub-connected")

	do("connection page", chromedp.Click(chromedp.CSS(`li.conn[data-account="acme"] h2 a`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.ID("tickets")))
	if s := text("#tickets"); !strings.Contains(s, "Tent pole snapped on day one") || !strings.Contains(s, "Can I return opened gas canisters") {
		t.Fatalf("tickets table: %q", s)
	}
	shot("26-hub-tickets")

	// Revoke access in the helpdesk's connected-apps page: the hub's next
	// call finds out, and Reconnect brings the connection back.
	do("helpdesk connected apps", chromedp.Navigate(e.h.URL+"/settings/apps"), chromedp.WaitVisible(chromedp.CSS(".connected-apps")))
	do("revoke access", chromedp.Click(chromedp.CSS(`.connected-apps button.btn-danger`), chromedp.NodeVisible),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-grant]`)))
	do("connection page after revocation", chromedp.Navigate(connURL(e, c)), chromedp.WaitVisible(chromedp.ID("revoked")))
	shot("27-hub-revoked")
	do("reconnect", chromedp.Click(chromedp.CSS(`#revoked button[data-action="reconnect"]`), chromedp.NodeVisible))
	consent("reconnect", "28-helpdesk-consent-reconnect")
	do("dashboard after reconnect", chromedp.WaitVisible(chromedp.CSS(`li.conn[data-account="acme"][data-status="active"]`)))
	if s := text("#flash"); !strings.Contains(s, "Connected to acme") {
		t.Fatalf("flash after reconnect: %q", s)
	}

	if errs := console.Errors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
