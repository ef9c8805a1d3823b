package valet

import (
	"context"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Webhooks (Gorgias calls them HTTP integrations): an account registers a
// URL and the events it wants; valet delivers them from a durable outbox,
// signed with the integration's secret.

// PrefixWebhookSecret marks webhook signing secrets.
const PrefixWebhookSecret = "vws_"

// IntegrationTypeHTTP is the only integration type.
const IntegrationTypeHTTP = "http"

// Integration statuses.
const (
	IntegrationActive   = "active"
	IntegrationDisabled = "disabled" // by hand, or after MaxConsecutiveFailures
)

// Delivery rules (issue 4): retried with exponential backoff and jitter for
// DeliveryRetryWindow; an integration is disabled after
// MaxConsecutiveFailures failed attempts in a row, as Gorgias does.
const (
	DeliveryRetryWindow    = 24 * time.Hour
	MaxConsecutiveFailures = 100
)

// WebhookTriggers are the event types an integration may subscribe to.
var WebhookTriggers = []string{EventTicketCreated, EventTicketUpdated, EventTicketMessageCreated}

// Integration is an HTTP webhook of one account. Its JSON is Gorgias's shape:
//
//	{"id": 3, "type": "http", "name": "...",
//	 "http": {"url": "https://...", "method": "POST",
//	          "triggers": {"ticket-created": true, "ticket-updated": false, "ticket-message-created": true}},
//	 "status": "active", "consecutive_failures": 0, "secret_hint": "…a1b2",
//	 "app_id": 7, "app_access_ended": false,
//	 "created_datetime": ..., "updated_datetime": ..., "disabled_datetime": null}
//
// The signing secret (vws_…) is returned once, in the creation answer, as
// "secret"; the store keeps it sealed, because signing needs it back.
type Integration struct {
	ID                  int64           `json:"id"`
	AccountID           int64           `json:"-"`
	Type                string          `json:"type"`
	Name                string          `json:"name"`
	HTTP                IntegrationHTTP `json:"http"`
	Status              string          `json:"status"`
	ConsecutiveFailures int             `json:"consecutive_failures"`
	SecretHint          string          `json:"secret_hint"`
	AppID               *int64          `json:"app_id"` // the OAuth app that created it, if any
	CreatedByUserID     *int64          `json:"created_by_user_id"`
	// AppAccessEnded is true for a webhook an app set up once the app no
	// longer reads the account's tickets: its grant was revoked or
	// narrowed, the app deleted, or the person who installed it removed.
	// Nothing is delivered then (pending deliveries fail), whatever
	// Status says; it delivers again, from new events on, if that person
	// installs the app again with tickets:read.
	AppAccessEnded   bool       `json:"app_access_ended"`
	CreatedDatetime  time.Time  `json:"created_datetime"`
	UpdatedDatetime  time.Time  `json:"updated_datetime"`
	DisabledDatetime *time.Time `json:"disabled_datetime"`
	// LastEventID is the dispatcher's cursor: events up to it have been
	// turned into deliveries. Not part of the API.
	LastEventID int64 `json:"-"`
}

// IntegrationHTTP is where and what an integration delivers.
type IntegrationHTTP struct {
	URL      string          `json:"url"`
	Method   string          `json:"method"` // always POST
	Triggers map[string]bool `json:"triggers"`
}

// Subscribes reports whether the integration wants events of type typ.
func (i *Integration) Subscribes(typ string) bool { return i.HTTP.Triggers[typ] }

// Delivery statuses.
const (
	DeliveryPending   = "pending"   // waiting for its next attempt
	DeliveryDelivered = "delivered" // a 2xx answer
	DeliveryFailed    = "failed"    // gave up: retry window over, or the integration was disabled/deleted
)

// Delivery is one event to send to one integration, and the log of its
// attempts. Rows are the outbox: nothing is lost across restarts.
type Delivery struct {
	ID              int64      `json:"id"`
	IntegrationID   int64      `json:"integration_id"`
	AccountID       int64      `json:"-"`
	EventID         int64      `json:"event_id"`
	EventType       string     `json:"event_type"`
	Status          string     `json:"status"`
	Attempts        int        `json:"attempts"`
	LastStatusCode  int        `json:"last_status_code,omitempty"` // HTTP status of the last attempt, 0 if none answered
	LastError       string     `json:"last_error,omitempty"`
	CreatedDatetime time.Time  `json:"created_datetime"`
	NextAttempt     time.Time  `json:"next_attempt_datetime"`
	LastAttempt     *time.Time `json:"last_attempt_datetime"`
}

// DeliveryJob is a claimed delivery with what sending it needs.
type DeliveryJob struct {
	Delivery
	URL         string
	Secret      string // the integration's vws_ secret, unsealed
	AccountName string
	Event       Event
}

// DeliveryResult is the outcome of one attempt.
type DeliveryResult struct {
	DeliveryID int64
	OK         bool
	StatusCode int    // 0: no answer (network error, timeout)
	Error      string // short, for the delivery log
	// NextAttempt is when to try again after a failure; zero, or past the
	// retry window, means give up.
	NextAttempt time.Time
}

// IntegrationService keeps webhooks and their outbox.
type IntegrationService interface {
	// CreateIntegration validates and stores in (AccountID set; Type, Name,
	// HTTP.URL, HTTP.Triggers) and returns its signing secret, shown once.
	// Its cursor starts at the account's newest event: it receives what
	// happens from now on. AppID and CreatedByUserID default to the
	// context's Actor. Errors: EINVALID, ENOTFOUND (no such account),
	// EINTERNAL (the server has no secret to seal it with).
	CreateIntegration(ctx context.Context, in *Integration) (secret string, err error)
	// FindIntegration errors: ENOTFOUND (also for another account's).
	FindIntegration(ctx context.Context, accountID, id int64) (*Integration, error)
	// ListIntegrations returns a page of the account's integrations,
	// newest first; order_by id (desc by default, or id:asc). Errors:
	// EINVALID (limit, order_by, cursor).
	ListIntegrations(ctx context.Context, accountID int64, opt ListOptions) (*Page[Integration], error)
	// UpdateIntegration stores name, URL, triggers and status (by AccountID
	// and ID; an empty status keeps the current one) and fills in with the
	// stored integration. Setting status
	// disabled fails its pending deliveries; setting it active re-enables a
	// disabled integration, resets its failure count and moves its cursor
	// to the newest event (what happened while it was off is not sent).
	// Errors: EINVALID, ENOTFOUND.
	UpdateIntegration(ctx context.Context, in *Integration) error
	// DeleteIntegration deletes it with its deliveries. Errors: ENOTFOUND.
	DeleteIntegration(ctx context.Context, accountID, id int64) error
	// ListDeliveries returns an integration's newest deliveries (limit
	// 1-100, 0 meaning DefaultLimit). Errors: EINVALID, ENOTFOUND.
	ListDeliveries(ctx context.Context, accountID, integrationID int64, limit int) ([]Delivery, error)

	// EnqueueDeliveries turns events after each active integration's cursor
	// into pending deliveries for the integrations that subscribe to them
	// and advances the cursors, in one transaction, at most limit events
	// per integration. It returns how many deliveries it made.
	EnqueueDeliveries(ctx context.Context, limit int) (int, error)
	// ClaimDeliveries leases up to limit pending deliveries whose next
	// attempt is due, oldest first, for lease long: another node claims
	// them only after the lease ran out, so each attempt is made once.
	ClaimDeliveries(ctx context.Context, limit int, lease time.Duration) ([]DeliveryJob, error)
	// CompleteDelivery records an attempt's result: delivered, rescheduled,
	// or failed when r.NextAttempt is zero or past the retry window. It
	// keeps the integration's consecutive failure count and disables it at
	// MaxConsecutiveFailures, failing its pending deliveries. A delivery
	// that is no longer pending (its integration was disabled during the
	// attempt) is left as it is. Errors: ENOTFOUND (also when the
	// integration was deleted during the attempt).
	CompleteDelivery(ctx context.Context, r DeliveryResult) error
}

// Validate fills an integration's defaults (type http, name "Webhook",
// method POST, status active, every known trigger present in the map) and
// reports EINVALID for what the API and settings pages must refuse.
func (in *Integration) Validate() error {
	p := Problems{}
	if in.Type == "" {
		in.Type = IntegrationTypeHTTP
	}
	if in.Type != IntegrationTypeHTTP {
		p.Add("type", `must be "http"`)
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" {
		in.Name = "Webhook"
	}
	if utf8.RuneCountInString(in.Name) > 100 {
		p.Add("name", "must be 1-100 characters")
	}
	// A webhook URL follows the rule of redirect URIs: https, or http only on
	// a loopback host (a receiver on the same machine, for development); no
	// fragment, no user information.
	if err := ValidateRedirectURI(in.HTTP.URL); err != nil {
		p.Add("http.url", err.Error())
	} else if literalNeverDelivered(in.HTTP.URL) {
		p.Add("http.url", "must not be a link-local, multicast or unspecified address: webhooks are never delivered there")
	}
	in.HTTP.Method = strings.ToUpper(strings.TrimSpace(in.HTTP.Method))
	if in.HTTP.Method == "" {
		in.HTTP.Method = "POST"
	}
	if in.HTTP.Method != "POST" {
		p.Add("http.method", "must be POST")
	}
	enabled := false
	for typ, on := range in.HTTP.Triggers {
		if !slices.Contains(WebhookTriggers, typ) {
			p.Add("http.triggers", "unknown trigger: "+typ)
		}
		enabled = enabled || on
	}
	if !enabled {
		p.Add("http.triggers", "must enable at least one of "+strings.Join(WebhookTriggers, ", "))
	}
	if in.Status == "" {
		in.Status = IntegrationActive
	}
	if in.Status != IntegrationActive && in.Status != IntegrationDisabled {
		p.Add("status", `must be "active" or "disabled"`)
	}
	if err := p.Err(); err != nil {
		return err
	}
	triggers := make(map[string]bool, len(WebhookTriggers))
	for _, typ := range WebhookTriggers {
		triggers[typ] = in.HTTP.Triggers[typ]
	}
	in.HTTP.Triggers = triggers
	return nil
}

// WebhookNeverDelivered reports whether no webhook is delivered to ip,
// whatever the server's settings: link-local addresses, where clouds serve
// instance credentials, multicast and unspecified ones. The dispatcher
// checks it on the address it dials; registration on an address written
// in the URL.
func WebhookNeverDelivered(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified()
}

// literalNeverDelivered reports whether rawURL's host is an address
// literal WebhookNeverDelivered refuses, so that such a URL is refused
// when it is registered rather than at every delivery. Names are checked
// when they are dialled.
func literalNeverDelivered(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(u.Hostname())
	return err == nil && WebhookNeverDelivered(ip)
}
