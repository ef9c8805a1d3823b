package apiclient

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"

	"github.com/valethq/valet"
)

// Webhooks, which Gorgias calls HTTP integrations. Their JSON is Gorgias's
// shape ({"type": "http", "name", "http": {"url", "method", "triggers":
// {"ticket-created": true, ...}}}); the request types here take triggers as
// a list of event types, the ones to receive.

// NewIntegration is the body of CreateIntegration.
type NewIntegration struct {
	Name string
	URL  string // where valet POSTs the signed deliveries
	// Triggers are the event types to deliver (valet.WebhookTriggers).
	Triggers []string
}

// MarshalJSON sends Gorgias's shape, triggers as a map.
func (n NewIntegration) MarshalJSON() ([]byte, error) {
	return json.Marshal(integrationBody{Type: valet.IntegrationTypeHTTP, Name: &n.Name,
		HTTP: &integrationHTTP{URL: &n.URL, Triggers: triggerSet(n.Triggers)}})
}

// IntegrationUpdate changes an integration; nil fields stay as they are.
type IntegrationUpdate struct {
	Name *string
	URL  *string
	// Triggers, when not nil, replaces the set of event types delivered.
	Triggers []string
	// Status is valet.IntegrationActive (which also re-enables an
	// integration disabled after failures and resets its failure count) or
	// valet.IntegrationDisabled.
	Status *string
}

// MarshalJSON sends only the fields to change.
func (u IntegrationUpdate) MarshalJSON() ([]byte, error) {
	b := integrationBody{Name: u.Name, Status: u.Status}
	if u.URL != nil || u.Triggers != nil {
		b.HTTP = &integrationHTTP{URL: u.URL, Triggers: triggerSet(u.Triggers)}
	}
	return json.Marshal(b)
}

type integrationBody struct {
	Type   string           `json:"type,omitempty"`
	Name   *string          `json:"name,omitempty"`
	HTTP   *integrationHTTP `json:"http,omitempty"`
	Status *string          `json:"status,omitempty"`
}

type integrationHTTP struct {
	URL      *string         `json:"url,omitempty"`
	Triggers map[string]bool `json:"triggers,omitempty"`
}

// triggerSet turns a list of event types into Gorgias's map; nil stays nil
// (unchanged on update) and an empty list becomes {} (no triggers).
func triggerSet(types []string) map[string]bool {
	if types == nil {
		return nil
	}
	m := make(map[string]bool, len(types))
	for _, t := range types {
		m[t] = true
	}
	return m
}

// Integrations returns all of the account's webhooks, newest first,
// reading every page (integrations:read).
func (c *Client) Integrations(ctx context.Context) ([]valet.Integration, error) {
	out := []valet.Integration{}
	for in, err := range walk("", func(cursor string) (*Page[valet.Integration], error) {
		return getPage[valet.Integration](ctx, c, "/api/integrations", listQuery(cursor, 0, ""))
	}) {
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// Integration returns one webhook (integrations:read).
func (c *Client) Integration(ctx context.Context, id int64) (*valet.Integration, error) {
	var out valet.Integration
	if err := c.get(ctx, idPath("/api/integrations", id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateIntegration registers a webhook and returns it with its signing
// secret (vws_…), which the API shows only this once: keep it to verify
// X-Valet-Signature (integrations:write).
func (c *Client) CreateIntegration(ctx context.Context, n NewIntegration) (*valet.Integration, string, error) {
	var out struct {
		valet.Integration
		Secret string `json:"secret"`
	}
	if err := c.post(ctx, "/api/integrations", n, &out); err != nil {
		return nil, "", err
	}
	return &out.Integration, out.Secret, nil
}

// UpdateIntegration changes a webhook and returns it as stored
// (integrations:write).
func (c *Client) UpdateIntegration(ctx context.Context, id int64, u IntegrationUpdate) (*valet.Integration, error) {
	var out valet.Integration
	if err := c.put(ctx, idPath("/api/integrations", id), "", u, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteIntegration deletes a webhook with its pending deliveries
// (integrations:write).
func (c *Client) DeleteIntegration(ctx context.Context, id int64) error {
	return c.del(ctx, idPath("/api/integrations", id), nil)
}

// Deliveries returns a webhook's newest deliveries, at most limit (1-100;
// 0 means the server's default of 30) (integrations:read).
func (c *Client) Deliveries(ctx context.Context, integrationID int64, limit int) ([]valet.Delivery, error) {
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	p, err := getPage[valet.Delivery](ctx, c, idPath("/api/integrations", integrationID)+"/deliveries", q)
	if err != nil {
		return nil, err
	}
	return p.Data, nil
}
