package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Provider describes one helpdesk's OAuth endpoints and its quirks, so the
// hub is not tied to valet.
type Provider struct {
	Name     string // template: "valet" or "gorgias"
	BaseURL  string // the helpdesk; for valet, the issuer
	Issuer   string // expected "iss" of authorization responses (RFC 9207); empty: not sent
	AuthURL  string
	TokenURL string
	// RevokeURL is the RFC 7009 endpoint; empty when the provider has none
	// (Disconnect then only forgets the tokens).
	RevokeURL   string
	UserinfoURL string
	APIBase     string // where /api/... lives
	AuthStyle   oauth2.AuthStyle
	// DefaultTTL is the access token lifetime to assume when the token
	// answer's expires_in is 0 or missing (Gorgias sends 0 for 24 h).
	DefaultTTL time.Duration
	// PKCE tells whether to send an S256 challenge (Gorgias ignores it).
	PKCE bool
}

// Client is the hub's registration with a provider.
type Client struct {
	ID, Secret  string
	RedirectURL string // the hub's callback
}

// Provider template names.
const (
	ProviderValet   = "valet"
	ProviderGorgias = "gorgias"
)

// Providers resolves a connection's provider template and holds the hub's
// client registration for each.
type Providers struct {
	HTTP    *http.Client
	Clients map[string]Client // by template name
	// GorgiasURL is the Gorgias base URL with {account} standing for the
	// account; "https://{account}.gorgias.com" unless a test points it at a
	// fake.
	GorgiasURL string

	mu         sync.Mutex
	discovered map[string]*Provider // by issuer
}

// Resolve returns the provider of template name for a helpdesk: for valet,
// baseURL is the issuer and its discovery document is fetched (and
// cached); for gorgias, account names the shop.
func (ps *Providers) Resolve(ctx context.Context, name, baseURL, account string) (*Provider, error) {
	switch name {
	case ProviderValet:
		return ps.discover(ctx, baseURL)
	case ProviderGorgias:
		if !validAccount(account) {
			return nil, fmt.Errorf("hub: %q is not a Gorgias account name", account)
		}
		tmpl := ps.GorgiasURL
		if tmpl == "" {
			tmpl = "https://{account}.gorgias.com"
		}
		base := strings.ReplaceAll(tmpl, "{account}", account)
		return &Provider{Name: ProviderGorgias, BaseURL: base, AuthURL: base + "/oauth/authorize",
			TokenURL: base + "/oauth/token", APIBase: base, AuthStyle: oauth2.AuthStyleInHeader,
			DefaultTTL: 24 * time.Hour}, nil
	}
	return nil, fmt.Errorf("hub: unknown provider %q", name)
}

func validAccount(a string) bool {
	if a == "" || len(a) > 63 {
		return false
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// discover reads the OpenID configuration of a valet issuer.
func (ps *Providers) discover(ctx context.Context, issuer string) (*Provider, error) {
	issuer = strings.TrimSuffix(issuer, "/")
	ps.mu.Lock()
	p := ps.discovered[issuer]
	ps.mu.Unlock()
	if p != nil {
		return p, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, err
	}
	resp, err := ps.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("hub: discovery of %s: %w", issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("hub: discovery of %s: HTTP %d", issuer, resp.StatusCode)
	}
	var doc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		RevocationEndpoint    string `json:"revocation_endpoint"`
		UserinfoEndpoint      string `json:"userinfo_endpoint"`
		IssParameter          bool   `json:"authorization_response_iss_parameter_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, fmt.Errorf("hub: discovery of %s: %w", issuer, err)
	}
	// OpenID Connect Discovery §4.3: the document must name the issuer
	// it was fetched from, or anyone could point us elsewhere.
	if doc.Issuer != issuer {
		return nil, fmt.Errorf("hub: discovery of %s names issuer %q", issuer, doc.Issuer)
	}
	if doc.AuthorizationEndpoint == "" || doc.TokenEndpoint == "" {
		return nil, errors.New("hub: discovery lacks the authorization or token endpoint")
	}
	p = &Provider{Name: ProviderValet, BaseURL: issuer, AuthURL: doc.AuthorizationEndpoint,
		TokenURL: doc.TokenEndpoint, RevokeURL: doc.RevocationEndpoint, UserinfoURL: doc.UserinfoEndpoint,
		APIBase: issuer, AuthStyle: oauth2.AuthStyleInHeader, DefaultTTL: 24 * time.Hour, PKCE: true}
	if doc.IssParameter {
		p.Issuer = issuer
	}
	ps.mu.Lock()
	if ps.discovered == nil {
		ps.discovered = make(map[string]*Provider)
	}
	ps.discovered[issuer] = p
	ps.mu.Unlock()
	return p, nil
}

func (ps *Providers) httpClient() *http.Client {
	if ps.HTTP != nil {
		return ps.HTTP
	}
	return http.DefaultClient
}

// OAuth2 returns the x/oauth2 configuration of the hub's client at p.
func (ps *Providers) OAuth2(p *Provider, scopes ...string) (*oauth2.Config, error) {
	c, ok := ps.Clients[p.Name]
	if !ok || c.ID == "" {
		return nil, fmt.Errorf("hub: no client registration for provider %q", p.Name)
	}
	return &oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: c.RedirectURL, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, AuthStyle: p.AuthStyle}}, nil
}

// Revoke asks the provider to revoke token (RFC 7009). Providers without
// a revocation endpoint answer nil: there is nothing to call.
func (ps *Providers) Revoke(ctx context.Context, p *Provider, token, hint string) error {
	if p.RevokeURL == "" || token == "" {
		return nil
	}
	c := ps.Clients[p.Name]
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.RevokeURL, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := ps.httpClient().Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("hub: revocation answered HTTP %d", resp.StatusCode)
	}
	return nil
}
