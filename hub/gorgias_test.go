package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/sqlstore/storetest"
)

// fakeGorgias is a local stand-in for https://{account}.gorgias.com with
// the quirks the Gorgias provider template exists for:
//   - every URL is under the account's own base (here /{account} on one
//     server, as Providers.GorgiasURL = "http://127.0.0.1:port/{account}");
//   - the token endpoint takes client credentials by HTTP Basic only and
//     refuses them in the form;
//   - token answers say "expires_in": 0, meaning 24 hours;
//   - refresh answers carry no refresh_token: the one the client has keeps
//     working (no rotation);
//   - /api/account needs a current access token as Bearer.
type fakeGorgias struct {
	*httptest.Server
	clientID, secret, redirect string

	mu        sync.Mutex
	codes     map[string]string // code -> account
	refresh   map[string]string // refresh token -> account
	access    map[string]string // current access token -> account
	refreshes []string          // refresh tokens presented, in order
	refused   []string          // why token requests were refused
}

func newFakeGorgias(t *testing.T) *fakeGorgias {
	t.Helper()
	f := &fakeGorgias{clientID: "gorgias-client", secret: "gorgias-secret/with+specials",
		redirect: "http://127.0.0.1:1/callback", codes: map[string]string{}, refresh: map[string]string{},
		access: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{account}/oauth/authorize", f.authorize)
	mux.HandleFunc("POST /{account}/oauth/token", f.token)
	mux.HandleFunc("GET /{account}/api/account", f.account)
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// authorize approves at once (the user's consent is not what is tested).
func (f *fakeGorgias) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != f.clientID || q.Get("redirect_uri") != f.redirect {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	code := randomToken()
	f.mu.Lock()
	f.codes[code] = r.PathValue("account")
	f.mu.Unlock()
	to, _ := url.Parse(f.redirect)
	to.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	http.Redirect(w, r, to.String(), http.StatusFound)
}

func (f *fakeGorgias) token(w http.ResponseWriter, r *http.Request) {
	status, answer := f.grant(r)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(answer)
}

// grant decides a token request: the status and the JSON answer.
func (f *fakeGorgias) grant(r *http.Request) (int, map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(status int, code, why string) (int, map[string]any) {
		f.refused = append(f.refused, why)
		return status, map[string]any{"error": code}
	}
	if err := r.ParseForm(); err != nil {
		return fail(http.StatusBadRequest, "invalid_request", "form")
	}
	if r.PostForm.Has("client_id") || r.PostForm.Has("client_secret") {
		return fail(http.StatusUnauthorized, "invalid_client", "credentials in the form")
	}
	id, secret, ok := r.BasicAuth()
	// RFC 6749 §2.3.1: Basic credentials are form-encoded first.
	id, _ = url.QueryUnescape(id)
	secret, _ = url.QueryUnescape(secret)
	if !ok || id != f.clientID || secret != f.secret {
		return fail(http.StatusUnauthorized, "invalid_client", "no or wrong Basic credentials")
	}
	account := r.PathValue("account")
	answer := map[string]any{"token_type": "Bearer", "expires_in": 0, "scope": "offline account:read"}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		code := r.PostForm.Get("code")
		if f.codes[code] != account || r.PostForm.Get("redirect_uri") != f.redirect {
			return fail(http.StatusBadRequest, "invalid_grant", "code")
		}
		delete(f.codes, code)
		rt := randomToken()
		f.refresh[rt] = account
		answer["refresh_token"] = rt
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		f.refreshes = append(f.refreshes, rt)
		if f.refresh[rt] != account {
			return fail(http.StatusBadRequest, "invalid_grant", "refresh token")
		}
		// No refresh_token in the answer: the one presented stays valid.
		// The previous access token stops working.
		for at, acc := range f.access {
			if acc == account {
				delete(f.access, at)
			}
		}
	default:
		return fail(http.StatusBadRequest, "unsupported_grant_type", "grant type")
	}
	at := randomToken()
	f.access[at] = account
	answer["access_token"] = at
	return http.StatusOK, answer
}

func (f *fakeGorgias) account(w http.ResponseWriter, r *http.Request) {
	at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	account := f.access[at]
	f.mu.Unlock()
	if !ok || account == "" || account != r.PathValue("account") {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": 1, "name": account, "domain": account,
		"display_name": "Acme on Gorgias"})
}

func (f *fakeGorgias) stats() (refreshes, refused []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refreshes...), append([]string(nil), f.refused...)
}

