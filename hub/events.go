package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/valethq/valet"
	"github.com/valethq/valet/apiclient"
	"github.com/valethq/valet/webhook"
)

// How activity reached the hub (valet.Activity.Via).
const (
	ViaWebhook = "webhook"
	ViaPoll    = "poll"
)

// Receiver limits.
const (
	// MaxWebhookBody bounds a delivery's body: an event is a few KiB, and
	// the receiver is open to anyone who can reach the hub.
	MaxWebhookBody = 1 << 20
	// WebhookTolerance is how old (or how far ahead) a delivery's signed
	// timestamp may be: valet's own default, wide enough for clock skew and
	// narrow enough that a captured delivery cannot be replayed later.
	WebhookTolerance = 5 * time.Minute
)

// Polling.
const (
	// SweepEvery: connections with a webhook are polled once every this
	// many poller rounds, to catch what a lost or disabled webhook missed.
	SweepEvery = 10
	// pollPages bounds the pages (of 100 events) one poll reads, so that a
	// connection with a long history catches up over several rounds
	// instead of holding a poller slot for minutes.
	pollPages = 10
	// pollConcurrency bounds the connections polled at once.
	pollConcurrency = 4
	// pollTimeout bounds one connection's poll.
	pollTimeout = time.Minute
)

// Outcomes of a delivery, the label of the webhook counter.
const (
	outcomeRecorded  = "recorded"
	outcomeDuplicate = "duplicate"
	outcomeForged    = "invalid_signature"
	outcomeUnknown   = "unknown_connection"
	outcomeMalformed = "malformed"
	outcomeError     = "error"
)

// Events brings the helpdesk's events into the hub's activity feed: it
// registers a webhook (an HTTP integration) on the helpdesk when a
// connection is made with integrations:write, receives and verifies the
// deliveries (ServeHTTP, mounted at POST /webhooks/{id}), and polls
// /api/events for connections without a webhook, and now and then for
// those with one. Both paths record through HubStore.RecordActivity, which
// keeps each (connection, event id) once, so an event that arrives twice
// (a webhook retry, a poll overlapping a webhook) is shown once.
//
// Events is a prometheus.Collector of its counters.
type Events struct {
	store     valet.HubStore
	vault     *Vault
	tokens    *Tokens
	publicURL string
	clock     valet.Clock
	log       *slog.Logger

	deliveries *prometheus.CounterVec // by outcome
	polled     prometheus.Counter     // events newly recorded by polling

	mu sync.Mutex
	// swept is, per connection with a webhook, the newest event id this
	// process has read by polling. Sweeps start there rather than at the
	// stored cursor, which webhooks may have moved past an event still
	// being retried: reading again what webhooks brought costs a page,
	// and RecordActivity keeps each event once.
	swept map[int64]int64
}

var (
	_ http.Handler         = (*Events)(nil)
	_ prometheus.Collector = (*Events)(nil)
)

// NewEvents returns the hub's event intake. publicURL is where the helpdesk
// reaches the hub (its --addr as seen from the helpdesk); deliveries go to
// publicURL + "/webhooks/{connection id}".
func NewEvents(store valet.HubStore, vault *Vault, tokens *Tokens, publicURL string, clock valet.Clock, log *slog.Logger) *Events {
	if clock == nil {
		clock = valet.SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Events{store: store, vault: vault, tokens: tokens, publicURL: strings.TrimSuffix(publicURL, "/"),
		clock: clock, log: log.With("component", "hub.events"),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "valet_hub_webhook_deliveries_total",
			Help: "Webhook deliveries received by the hub, by outcome.",
		}, []string{"outcome"}),
		polled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "valet_hub_polled_events_total",
			Help: "Helpdesk events the hub recorded by polling /api/events (not known from a webhook).",
		}),
		swept: make(map[int64]int64)}
	// Every outcome is a series from the start, so a rate() alert on
	// refusals sees its first one.
	for _, o := range []string{outcomeRecorded, outcomeDuplicate, outcomeForged, outcomeUnknown, outcomeMalformed, outcomeError} {
		e.deliveries.WithLabelValues(o)
	}
	return e
}

