package authserver_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/valethq/valet"
)

// TestPartnerPortalWithoutAccount: a developer in several accounts who has
// not chosen one yet (as after signing in) uses the whole portal; a secret
// is shown whenever one is made.
func TestPartnerPortalWithoutAccount(t *testing.T) {
	e := newEnv(t)
	e.secondAccount()
	b := e.browser()
	b.signIn()
	resp, body := b.get(e.issuer + "/developers")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Choose an account") {
		t.Fatalf("developers page: %d\n%s", resp.StatusCode, body)
	}
	csrf := field(t, csrfRe, body)
	secretRe := regexp.MustCompile(`id="secret" class="secret" readonly value="([^"]+)"`)
	clientRe := regexp.MustCompile(`<dt>client_id</dt><dd><input class="secret" readonly value="([^"]+)"`)
	form := url.Values{"csrf": {csrf}, "name": {"Ünïcødé app " + strings.Repeat("é", 80)},
		"developer_name": {strings.Repeat("d", 101)}, "redirect_uris": {"https://mine.example/cb"}, "scope": {"openid"}}
	resp, body = b.post(e.issuer+"/developers/apps", form)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "must be at most 100 characters") {
		t.Fatalf("long developer name: %d\n%s", resp.StatusCode, body)
	}
	form.Set("developer_name", "Me")
	resp, body = b.post(e.issuer+"/developers/apps", form)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register: %d\n%s", resp.StatusCode, body)
	}
	secret, clientID := field(t, secretRe, body), field(t, clientRe, body)
	app, err := e.store.FindApp(ctx, clientID)
	must(t, err)
	if !app.CheckSecret(secret) {
		t.Fatal("the secret shown is not the app's")
	}
	id := strconv.FormatInt(app.ID, 10)
	resp, body = b.get(e.issuer + "/developers/apps/" + id)
	wantStatus(t, "edit page", resp.StatusCode, http.StatusOK)
	resp, body = b.post(e.issuer+"/developers/apps/"+id+"/rotate", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("rotate: %d\n%s", resp.StatusCode, body)
	}
	app, err = e.store.FindApp(ctx, clientID)
	must(t, err)
	if !app.CheckSecret(field(t, secretRe, body)) {
		t.Fatal("the rotated secret shown is not the app's")
	}
}

// TestNarrowedAppLosesScopes: a developer who removes a scope from the
// registration takes it from the installed app's tokens at once.
func TestNarrowedAppLosesScopes(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "offline", "tickets:read", "customers:read")
	_, tokens := e.exchange(code, verifier)
	access := tokens["access_token"].(string)
	wantStatus(t, "customers before", e.api(access, "/api/customers"), http.StatusOK)

	e.app.Scopes = valet.ScopeSet{"openid", "email", "profile", "offline", "tickets:read"}
	must(t, e.store.UpdateApp(ctx, e.app))
	wantStatus(t, "customers after", e.api(access, "/api/customers"), http.StatusForbidden)
	wantStatus(t, "tickets after", e.api(access, "/api/tickets"), http.StatusOK)
	status, out := e.refresh(tokens["refresh_token"].(string), "")
	if status != http.StatusOK || out["scope"] != "offline tickets:read" {
		t.Fatalf("refresh after narrowing: %d %v", status, out)
	}
}
