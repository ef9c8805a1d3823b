package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/webhook"
)

// received is one request a test receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is an httptest webhook endpoint that records what it gets and
// answers status.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	status int
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{status: http.StatusNoContent}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: body})
		status := rc.status
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// TestIntegrationWebhookEndToEnd is the whole path in one process: an app
// sets up a webhook through the API, a ticket is created through the API,
// one dispatcher round delivers it, and the receiver checks the signature
// and the event as a third party would.
func TestIntegrationWebhookEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAPIEnv(t)
	f := newFixture(t, e.store, "acme")
	rc := newReceiver(t)
	tok, grant := mustOAuthToken(t, e.store, f.account, f.owner,
		valet.ScopeIntegrationsWrite, valet.ScopeIntegrationsRead, valet.ScopeTicketsRead, valet.ScopeTicketsWrite)

	var in integrationOut
	e.do(t, "POST", "/api/integrations", map[string]any{"name": "Hub",
		"http": map[string]any{"url": rc.URL + "/webhooks/valet?token=abc", "triggers": map[string]any{"ticket-created": true}}},
		bearer(tok)).want(t, 201).JSON(t, &in)
	if in.AppID == nil || *in.AppID != grant.AppID {
		t.Fatalf("integration %+v", in)
	}
	var tk ticketOut
	e.do(t, "POST", "/api/tickets", map[string]any{"subject": "Refund please", "customer": map[string]any{"id": f.customer.ID},
		"messages": []any{map[string]any{"body_text": "My order arrived broken."}}}, bearer(tok)).want(t, 201).JSON(t, &tk)

	d := webhook.New(e.store, webhook.Config{Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler), AllowPrivate: true})
	sent, err := d.RunOnce(ctx)
	if err != nil || sent != 1 {
		t.Fatalf("RunOnce: sent %d, %v", sent, err)
	}
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests", len(got))
	}
	req := got[0]
	if err := webhook.Verify(in.Secret, req.header.Get(webhook.SignatureHeader), req.body, time.Now(), 0); err != nil {
		t.Fatalf("signature %q: %v", req.header.Get(webhook.SignatureHeader), err)
	}
	// A signature binds the body, the secret and the time.
	if err := webhook.Verify(in.Secret, req.header.Get(webhook.SignatureHeader), append(req.body, ' '), time.Now(), 0); !errors.Is(err, webhook.ErrInvalidSignature) {
		t.Errorf("tampered body verifies: %v", err)
	}
	if err := webhook.Verify(in.Secret+"x", req.header.Get(webhook.SignatureHeader), req.body, time.Now(), 0); !errors.Is(err, webhook.ErrInvalidSignature) {
		t.Errorf("wrong secret verifies: %v", err)
	}
	if err := webhook.Verify(in.Secret, req.header.Get(webhook.SignatureHeader), req.body, time.Now().Add(time.Hour), 0); !errors.Is(err, webhook.ErrSignatureExpired) {
		t.Errorf("an hour later: %v", err)
	}

	var p webhook.Payload
	if err := json.Unmarshal(req.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != valet.EventTicketCreated || p.ObjectID != tk.ID || p.Account != "acme" || p.ObjectType == "" || len(p.Data) == 0 {
		t.Errorf("payload %s", req.body)
	}
	h := req.header
	if h.Get("X-Valet-Event-Id") != strconv.FormatInt(p.ID, 10) || h.Get("X-Valet-Event-Type") != p.Type ||
		h.Get("X-Valet-Integration-Id") != strconv.FormatInt(in.ID, 10) || h.Get("X-Valet-Delivery-Id") == "" ||
		!strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Errorf("headers %v", h)
	}
	// The event id is the one the events API shows for the ticket.
	var events list[valet.Event]
	e.do(t, "GET", "/api/events?types=ticket-created&limit=100", nil, bearer(f.key)).want(t, 200).JSON(t, &events)
	var eventID int64
	for _, ev := range events.Data {
		if ev.ObjectID == tk.ID {
			eventID = ev.ID
		}
	}
	if eventID == 0 || p.ID != eventID {
		t.Errorf("payload event %d, events API says %d", p.ID, eventID)
	}

	// The delivery log shows it delivered; a second round sends nothing.
	var log list[valet.Delivery]
	e.do(t, "GET", "/api/integrations/"+strconv.FormatInt(in.ID, 10)+"/deliveries", nil, bearer(tok)).want(t, 200).JSON(t, &log)
	if len(log.Data) != 1 || log.Data[0].Status != valet.DeliveryDelivered || log.Data[0].EventID != p.ID ||
		log.Data[0].Attempts != 1 || log.Data[0].LastStatusCode != http.StatusNoContent || log.Data[0].LastAttempt == nil ||
		strconv.FormatInt(log.Data[0].ID, 10) != h.Get("X-Valet-Delivery-Id") {
		t.Errorf("delivery log %+v", log.Data)
	}
	if sent, err := d.RunOnce(ctx); err != nil || sent != 0 || len(rc.requests()) != 1 {
		t.Errorf("second round: sent %d, %v; receiver has %d", sent, err, len(rc.requests()))
	}

	// A failing receiver shows in the log with its status and error.
	rc.mu.Lock()
	rc.status = http.StatusServiceUnavailable
	rc.mu.Unlock()
	e.do(t, "POST", "/api/tickets", map[string]any{"subject": "Second", "customer": map[string]any{"id": f.customer.ID}},
		bearer(tok)).want(t, 201)
	if sent, err := d.RunOnce(ctx); err != nil || sent != 1 {
		t.Fatalf("failing round: sent %d, %v", sent, err)
	}
	e.do(t, "GET", "/api/integrations/"+strconv.FormatInt(in.ID, 10)+"/deliveries", nil, bearer(tok)).want(t, 200).JSON(t, &log)
	if len(log.Data) != 2 || log.Data[0].Status != valet.DeliveryPending || log.Data[0].LastStatusCode != http.StatusServiceUnavailable ||
		log.Data[0].LastError == "" || !log.Data[0].NextAttempt.After(time.Now()) || strings.Contains(log.Data[0].LastError, "token=abc") {
		t.Errorf("failed delivery %+v", log.Data[0])
	}
	var now integrationOut
	e.do(t, "GET", "/api/integrations/"+strconv.FormatInt(in.ID, 10), nil, bearer(tok)).want(t, 200).JSON(t, &now)
	if now.ConsecutiveFailures != 1 || now.Status != valet.IntegrationActive {
		t.Errorf("after a failure %+v", now)
	}
}