// Describe implements prometheus.Collector.
func (e *Events) Describe(ch chan<- *prometheus.Desc) {
	e.deliveries.Describe(ch)
	e.polled.Describe(ch)
}

// Collect implements prometheus.Collector.
func (e *Events) Collect(ch chan<- prometheus.Metric) {
	e.deliveries.Collect(ch)
	e.polled.Collect(ch)
}

// WebhookURL is where the helpdesk delivers a connection's events.
func (e *Events) WebhookURL(connectionID int64) string {
	return e.publicURL + "/webhooks/" + strconv.FormatInt(connectionID, 10)
}

// Register creates a webhook on the helpdesk for a connection granted
// integrations:write, delivering ticket-created, ticket-updated and
// ticket-message-created to WebhookURL, and stores its id and sealed
// signing secret. A connection without that scope or tickets:read (which
// the helpdesk requires of a webhook delivering tickets), or of a provider
// other than valet, gets none and nil: polling covers it. A webhook left from an
// earlier connection (a Reconnect) is deleted first, so that events do not
// arrive twice. conn.IntegrationID is set.
//
// Errors: from the helpdesk's API (wrapping ErrRevoked for a revoked
// connection) and from the store.
func (e *Events) Register(ctx context.Context, conn *valet.Connection) error {
	// The helpdesk delivers tickets only to a credential that may read them.
	if conn.Provider != ProviderValet || !slices.Contains(conn.Scopes, string(valet.ScopeIntegrationsWrite)) ||
		!slices.Contains(conn.Scopes, string(valet.ScopeTicketsRead)) {
		return nil
	}
	stored, sealed, err := e.store.FindConnection(ctx, conn.ID)
	if err != nil {
		return err
	}
	// The store keeps the webhook secret under the key the tokens are
	// sealed with, and the vault seals only with its current key: a
	// connection still sealed under an old key (rotate-key pending) would
	// get a secret nobody can open.
	if sealed.KeyID != e.vault.KeyID() {
		return fmt.Errorf("hub: connection %d is sealed under an old vault key; run rotate-key before registering its webhook", conn.ID)
	}
	client, err := e.tokens.APIClient(ctx, stored)
	if err != nil {
		return err
	}
	if stored.IntegrationID != 0 {
		if err := client.DeleteIntegration(ctx, stored.IntegrationID); err != nil && !apiclient.IsNotFound(err) {
			return fmt.Errorf("hub: delete the previous webhook of connection %d: %w", conn.ID, err)
		}
		// Forgotten at once: should creating the new one fail, the
		// connection is then polled every round, not only on sweeps.
		if err := e.store.SetConnectionWebhook(ctx, conn.ID, 0, nil); err != nil {
			return err
		}
		conn.IntegrationID = 0
	}
	in, secret, err := client.CreateIntegration(ctx, apiclient.NewIntegration{Name: "valet hub",
		URL: e.WebhookURL(conn.ID), Triggers: valet.WebhookTriggers})
	if err != nil {
		return fmt.Errorf("hub: register the webhook of connection %d: %w", conn.ID, err)
	}
	if err := e.store.SetConnectionWebhook(ctx, conn.ID, in.ID, e.vault.SealWebhookSecret(secret)); err != nil {
		// Without its secret stored every delivery would be refused for a
		// day: take the webhook back, polling will do instead.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := client.DeleteIntegration(dctx, in.ID); derr != nil {
			e.log.Warn("cannot delete a webhook whose secret was not stored", "connection", conn.ID, "integration", in.ID, "err", derr)
		}
		return err
	}
	conn.IntegrationID = in.ID
	e.log.Info("webhook registered", "connection", conn.ID, "account", stored.Account, "integration", in.ID)
	return nil
}

