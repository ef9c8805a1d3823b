package authserver_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/valethq/valet"
)

// call sends one request to the server and decodes a JSON answer.
func (e *env) call(method, path, contentType, body string, header http.Header) (*http.Response, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.issuer+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	must(e.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp, out
}

func (e *env) basicAuth() http.Header {
	req, _ := http.NewRequest(http.MethodPost, "/", nil)
	req.SetBasicAuth(e.app.ClientID, e.secret)
	return http.Header{"Authorization": req.Header["Authorization"]}
}

// TestClientEndpointsTakeFormPosts: the token, revocation and
// introspection endpoints take a POSTed form only, so that secrets never
// travel in a URL; a refused exchange leaves the code usable.
func TestClientEndpointsTakeFormPosts(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "tickets:read")
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
		"code_verifier": {verifier}, "client_id": {e.app.ClientID}, "client_secret": {e.secret}}
	form := "application/x-www-form-urlencoded"
	for _, path := range []string{"/oauth/token", "/oauth/revoke", "/oauth/introspect"} {
		resp, out := e.call(http.MethodGet, path+"?"+exchange.Encode()+"&token=x", "", "", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" || out["error"] != "invalid_request" {
			t.Errorf("GET %s: %d %v %v", path, resp.StatusCode, resp.Header, out)
		}
		resp, out = e.call(http.MethodPost, path+"?"+exchange.Encode(), form, "token=x", nil)
		wantOAuthError(t, resp.StatusCode, out, http.StatusBadRequest, "invalid_request")
		if !strings.Contains(out["error_description"].(string), "not in the URL") {
			t.Errorf("POST %s with a query: %v", path, out)
		}
		body, _ := json.Marshal(map[string]string{"grant_type": "authorization_code", "code": code, "token": "x"})
		resp, out = e.call(http.MethodPost, path, "application/json", string(body), e.basicAuth())
		wantOAuthError(t, resp.StatusCode, out, http.StatusBadRequest, "invalid_request")
		if !strings.Contains(out["error_description"].(string), "x-www-form-urlencoded") {
			t.Errorf("JSON body to %s: %v", path, out)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s refusal is cacheable: %v", path, resp.Header)
		}
	}
	resp, out := e.call(http.MethodPost, "/oauth/token", form, exchange.Encode(), nil)
	if resp.StatusCode != http.StatusOK || out["access_token"] == nil {
		t.Fatalf("the code after the refusals: %d %v", resp.StatusCode, out)
	}
}

// TestClientAuthenticationRequired: no credentials, or a malformed Basic
// header, is invalid_client with 401 (RFC 6749 §5.2).
func TestClientAuthenticationRequired(t *testing.T) {
	e := newEnv(t)
	form := "application/x-www-form-urlencoded"
	for _, path := range []string{"/oauth/token", "/oauth/revoke", "/oauth/introspect"} {
		for name, header := range map[string]http.Header{
			"none":      nil,
			"malformed": {"Authorization": {"Basic !!!"}},
			"bearer":    {"Authorization": {"Bearer vat_x"}},
		} {
			resp, out := e.call(http.MethodPost, path, form, "grant_type=authorization_code&code=x&token=x", header)
			wantOAuthError(t, resp.StatusCode, out, http.StatusUnauthorized, "invalid_client")
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s, %s credentials: no WWW-Authenticate", path, name)
			}
		}
	}
}

// TestPKCEFormat: challenges and verifiers must have RFC 7636's form; a
// malformed verifier is refused before the code is spent.
func TestPKCEFormat(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, challenge := range []string{"x", strings.Repeat("a", 42), strings.Repeat("a", 42) + "="} {
		u := e.oauth2("tickets:read").AuthCodeURL("s", oauth2.SetAuthURLParam("code_challenge", challenge),
			oauth2.SetAuthURLParam("code_challenge_method", "S256"))
		q := appRedirect(t, b.authorize(u, "allow"))
		if q.Get("error") != "invalid_request" || q.Get("iss") != e.issuer {
			t.Errorf("challenge %q: %v", challenge, q)
		}
	}
	code, verifier, _ := e.code(b, "tickets:read")
	for _, bad := range []string{"x", verifier[:42], verifier + "!"} {
		status, out := e.exchange(code, bad)
		wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_request")
	}
	if status, out := e.exchange(code, verifier); status != http.StatusOK {
		t.Fatalf("the code after malformed verifiers: %d %v", status, out)
	}
}

