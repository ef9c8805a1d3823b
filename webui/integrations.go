package webui

import (
	"net/http"

	"github.com/valethq/valet"
)

// triggerLabels say in plain words when each webhook trigger fires.
var triggerLabels = map[string]string{
	valet.EventTicketCreated:        "A ticket is created",
	valet.EventTicketUpdated:        "A ticket changes (status, assignee, tags…)",
	valet.EventTicketMessageCreated: "A message or note is added to a ticket",
}

// TriggerOption is one checkbox of the webhook form.
type TriggerOption struct {
	Name    string // the event type, e.g. ticket-created
	Label   string
	Checked bool
}

// TriggerOptions returns a checkbox per trigger, checked where on says so.
func TriggerOptions(on func(name string) bool) []TriggerOption {
	out := make([]TriggerOption, 0, len(valet.WebhookTriggers))
	for _, name := range valet.WebhookTriggers {
		out = append(out, TriggerOption{Name: name, Label: triggerLabels[name], Checked: on(name)})
	}
	return out
}

// IntegrationRow is a webhook as the settings pages show it.
type IntegrationRow struct {
	valet.Integration
	CreatedBy string // the name of the user who set it up, or ""
	App       string // the name of the app that set it up, or ""
}

// Triggers lists the event types it delivers, in the catalog's order.
func (r IntegrationRow) Triggers() []string {
	var out []string
	for _, name := range valet.WebhookTriggers {
		if r.HTTP.Triggers[name] {
			out = append(out, name)
		}
	}
	return out
}

// Active reports whether deliveries are being made.
func (r IntegrationRow) Active() bool { return r.Status == valet.IntegrationActive }

// AutoDisabled reports whether valet turned it off after
// valet.MaxConsecutiveFailures failed deliveries in a row, rather than a
// person: that needs the receiver fixed before re-enabling.
func (r IntegrationRow) AutoDisabled() bool {
	return r.Status == valet.IntegrationDisabled && r.ConsecutiveFailures >= valet.MaxConsecutiveFailures
}

// MaxFailures is valet.MaxConsecutiveFailures, for the pages' wording.
func (IntegrationRow) MaxFailures() int { return valet.MaxConsecutiveFailures }

// IntegrationsPage lists the account's webhooks with a form to add one.
type IntegrationsPage struct {
	Layout
	CanManage bool // owners and admins; others see the list read-only
	// Unavailable says why webhooks cannot be set up on this server (no
	// VALET_SECRET to seal their secrets), or "".
	Unavailable  string
	Integrations []IntegrationRow // one page, newest first
	PrevURL      string
	NextURL      string
	Triggers     []TriggerOption
	New          Form // name, url
}

// IntegrationPage is one webhook: its settings, the edit form and its
// delivery log.
type IntegrationPage struct {
	Layout
	CanManage   bool
	Integration IntegrationRow
	Triggers    []TriggerOption
	Edit        Form // name, url
	Deliveries  []valet.Delivery
}

// WebhookSecretPage shows a new webhook's signing secret, the only time it
// is shown.
type WebhookSecretPage struct {
	Layout
	Integration IntegrationRow
	Secret      string
}

// Integrations renders the webhook list.
func (u *UI) Integrations(w http.ResponseWriter, status int, p *IntegrationsPage) error {
	return u.render(w, status, pageIntegrations, p)
}

// Integration renders one webhook with its delivery log.
func (u *UI) Integration(w http.ResponseWriter, status int, p *IntegrationPage) error {
	return u.render(w, status, pageIntegration, p)
}

// WebhookSecret renders the page showing a new webhook's secret once.
func (u *UI) WebhookSecret(w http.ResponseWriter, status int, p *WebhookSecretPage) error {
	return u.render(w, status, pageWebhookSecret, p)
}