// Unregister deletes the connection's webhook on the helpdesk, before the
// connection is deleted. It is best effort: a revoked connection cannot
// call the helpdesk any more (its webhook then fails, and the helpdesk
// disables it after 100 failures), which is logged, not returned, and an
// already deleted webhook is no error. Other errors are returned; the
// caller may delete the connection anyway.
func (e *Events) Unregister(ctx context.Context, conn *valet.Connection) error {
	if conn.IntegrationID == 0 {
		return nil
	}
	client, err := e.tokens.APIClient(ctx, conn)
	if err != nil {
		return err
	}
	err = client.DeleteIntegration(ctx, conn.IntegrationID)
	switch {
	case err == nil, apiclient.IsNotFound(err):
	case errors.Is(err, ErrRevoked):
		e.log.Info("webhook left on the helpdesk: the connection is revoked", "connection", conn.ID, "integration", conn.IntegrationID)
		return nil
	default:
		return fmt.Errorf("hub: delete the webhook of connection %d: %w", conn.ID, err)
	}
	if err := e.store.SetConnectionWebhook(ctx, conn.ID, 0, nil); err != nil && valet.ErrorCode(err) != valet.ENOTFOUND {
		return err
	}
	e.log.Info("webhook unregistered", "connection", conn.ID, "integration", conn.IntegrationID)
	conn.IntegrationID = 0
	return nil
}

// ServeHTTP receives a delivery at POST /webhooks/{id}: 200 once the event
// is recorded, or was already (the helpdesk stops retrying either way);
// 404 for a connection that is unknown or has no webhook; 401 when the
// signature does not verify or its timestamp is outside WebhookTolerance
// (a replay), with no word about why; 400 or 413 for a body that is not an
// event; 500 when the store fails, so that the helpdesk tries again.
func (e *Events) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		e.refuse(w, outcomeUnknown, http.StatusNotFound, "unknown webhook")
		return
	}
	conn, sealed, err := e.store.FindConnection(ctx, id)
	if valet.ErrorCode(err) == valet.ENOTFOUND || err == nil && len(sealed.WebhookSecret) == 0 {
		e.refuse(w, outcomeUnknown, http.StatusNotFound, "unknown webhook")
		return
	}
	if err != nil {
		e.log.Error("webhook: find connection", "connection", id, "err", err)
		e.refuse(w, outcomeError, http.StatusInternalServerError, "try again later")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			e.refuse(w, outcomeMalformed, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		e.refuse(w, outcomeMalformed, http.StatusBadRequest, "cannot read the body")
		return
	}
	sec, err := e.vault.Open(*sealed)
	if err != nil {
		e.log.Error("webhook: open the connection's secrets", "connection", id, "err", err)
		e.refuse(w, outcomeError, http.StatusInternalServerError, "try again later")
		return
	}
	if err := webhook.Verify(sec.WebhookSecret, r.Header.Get(webhook.SignatureHeader), body, e.clock.Now(), WebhookTolerance); err != nil {
		// The reason (malformed, expired, no match) is for the hub's
		// operator; the sender learns only that it was refused.
		e.log.Info("webhook refused", "connection", id, "reason", err, "remote", r.RemoteAddr)
		e.refuse(w, outcomeForged, http.StatusUnauthorized, "invalid signature")
		return
	}
	// The event id comes from the signed body, not from X-Valet-Event-Id,
	// which the signature does not cover.
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.ID <= 0 || p.Type == "" {
		e.log.Warn("webhook: a signed delivery is not an event", "connection", id)
		e.refuse(w, outcomeMalformed, http.StatusBadRequest, "not an event")
		return
	}
	a := &valet.Activity{ConnectionID: conn.ID, EventID: p.ID, EventType: p.Type,
		Summary: Summarize(p.Type, p.ObjectID, p.Data), Via: ViaWebhook, Received: e.clock.Now()}
	dup, err := e.store.RecordActivity(ctx, a)
	switch {
	case valet.ErrorCode(err) == valet.ENOTFOUND: // deleted meanwhile
		e.refuse(w, outcomeUnknown, http.StatusNotFound, "unknown webhook")
		return
	case err != nil:
		e.log.Error("webhook: record activity", "connection", id, "event", p.ID, "err", err)
		e.refuse(w, outcomeError, http.StatusInternalServerError, "try again later")
		return
	case dup:
		// At-least-once delivery: the helpdesk did not see our first
		// answer, or a poll got there first. 200 all the same, or it
		// retries for a day.
		e.deliveries.WithLabelValues(outcomeDuplicate).Inc()
		e.log.Debug("webhook: duplicate event", "connection", id, "event", p.ID,
			"delivery", r.Header.Get("X-Valet-Delivery-Id"))
	default:
		e.deliveries.WithLabelValues(outcomeRecorded).Inc()
		e.log.Debug("webhook: event recorded", "connection", id, "event", p.ID, "type", p.Type)
	}
	w.WriteHeader(http.StatusOK)
}