func TestUnsupportedGrantTypes(t *testing.T) {
	e := newEnv(t)
	for _, gt := range []string{"client_credentials", "password", "urn:ietf:params:oauth:grant-type:jwt-bearer",
		"urn:ietf:params:oauth:grant-type:token-exchange", "urn:ietf:params:oauth:grant-type:device_code", "implicit"} {
		status, out, _ := e.tokenPost(url.Values{"grant_type": {gt}, "assertion": {"x.y.z"}})
		wantOAuthError(t, status, out, http.StatusBadRequest, "unsupported_grant_type")
	}
	status, out, _ := e.tokenPost(url.Values{"code": {"x"}})
	wantOAuthError(t, status, out, http.StatusBadRequest, "invalid_request")
}

// TestIntrospectionOfOwnTokens: an app introspects its own tokens only.
func TestIntrospectionOfOwnTokens(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "tickets:read")
	_, tokens := e.exchange(code, verifier)
	other := &valet.App{Name: "Other", RedirectURIs: []string{"https://other.example/cb"}, Scopes: valet.ScopeSet{"tickets:read"}}
	otherSecret, err := e.store.RegisterApp(ctx, other)
	must(t, err)
	introspect := func(clientID, secret string) map[string]any {
		body := url.Values{"token": {tokens["access_token"].(string)}, "client_id": {clientID}, "client_secret": {secret}}
		resp, out := e.call(http.MethodPost, "/oauth/introspect", "application/x-www-form-urlencoded", body.Encode(), nil)
		wantStatus(t, "introspect", resp.StatusCode, http.StatusOK)
		return out
	}
	if out := introspect(other.ClientID, otherSecret); out["active"] != false || len(out) != 1 {
		t.Fatalf("another app's token: %v", out)
	}
	if out := introspect(e.app.ClientID, e.secret); out["active"] != true || out["client_id"] != e.app.ClientID {
		t.Fatalf("own token: %v", out)
	}
}

// TestUserinfoErrors: RFC 6750 §3 challenges, and no token in the URL.
func TestUserinfoErrors(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "tickets:read")
	_, tokens := e.exchange(code, verifier)
	noOpenID := tokens["access_token"].(string)
	code, verifier, _ = e.code(e.browser(), "openid", "email")
	_, tokens = e.exchange(code, verifier)
	good := tokens["access_token"].(string)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	for _, c := range []struct {
		name      string
		query     string
		header    http.Header
		status    int
		challenge string
	}{
		{"no token", "", nil, http.StatusUnauthorized, `Bearer realm="valet"`},
		{"unknown token", "", bearer("vat_unknown"), http.StatusUnauthorized, `Bearer realm="valet", error="invalid_token"`},
		{"no openid", "", bearer(noOpenID), http.StatusForbidden, `Bearer realm="valet", error="insufficient_scope", scope="openid"`},
		{"token in the URL", "?access_token=" + good, nil, http.StatusBadRequest, `Bearer realm="valet", error="invalid_request"`},
		{"good", "", bearer(good), http.StatusOK, ""},
	} {
		resp, out := e.call(http.MethodGet, "/oauth/userinfo"+c.query, "", "", c.header)
		if resp.StatusCode != c.status || resp.Header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%s: %d %q %v", c.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), out)
		}
	}
}