// sealless is a store that says it cannot seal webhook secrets, as
// sqlstore does when opened without a seal key.
type sealless struct{ valet.Store }

func (sealless) CanSealSecrets() bool { return false }

// TestIntegrationsWithoutSecret: a server started without VALET_SECRET
// cannot create webhooks and says why, on the API and in settings.
func TestIntegrationsWithoutSecret(t *testing.T) {
	t.Parallel()
	store := sqltest.SQLite(t, sqlstore.WithSealKey(nil))
	f := newFixture(t, store, "acme")
	in := &valet.Integration{AccountID: f.account.ID, Name: "x",
		HTTP: valet.IntegrationHTTP{URL: "https://x.example", Triggers: map[string]bool{valet.EventTicketCreated: true}}}
	_, storeErr := store.CreateIntegration(context.Background(), in)
	if storeErr == nil {
		t.Fatal("the store creates webhooks without a seal key")
	}

	srv, err := New(sealless{store}, DefaultConfig(), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Close(context.Background())
	})
	e := &apiEnv{store: store, srv: srv, hs: hs}
	d := e.do(t, "POST", "/api/integrations", map[string]any{"http": map[string]any{"url": "https://x.example",
		"triggers": map[string]bool{"ticket-created": true}}}, bearer(f.key)).want(t, 500).Err(t)
	if !strings.Contains(d.Msg, "VALET_SECRET") {
		t.Errorf("error %+v", d)
	}
	// Reading still works: there is nothing to unseal.
	e.do(t, "GET", "/api/integrations", nil, bearer(f.key)).want(t, 200)
}