func (e *Events) refuse(w http.ResponseWriter, outcome string, status int, text string) {
	e.deliveries.WithLabelValues(outcome).Inc()
	http.Error(w, text, status)
}

// Poll reads the connection's events after its cursor from /api/events
// (ticket events, as webhooks carry) and records them with Via "poll";
// RecordActivity moves the cursor. It returns how many were new. A poll
// reads at most 1,000 events; the next one goes on from there.
//
// Errors: for connections that cannot be polled (another provider than
// valet, no events:read), from the API (wrapping ErrRevoked for a revoked
// connection) and from the store.
func (e *Events) Poll(ctx context.Context, conn *valet.Connection) (int, error) {
	n, _, err := e.poll(ctx, conn, conn.EventCursor)
	return n, err
}

// poll records the events after after and returns how many were new and
// the newest id it read.
func (e *Events) poll(ctx context.Context, conn *valet.Connection, after int64) (int, int64, error) {
	if !pollable(conn) {
		return 0, after, fmt.Errorf("hub: connection %d cannot be polled (provider %s, needs %s)", conn.ID, conn.Provider, valet.ScopeEventsRead)
	}
	client, err := e.tokens.APIClient(ctx, conn)
	if err != nil {
		return 0, after, err
	}
	recorded := 0
	for range pollPages {
		p, err := client.EventsPage(ctx, apiclient.EventListOptions{After: after, Types: valet.WebhookTriggers, PageSize: 100})
		if err != nil {
			return recorded, after, fmt.Errorf("hub: poll the events of connection %d: %w", conn.ID, err)
		}
		for _, ev := range p.Events {
			dup, err := e.store.RecordActivity(ctx, &valet.Activity{ConnectionID: conn.ID, EventID: ev.ID, EventType: ev.Type,
				Summary: Summarize(ev.Type, ev.ObjectID, ev.Data), Via: ViaPoll, Received: e.clock.Now()})
			if err != nil {
				return recorded, after, err
			}
			if !dup {
				recorded++
				e.polled.Inc()
			}
			after = max(after, ev.ID)
		}
		after = max(after, p.LastID)
		if !p.More {
			break
		}
	}
	return recorded, after, nil
}

// pollable reports whether the hub can read a connection's events: valet's
// feed, with the scope for it. Gorgias's events API is shaped differently.
func pollable(c *valet.Connection) bool {
	return c.Provider == ProviderValet && slices.Contains(c.Scopes, string(valet.ScopeEventsRead))
}