// The gorgias provider template against the fake: a code exchange through
// Providers.OAuth2, then Tokens refreshing the expired access token. The
// quirks must come out right: Basic client authentication, expires_in 0
// stored as 24 hours, and the refresh token kept across refreshes that do
// not rotate it.
func TestGorgiasTemplate(t *testing.T) {
	t.Parallel()
	f := newFakeGorgias(t)
	providers := &Providers{GorgiasURL: f.URL + "/{account}",
		Clients: map[string]Client{ProviderGorgias: {ID: f.clientID, Secret: f.secret, RedirectURL: f.redirect}}}
	p, err := providers.Resolve(ctx, ProviderGorgias, "", "acme")
	must(t, err)
	if p.AuthURL != f.URL+"/acme/oauth/authorize" || p.TokenURL != f.URL+"/acme/oauth/token" || p.APIBase != f.URL+"/acme" {
		t.Fatalf("provider %+v", p)
	}
	cfg, err := providers.OAuth2(p, "offline", "account:read")
	must(t, err)

	// The fake refuses credentials in the form, so that it tests something.
	form := oauth2.Config{ClientID: f.clientID, ClientSecret: f.secret, RedirectURL: f.redirect,
		Endpoint: oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	if _, err := form.Exchange(ctx, "any"); err == nil {
		t.Fatal("the fake accepted client credentials in the form")
	}

	// The authorization request, without a browser: the fake approves and
	// redirects with a code.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(cfg.AuthCodeURL("state-1"))
	must(t, err)
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	must(t, err)
	if back.Query().Get("state") != "state-1" || back.Query().Get("code") == "" {
		t.Fatalf("authorization answered %d, Location %q", resp.StatusCode, back)
	}
	tok, err := cfg.Exchange(ctx, back.Query().Get("code"))
	must(t, err)
	if tok.AccessToken == "" || tok.RefreshToken == "" || !tok.Expiry.IsZero() {
		t.Fatalf("exchange: access %v, refresh %v, expiry %v (expires_in 0 must leave it to the template)",
			tok.AccessToken != "", tok.RefreshToken != "", tok.Expiry)
	}
	original := tok.RefreshToken

	// Stored as the connect flow would, with the access token already
	// expired so that the first use refreshes.
	vault, err := NewVault(testVaultKey)
	must(t, err)
	store := sqltest.HubSQLite(t)
	conn := &valet.Connection{Provider: ProviderGorgias, BaseURL: p.BaseURL, Account: "acme",
		Scopes: []string{"offline", "account:read"}, AccessExpires: time.Now().Add(-time.Minute), NextRefresh: time.Now().Add(-time.Minute)}
	must(t, store.SaveConnection(ctx, conn, vault.Seal(Secrets{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken})))

	clock := storetest.NewClock()
	tokens := NewTokens(store, vault, providers, clock, nil, TokensConfig{})
	fresh, err := tokens.Token(ctx, conn.ID)
	must(t, err)
	if fresh == tok.AccessToken {
		t.Fatal("Token handed out the expired access token")
	}
	refreshes, refused := f.stats()
	if len(refreshes) != 1 || refreshes[0] != original {
		t.Fatalf("refresh requests %d (with the original token: %v)", len(refreshes), len(refreshes) == 1 && refreshes[0] == original)
	}
	if len(refused) != 1 { // only the form-credentials probe above
		t.Fatalf("the fake refused the hub's token requests: %q", refused)
	}
	stored, sealed, err := store.FindConnection(ctx, conn.ID)
	must(t, err)
	sec, err := vault.Open(*sealed)
	must(t, err)
	if d := time.Until(stored.AccessExpires); d < 23*time.Hour+50*time.Minute || d > 24*time.Hour+time.Minute {
		t.Fatalf("stored access expiry is %v ahead, want about 24h (expires_in 0)", d.Round(time.Second))
	}
	if !stored.NextRefresh.After(time.Now().Add(12*time.Hour)) || !stored.NextRefresh.Before(stored.AccessExpires) {
		t.Fatalf("next refresh %v for an expiry of %v", stored.NextRefresh, stored.AccessExpires)
	}
	if sec.RefreshToken != original {
		t.Fatalf("the stored refresh token changed (kept: %v, empty: %v)", sec.RefreshToken == original, sec.RefreshToken == "")
	}
	if sec.AccessToken != fresh || stored.Status != valet.ConnectionActive {
		t.Fatalf("stored status %q, access token stored: %v", stored.Status, sec.AccessToken == fresh)
	}

	// The API through the hub's client, with the refreshed token.
	client, err := tokens.APIClient(ctx, stored)
	must(t, err)
	acct, err := client.Account(ctx)
	must(t, err)
	if acct.Name != "acme" {
		t.Fatalf("account %+v", acct)
	}

	// A day later the token expires again: the same refresh token, never
	// rotated, still works.
	clock.Advance(24*time.Hour + time.Minute)
	again, err := tokens.Token(ctx, conn.ID)
	must(t, err)
	refreshes, _ = f.stats()
	if again == fresh || len(refreshes) != 2 || refreshes[1] != original {
		t.Fatalf("second refresh: new token %v, %d refreshes, with the original token: %v", again != fresh, len(refreshes), len(refreshes) == 2 && refreshes[1] == original)
	}
	client, err = tokens.APIClient(context.Background(), stored)
	must(t, err)
	if _, err := client.Account(ctx); err != nil {
		t.Fatalf("the API after the second refresh: %v", err)
	}
}