// TestDiscoveryClaimsOnlyWhatExists: no device flow, no JWT client
// authentication, no request objects.
func TestDiscoveryClaimsOnlyWhatExists(t *testing.T) {
	e := newEnv(t)
	_, d := e.call(http.MethodGet, "/.well-known/openid-configuration", "", "", nil)
	for _, key := range []string{"device_authorization_endpoint", "token_endpoint_auth_signing_alg_values_supported",
		"revocation_endpoint_auth_signing_alg_values_supported", "introspection_endpoint_auth_signing_alg_values_supported",
		"request_object_signing_alg_values_supported", "end_session_endpoint"} {
		if v, ok := d[key]; ok {
			t.Errorf("discovery advertises %s: %v", key, v)
		}
	}
	if prompts, _ := json.Marshal(d["prompt_values_supported"]); string(prompts) != `["none","login","consent","select_account"]` {
		t.Errorf("prompt_values_supported: %s", prompts)
	}
	if d["request_uri_parameter_supported"] != false || d["request_parameter_supported"] == true {
		t.Errorf("request objects: %v %v", d["request_uri_parameter_supported"], d["request_parameter_supported"])
	}
	for _, key := range []string{"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "revocation_endpoint",
		"introspection_endpoint", "jwks_uri"} {
		u, _ := d[key].(string)
		resp, _ := e.call(http.MethodOptions, strings.TrimPrefix(u, e.issuer), "", "", nil)
		if !strings.HasPrefix(u, e.issuer+"/") || resp.StatusCode == http.StatusNotFound {
			t.Errorf("%s %q: %d", key, u, resp.StatusCode)
		}
	}
}

// TestAuthorizeProtocolErrors: each refusal says what is wrong, where the
// app (or the person) can read it.
func TestAuthorizeProtocolErrors(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	base := e.oauth2("tickets:read")
	pkce := oauth2.S256ChallengeOption(oauth2.GenerateVerifier())

	// An unknown client is the request's fault, not the server's.
	unknown := *base
	unknown.ClientID = "nope"
	resp, body := b.get(unknown.AuthCodeURL("s"))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid_client") || strings.Contains(body, "server_error") {
		t.Errorf("unknown client: %d\n%s", resp.StatusCode, body)
	}
	// A callback without a valid request keeps its message.
	resp, body = b.get(e.issuer + "/oauth/authorize/callback?id=AAAA")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "<code>invalid_request</code>") {
		t.Errorf("callback: %d\n%s", resp.StatusCode, body)
	}

	redirected := func(u string) url.Values {
		t.Helper()
		a := b.authorize(u, "allow")
		loc, err := url.Parse(a.resp.Header.Get("Location"))
		must(t, err)
		if loc.Scheme+"://"+loc.Host+loc.Path != redirectURI {
			t.Fatalf("%s: %d %s\n%s", u, a.resp.StatusCode, loc, a.body)
		}
		q := loc.Query()
		if loc.Fragment != "" {
			q, err = url.ParseQuery(loc.Fragment)
			must(t, err)
		}
		return q
	}
	for _, c := range []struct {
		name   string
		params []oauth2.AuthCodeOption
		want   string
	}{
		{"fragment mode", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("response_mode", "fragment")}, "invalid_request"},
		{"implicit", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("response_type", "token")}, "unsupported_response_type"},
		{"hybrid", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("response_type", "code id_token")}, "unsupported_response_type"},
		{"request_uri", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("request_uri", "https://app.example/r/1")}, "request_uri_not_supported"},
	} {
		q := redirected(base.AuthCodeURL("s-"+c.name, append(c.params, pkce)...))
		if q.Get("error") != c.want || q.Get("state") != "s-"+c.name || q.Get("iss") != e.issuer {
			t.Errorf("%s: %v", c.name, q)
		}
	}
}

// TestRevokingAnotherAppsToken: refused with unauthorized_client (RFC 7009
// §2.1), and the token keeps working.
func TestRevokingAnotherAppsToken(t *testing.T) {
	e := newEnv(t)
	code, verifier, _ := e.code(e.browser(), "offline", "tickets:read")
	_, tokens := e.exchange(code, verifier)
	other := &valet.App{Name: "Other", RedirectURIs: []string{"https://other.example/cb"}, Scopes: valet.ScopeSet{"tickets:read"}}
	otherSecret, err := e.store.RegisterApp(ctx, other)
	must(t, err)
	for _, tok := range []string{tokens["access_token"].(string), tokens["refresh_token"].(string)} {
		body := url.Values{"token": {tok}, "client_id": {other.ClientID}, "client_secret": {otherSecret}}
		resp, out := e.call(http.MethodPost, "/oauth/revoke", "application/x-www-form-urlencoded", body.Encode(), nil)
		wantOAuthError(t, resp.StatusCode, out, http.StatusBadRequest, "unauthorized_client")
	}
	wantStatus(t, "the token after another app's revocation", e.api(tokens["access_token"].(string), "/api/tickets"), http.StatusOK)
}