// RunPoller polls, every interval until ctx ends, each active connection
// without a webhook, and every SweepEvery rounds (the first included) those
// with one too: a webhook can be disabled by failures or deleted in the
// helpdesk, and what it missed must still reach the feed. Revoked and
// degraded connections are skipped (polling would only add calls to a
// helpdesk that refuses or fails them; the refresher deals with them), as
// is a connection revoked during its poll.
func (e *Events) RunPoller(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for round := 0; ; round++ {
		e.pollRound(ctx, round%SweepEvery == 0)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollRound polls the connections due this round.
func (e *Events) pollRound(ctx context.Context, sweep bool) {
	conns, err := e.store.ListConnections(ctx, 0)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("poller: list connections", "err", err)
		}
		return
	}
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, pollConcurrency)
		live  = make(map[int64]bool, len(conns))
	)
	for _, c := range conns {
		live[c.ID] = true
		if c.Status != valet.ConnectionActive || !pollable(&c) || c.IntegrationID != 0 && !sweep {
			continue
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case slots <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-slots }()
			pctx, cancel := context.WithTimeout(ctx, pollTimeout)
			defer cancel()
			after := c.EventCursor
			if c.IntegrationID != 0 {
				e.mu.Lock()
				if s, ok := e.swept[c.ID]; ok {
					after = min(s, after)
				}
				e.mu.Unlock()
			}
			n, last, err := e.poll(pctx, &c, after)
			if c.IntegrationID != 0 {
				e.mu.Lock()
				e.swept[c.ID] = last
				e.mu.Unlock()
			}
			switch {
			case errors.Is(err, ErrRevoked):
				e.log.Info("poller: connection revoked, skipped", "connection", c.ID)
			case err != nil && ctx.Err() == nil:
				e.log.Warn("poller: poll failed", "connection", c.ID, "err", err)
			case n > 0:
				e.log.Debug("poller: events recorded", "connection", c.ID, "events", n, "webhook", c.IntegrationID != 0)
			}
		})
	}
	wg.Wait()
	e.mu.Lock()
	for id := range e.swept {
		if !live[id] {
			delete(e.swept, id)
		}
	}
	e.mu.Unlock()
}

// Summarize is the activity feed's line for an event: "Ticket #12
// created: Where is my order?". It reads what it needs from data (the
// object after the change) and falls back to the type and object id.
func Summarize(typ string, objectID int64, data json.RawMessage) string {
	var obj struct {
		ID       int64  `json:"id"`
		TicketID int64  `json:"ticket_id"`
		Subject  string `json:"subject"`
		Status   string `json:"status"`
		Name     string `json:"name"`
		Email    string `json:"email"`
		Sender   struct {
			Name  string `json:"name"`
			Email string `json:"email"`
		} `json:"sender"`
	}
	_ = json.Unmarshal(data, &obj) // a missing or odd object leaves the fallbacks
	id := objectID
	if id == 0 {
		id = obj.ID
	}
	subject := clip(obj.Subject, 80)
	if subject == "" {
		subject = "(no subject)"
	}
	switch typ {
	case valet.EventTicketCreated:
		return fmt.Sprintf("Ticket #%d created: %s", id, subject)
	case valet.EventTicketUpdated:
		if obj.Status != "" {
			return fmt.Sprintf("Ticket #%d updated (%s): %s", id, clip(obj.Status, 20), subject)
		}
		return fmt.Sprintf("Ticket #%d updated: %s", id, subject)
	case valet.EventTicketDeleted:
		return fmt.Sprintf("Ticket #%d deleted", id)
	case valet.EventTicketMessageCreated:
		from := clip(firstOf(obj.Sender.Name, obj.Sender.Email), 60)
		if obj.TicketID == 0 {
			return fmt.Sprintf("New message #%d", id)
		}
		if from == "" {
			return fmt.Sprintf("Ticket #%d: new message", obj.TicketID)
		}
		return fmt.Sprintf("Ticket #%d: new message from %s", obj.TicketID, from)
	case valet.EventCustomerCreated, valet.EventCustomerUpdated, valet.EventCustomerDeleted:
		verb := strings.TrimPrefix(typ, "customer-")
		if who := clip(firstOf(obj.Name, obj.Email), 60); who != "" && typ != valet.EventCustomerDeleted {
			return fmt.Sprintf("Customer #%d %s: %s", id, verb, who)
		}
		return fmt.Sprintf("Customer #%d %s", id, verb)
	}
	return fmt.Sprintf("%s #%d", clip(typ, 40), id)
}

// firstOf returns the first non-empty string.
func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// clip makes s one line of at most n runes: helpdesk data is anyone's
// text, and the feed shows one line per event.
func clip(s string, n int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}
