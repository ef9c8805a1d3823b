package valet_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/valethq/valet"
)

func TestValidateRedirectURI(t *testing.T) {
	tests := []struct {
		uri string
		ok  bool
	}{
		{"https://app.example/callback", true},
		{"https://app.example:8443/cb?x=1", true},
		{"http://localhost:8080/callback", true},
		{"http://127.0.0.1/cb", true},
		{"http://[::1]:9000/cb", true},
		{"http://app.example/callback", false},
		{"https://app.example/cb#frag", false},
		{"https://*.example/cb", false},
		{"https://app.example/*", false},
		{"https://user:pw@app.example/cb", false},
		{"/relative/cb", false},
		{"app.example/cb", false},
		{"ftp://app.example/cb", false},
		{"javascript:alert(1)", false},
		{"custom-scheme:/cb", false},
		{"", false},
		{"https://app.example/c b", false},
		{"http://localhost.evil.example/cb", false},
		{"HTTPS://app.example/cb", false},
		{"Http://localhost:8080/cb", false},
		{"https://App.Example/CB", true}, // matched as registered
	}
	for _, tt := range tests {
		err := valet.ValidateRedirectURI(tt.uri)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateRedirectURI(%q) = %v, want ok=%v", tt.uri, err, tt.ok)
		}
	}
}

func TestAppValidate(t *testing.T) {
	good := func() valet.App {
		return valet.App{Name: "Hub", RedirectURIs: []string{"https://hub.example/cb"},
			Scopes: valet.ScopeSet{"openid", "tickets:read"}}
	}
	a := good()
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.IDTokenAlg != valet.AlgRS256 {
		t.Errorf("default alg = %q", a.IDTokenAlg)
	}
	tests := []struct {
		name  string
		edit  func(*valet.App)
		field string
	}{
		{"no name", func(a *valet.App) { a.Name = " " }, "name"},
		{"no redirect", func(a *valet.App) { a.RedirectURIs = nil }, "redirect_uris"},
		{"bad redirect", func(a *valet.App) { a.RedirectURIs = []string{"http://x.example/cb"} }, "redirect_uris"},
		{"unknown scope", func(a *valet.App) { a.Scopes = valet.ScopeSet{"admin"} }, "scopes"},
		{"leeway", func(a *valet.App) { a.RefreshLeeway = 61 }, "refresh_reuse_leeway"},
		{"negative leeway", func(a *valet.App) { a.RefreshLeeway = -1 }, "refresh_reuse_leeway"},
		{"alg", func(a *valet.App) { a.IDTokenAlg = "HS256" }, "id_token_signed_response_alg"},
		{"logo", func(a *valet.App) { a.LogoURL = "javascript:x" }, "logo_url"},
		{"http logo", func(a *valet.App) { a.LogoURL = "http://cdn.example/logo.png" }, "logo_url"},
		{"long name", func(a *valet.App) { a.Name = strings.Repeat("é", 101) }, "name"},
	}
	for _, tt := range tests {
		a := good()
		tt.edit(&a)
		err := a.Validate()
		if valet.ErrorCode(err) != valet.EINVALID || len(valet.ErrorFields(err)[tt.field]) == 0 {
			t.Errorf("%s: got %v (fields %v), want a problem with %s", tt.name, err, valet.ErrorFields(err), tt.field)
		}
	}
}

func TestScopeSetUnionMinus(t *testing.T) {
	a := valet.ScopeSet{"openid", "tickets:read"}
	b := valet.ScopeSet{"tickets:read", "email"}
	if got := a.Union(b).String(); got != "email openid tickets:read" {
		t.Errorf("Union = %q", got)
	}
	if got := b.Minus(a).String(); got != "email" {
		t.Errorf("Minus = %q", got)
	}
}

func TestSealKey(t *testing.T) {
	key, err := valet.DeriveKey([]byte("0123456789abcdef-server-secret"), "signing keys")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := valet.SealKey(key, []byte("private"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("private")) {
		t.Fatal("sealed value holds the plaintext")
	}
	got, err := valet.OpenKey(key, sealed)
	if err != nil || string(got) != "private" {
		t.Fatalf("OpenKey = %q, %v", got, err)
	}
	other, _ := valet.DeriveKey([]byte("another-secret-of-16+ bytes"), "signing keys")
	if _, err := valet.OpenKey(other, sealed); err == nil {
		t.Fatal("opened with the wrong key")
	}
	if _, err := valet.DeriveKey([]byte("short"), "x"); err == nil {
		t.Fatal("short secret accepted")
	}
}

// TestAppValidateMessages: lengths count characters, and each problem is
// named once, as it is.
func TestAppValidateMessages(t *testing.T) {
	a := valet.App{Name: strings.Repeat("é", 100), Description: strings.Repeat("説", 1000),
		DeveloperName: strings.Repeat("ß", 100), RedirectURIs: []string{"https://hub.example/cb"},
		Scopes: valet.ScopeSet{"openid"}, LogoURL: "https://cdn.example/logo.png"}
	if err := a.Validate(); err != nil {
		t.Fatalf("non-ASCII text within the limits: %v", err)
	}
	a.HomepageURL = "https://hub.example/" + strings.Repeat("a", 2000)
	a.Scopes = valet.ScopeSet{"openid", "admin"}
	fields := valet.ErrorFields(a.Validate())
	if got := fields["homepage_url"]; len(got) != 1 || got[0] != "must be at most 2000 characters" {
		t.Errorf("long homepage: %q", got)
	}
	if got := fields["scopes"]; len(got) != 1 || !strings.Contains(got[0], "unknown scope: admin") {
		t.Errorf("unknown scope: %q", got)
	}
}
