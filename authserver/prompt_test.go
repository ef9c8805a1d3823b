package authserver_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
)

// OpenID Connect Core §3.1.2.1: prompt and max_age.

// promptURL is an authorization request with PKCE and extra parameters
// (prompt, max_age, account); it returns the URL and the verifier.
func (e *env) promptURL(params map[string]string, scopes ...string) (string, string) {
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	for k, v := range params {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return e.oauth2(scopes...).AuthCodeURL("st4te", opts...), verifier
}

// signIn signs the browser in without any authorization request.
func (b *browser) signIn() {
	b.t.Helper()
	_, body := b.get(b.e.issuer + "/signin")
	resp, _ := b.post(b.e.issuer+"/signin", url.Values{"csrf": {field(b.t, csrfRe, body)},
		"email": {b.e.user.Email}, "password": {password}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path == "/signin" {
		b.t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Request.URL)
	}
}

// wantPromptError checks an error answer to the app, with state and iss.
func wantPromptError(t *testing.T, e *env, a answer, code string) {
	t.Helper()
	q := appRedirect(t, a)
	if q.Get("error") != code || q.Get("state") != "st4te" || q.Get("iss") != e.issuer || q.Get("code") != "" {
		t.Fatalf("authorization response %v, want error=%s with state and iss", q, code)
	}
}

// wantSilentCode checks that the browser went straight back to the app with
// a code, no page shown, and returns the code.
func wantSilentCode(t *testing.T, e *env, a answer) string {
	t.Helper()
	if a.resp.StatusCode == http.StatusOK {
		t.Fatalf("a page was shown (%s), want a code at once:\n%s", a.resp.Request.URL, a.body)
	}
	q := appRedirect(t, a)
	if q.Get("code") == "" || q.Get("state") != "st4te" || q.Get("iss") != e.issuer {
		t.Fatalf("authorization response %v", q)
	}
	return q.Get("code")
}

// signInAgain expects the sign-in form asked for again, with the email
// filled in, moves the clock by wait, enters the password and returns
// valet's next answer.
func (b *browser) signInAgain(a answer, wait time.Duration) answer {
	b.t.Helper()
	if a.resp.StatusCode != http.StatusOK || a.resp.Request.URL.Path != "/signin" ||
		!strings.Contains(a.body, "enter your password again") || !strings.Contains(a.body, `value="`+b.e.user.Email+`"`) ||
		!strings.Contains(a.body, `name="reauth"`) {
		b.t.Fatalf("want the sign-in form again, got %d %s:\n%s", a.resp.StatusCode, a.resp.Request.URL, a.body)
	}
	b.e.clock.Advance(wait)
	resp, body := b.post(b.e.issuer+"/signin", url.Values{"csrf": {field(b.t, csrfRe, a.body)},
		"next": {field(b.t, nextRe, a.body)}, "email": {b.e.user.Email}, "password": {password}})
	return answer{resp, body}
}

// authTime exchanges a code and returns its verified ID token's auth_time.
func (e *env) authTime(code, verifier string) int64 {
	e.t.Helper()
	status, out := e.exchange(code, verifier)
	wantStatus(e.t, "exchange", status, http.StatusOK)
	raw, _ := out["id_token"].(string)
	provider, err := oidc.NewProvider(ctx, e.issuer)
	must(e.t, err)
	idt, err := provider.Verifier(&oidc.Config{ClientID: e.app.ClientID, Now: e.clock.Now}).Verify(ctx, raw)
	must(e.t, err)
	var claims struct {
		AuthTime int64 `json:"auth_time"`
	}
	must(e.t, idt.Claims(&claims))
	return claims.AuthTime
}

func TestPromptNoneWithoutSession(t *testing.T) {
	e := newEnv(t)
	u, _ := e.promptURL(map[string]string{"prompt": "none"}, "openid", "tickets:read")
	resp, body := e.browser().get(u)
	wantPromptError(t, e, answer{resp, body}, "login_required")
}

func TestPromptNoneWithoutConsent(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn()
	u, _ := e.promptURL(map[string]string{"prompt": "none"}, "openid", "tickets:read")
	resp, body := b.get(u)
	wantPromptError(t, e, answer{resp, body}, "consent_required")
	// Consent to some scopes does not cover new ones.
	e.code(b, "openid", "tickets:read")
	u, _ = e.promptURL(map[string]string{"prompt": "none"}, "openid", "tickets:read", "tickets:write")
	resp, body = b.get(u)
	wantPromptError(t, e, answer{resp, body}, "consent_required")
	if b.consents != 1 {
		t.Fatalf("consent pages shown: %d, want 1", b.consents)
	}
}

func TestPromptNoneAccountSelection(t *testing.T) {
	e := newEnv(t)
	globex := e.secondAccount()
	b := e.browser()
	b.signIn()
	u, _ := e.promptURL(map[string]string{"prompt": "none"}, "tickets:read")
	resp, body := b.get(u)
	wantPromptError(t, e, answer{resp, body}, "account_selection_required")
	// Named with account=, the remembered consent on it answers at once.
	_, err := e.store.Consent(ctx, globex.ID, e.user.ID, e.app.ID, valet.ScopeSet{"tickets:read"})
	must(t, err)
	u, verifier := e.promptURL(map[string]string{"prompt": "none", "account": "globex"}, "tickets:read")
	resp, body = b.get(u)
	status, out := e.exchange(wantSilentCode(t, e, answer{resp, body}), verifier)
	if status != http.StatusOK || out["account"] != "globex" {
		t.Fatalf("token answer %d %v", status, out)
	}
}

func TestPromptNoneRemembered(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	e.code(b, "openid", "tickets:read")
	u, verifier := e.promptURL(map[string]string{"prompt": "none"}, "openid", "tickets:read")
	resp, body := b.get(u)
	code := wantSilentCode(t, e, answer{resp, body})
	status, _ := e.exchange(code, verifier)
	wantStatus(t, "exchange", status, http.StatusOK)
	if b.consents != 1 {
		t.Fatalf("consent pages shown: %d, want 1", b.consents)
	}
}

func TestPromptLogin(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	e.code(b, "openid", "tickets:read")
	e.clock.Advance(time.Minute)
	u, verifier := e.promptURL(map[string]string{"prompt": "login"}, "openid", "tickets:read")
	resp, body := b.get(u)
	a := b.signInAgain(answer{resp, body}, 5*time.Second)
	signedIn := e.clock.Now()
	code := wantSilentCode(t, e, a)
	if got := e.authTime(code, verifier); got != signedIn.Unix() {
		t.Fatalf("auth_time %d, want the new sign-in %d", got, signedIn.Unix())
	}
	if b.consents != 1 {
		t.Fatalf("consent pages shown: %d, want 1 (consent is remembered)", b.consents)
	}
	// A wrong password does not get past the form.
	e.clock.Advance(time.Second)
	resp, body = b.get(u)
	if resp.Request.URL.Path != "/signin" {
		t.Fatalf("prompt=login again: %d %s", resp.StatusCode, resp.Request.URL)
	}
	resp, body = b.post(e.issuer+"/signin", url.Values{"csrf": {field(t, csrfRe, body)},
		"next": {field(t, nextRe, body)}, "email": {e.user.Email}, "password": {"wrong"}, "reauth": {"1"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "enter your password again") {
		t.Fatalf("wrong password: %d\n%s", resp.StatusCode, body)
	}
}

func TestMaxAgeExceeded(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	e.code(b, "openid", "tickets:read")
	e.clock.Advance(2 * time.Minute)
	// With prompt=none the app hears login_required instead.
	u, _ := e.promptURL(map[string]string{"prompt": "none", "max_age": "60"}, "openid", "tickets:read")
	resp, body := b.get(u)
	wantPromptError(t, e, answer{resp, body}, "login_required")

	u, verifier := e.promptURL(map[string]string{"max_age": "60"}, "openid", "tickets:read")
	resp, body = b.get(u)
	a := b.signInAgain(answer{resp, body}, 3*time.Second)
	signedIn := e.clock.Now()
	if got := e.authTime(wantSilentCode(t, e, a), verifier); got != signedIn.Unix() {
		t.Fatalf("auth_time %d, want the new sign-in %d", got, signedIn.Unix())
	}
}

func TestMaxAgeNotExceeded(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	signedIn := e.clock.Now()
	e.code(b, "openid", "tickets:read")
	e.clock.Advance(30 * time.Second)
	u, verifier := e.promptURL(map[string]string{"max_age": "60"}, "openid", "tickets:read")
	resp, body := b.get(u)
	if got := e.authTime(wantSilentCode(t, e, answer{resp, body}), verifier); got != signedIn.Unix() {
		t.Fatalf("auth_time %d, want the first sign-in %d", got, signedIn.Unix())
	}
}

// TestMaxAgeZero: max_age=0 asks for the password, and the sign-in just
// made satisfies it (no loop), even at the very instant of the request.
func TestMaxAgeZero(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	e.code(b, "openid", "tickets:read")
	e.clock.Advance(time.Second)
	u, verifier := e.promptURL(map[string]string{"max_age": "0"}, "openid", "tickets:read")
	resp, body := b.get(u)
	a := b.signInAgain(answer{resp, body}, 0)
	if got := e.authTime(wantSilentCode(t, e, a), verifier); got != e.clock.Now().Unix() {
		t.Fatalf("auth_time %d, want the new sign-in %d", got, e.clock.Now().Unix())
	}
}

// TestMaxAgeOnConsentAnswer: a consent form answered once the sign-in has
// grown too old for max_age asks for the password first.
func TestMaxAgeOnConsentAnswer(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn()
	e.clock.Advance(time.Second) // the sign-in is older than the request
	u, verifier := e.promptURL(map[string]string{"max_age": "60"}, "openid", "tickets:read")
	resp, body := b.get(u)
	if resp.Request.URL.Path != "/oauth/consent" {
		t.Fatalf("want the consent page, got %d %s", resp.StatusCode, resp.Request.URL)
	}
	e.clock.Advance(2 * time.Minute)
	resp, body = b.post(e.issuer+"/oauth/consent", url.Values{"csrf": {field(t, csrfRe, body)},
		"id": {field(t, idRe, body)}, "action": {"allow"}})
	// After the password, the consent page comes back: nothing was approved.
	a := b.signInAgain(answer{resp, body}, time.Second)
	if a.resp.Request.URL.Path != "/oauth/consent" {
		t.Fatalf("after signing in again: %d %s", a.resp.StatusCode, a.resp.Request.URL)
	}
	if _, err := e.store.FindActiveGrant(ctx, e.account.ID, e.user.ID, e.app.ID); valet.ErrorCode(err) != valet.ENOTFOUND {
		t.Fatalf("a grant from a consent answered with a stale sign-in: %v", err)
	}
	resp, body = b.post(e.issuer+"/oauth/consent", url.Values{"csrf": {field(t, csrfRe, a.body)},
		"id": {field(t, idRe, a.body)}, "action": {"allow"}})
	q := appRedirect(t, answer{resp, body})
	status, _ := e.exchange(q.Get("code"), verifier)
	wantStatus(t, "exchange", status, http.StatusOK)
}

// TestPromptConsent: prompt=consent (and select_account) shows the consent
// page even though consent is remembered; Allow records it again.
func TestPromptConsent(t *testing.T) {
	for _, prompt := range []string{"consent", "select_account"} {
		t.Run(prompt, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser()
			e.code(b, "openid", "tickets:read")
			u, verifier := e.promptURL(map[string]string{"prompt": prompt}, "openid", "tickets:read")
			q := appRedirect(t, b.authorize(u, "allow"))
			if b.consents != 2 || !strings.Contains(b.lastConsent, `class="scope" data-scope="tickets:read"`) {
				t.Fatalf("consent pages shown: %d, last:\n%s", b.consents, b.lastConsent)
			}
			status, _ := e.exchange(q.Get("code"), verifier)
			wantStatus(t, "exchange", status, http.StatusOK)
			entries, err := e.store.ListAudit(ctx, e.account.ID, 50)
			must(t, err)
			given := 0
			for _, en := range entries {
				if en.Action == valet.AuditConsentGiven {
					given++
				}
			}
			if given != 2 {
				t.Fatalf("consent.given entries: %d, want 2", given)
			}
			// Deny still answers access_denied.
			u, _ = e.promptURL(map[string]string{"prompt": prompt}, "openid", "tickets:read")
			wantPromptError(t, e, b.authorize(u, "deny"), "access_denied")
			if b.consents != 3 {
				t.Fatalf("consent pages shown: %d, want 3", b.consents)
			}
		})
	}
}

// TestPromptNoneWithOthers: the library refuses prompt=none with another
// value.
func TestPromptNoneWithOthers(t *testing.T) {
	e := newEnv(t)
	u, _ := e.promptURL(map[string]string{"prompt": "none login"}, "tickets:read")
	resp, body := e.browser().get(u)
	wantPromptError(t, e, answer{resp, body}, "invalid_request")
}

// TestIDTokenHint: a request naming a user with id_token_hint is answered
// for that user only: login_required with prompt=none when someone else is
// signed in, otherwise the sign-in form, until that user signs in.
func TestIDTokenHint(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "openid", "tickets:read")
	_, out := e.exchange(code, verifier)
	hint := out["id_token"].(string)

	hash, err := passwd.Params{MemoryKiB: 512, Time: 1, Threads: 1}.Hash(password)
	must(t, err)
	other := &valet.User{Email: "agent@acme.test", Name: "Aaron Agent", PasswordHash: hash}
	must(t, e.store.CreateUser(ctx, other))
	must(t, e.store.AddMember(ctx, e.account.ID, other.ID, valet.RoleAgent))
	b := e.browser()
	_, body := b.get(e.issuer + "/signin")
	resp, _ := b.post(e.issuer+"/signin", url.Values{"csrf": {field(t, csrfRe, body)}, "email": {other.Email}, "password": {password}})
	wantStatus(t, "sign-in as the other user", resp.StatusCode, http.StatusOK)

	u, _ := e.promptURL(map[string]string{"id_token_hint": hint, "prompt": "none"}, "openid", "tickets:read")
	wantPromptError(t, e, b.authorize(u, "allow"), "login_required")

	u, verifier = e.promptURL(map[string]string{"id_token_hint": hint}, "openid", "tickets:read")
	resp, body = b.get(u)
	if resp.Request.URL.Path != "/signin" || !strings.Contains(body, "asked for another user") || strings.Contains(body, other.Email) {
		t.Fatalf("want the sign-in form for another user, got %d %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	// The browser's helper signs in as the env's user, the one named.
	code = wantSilentCode(t, e, b.authorize(u, "allow"))
	_, out = e.exchange(code, verifier)
	if sub := claim(t, out["id_token"].(string), "sub"); sub != strconv.FormatInt(e.user.ID, 10) {
		t.Fatalf("ID token for user %v, want %d", sub, e.user.ID)
	}
}

// claim reads one claim of a JWT without verifying it (the other tests do).
func claim(t *testing.T, jwt, name string) any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, err)
	var claims map[string]any
	must(t, json.Unmarshal(raw, &claims))
	return claims[name]
}

// TestPromptLoginKeepsAccount: signing in again for prompt=login keeps the
// account the browser worked in, so a member of several accounts whose
// consent is remembered is not shown the account picker.
func TestPromptLoginKeepsAccount(t *testing.T) {
	e := newEnv(t)
	e.secondAccount()
	b := e.browser()
	b.signIn() // lands on the account picker
	_, body := b.get(e.issuer + "/accounts")
	resp, _ := b.post(e.issuer+"/accounts", url.Values{"csrf": {field(t, csrfRe, body)},
		"account_id": {strconv.FormatInt(e.account.ID, 10)}})
	wantStatus(t, "choose acme", resp.StatusCode, http.StatusOK)
	e.code(b, "openid", "tickets:read") // consent on acme
	e.clock.Advance(time.Minute)
	u, _ := e.promptURL(map[string]string{"prompt": "login"}, "openid", "tickets:read")
	resp, body = b.get(u)
	wantSilentCode(t, e, b.signInAgain(answer{resp, body}, time.Second))
}
