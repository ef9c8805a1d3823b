package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/valethq/valet"
	"github.com/valethq/valet/helpdesktest"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/sqlstore/storetest"
	"github.com/valethq/valet/webhook"
)

// Receiver modes of eventEnv.
const (
	receiverUp   int32 = iota
	receiverDown       // 503 before the hub sees anything
	receiverLost       // the hub records the event, then the answer is lost (503)
)

// eventEnv is a real helpdesk on a settable clock, the hub's store, tokens
// and Events, and the hub's receiver on an httptest server that can be
// switched down. Every request the receiver got is logged.
type eventEnv struct {
	t        *testing.T
	clock    *storetest.Clock
	h        *helpdesktest.Helpdesk
	app      *valet.App
	secret   string
	store    *sqlstore.HubStore
	vault    *Vault
	tokens   *Tokens
	events   *Events
	recv     *httptest.Server
	mode     atomic.Int32
	customer *valet.Customer
	// beta is a second account: the hub keeps one connection per account.
	beta         *valet.Account
	betaOwner    *valet.User
	betaCustomer *valet.Customer

	mu   sync.Mutex
	seen []received
}

// received is one request the receiver got and what it answered.
type received struct {
	path   string
	header http.Header
	body   []byte
	at     time.Time // the clock when it arrived
	status int       // what the sender saw
}

func newEventEnv(t *testing.T) *eventEnv {
	t.Helper()
	e := &eventEnv{t: t, clock: storetest.NewClock()}
	e.h = helpdesktest.Start(t, helpdesktest.Options{Clock: e.clock})
	e.app = &valet.App{Name: "Hub"}
	e.secret = e.h.RegisterApp(t, e.app)
	e.store = sqltest.HubSQLite(t)
	var err error
	if e.vault, err = NewVault(testVaultKey); err != nil {
		t.Fatal(err)
	}
	providers := &Providers{Clients: map[string]Client{ProviderValet: {ID: e.app.ClientID, Secret: e.secret}}}
	e.tokens = NewTokens(e.store, e.vault, providers, nil, nil, TokensConfig{})
	mux := http.NewServeMux()
	e.recv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := received{path: r.URL.Path, header: r.Header.Clone(), body: body, at: e.clock.Now()}
		switch e.mode.Load() {
		case receiverDown:
			rec.status = http.StatusServiceUnavailable
		case receiverLost:
			mux.ServeHTTP(httptest.NewRecorder(), r)
			rec.status = http.StatusServiceUnavailable
		default:
			sr := httptest.NewRecorder()
			mux.ServeHTTP(sr, r)
			rec.status = sr.Code
		}
		e.mu.Lock()
		e.seen = append(e.seen, rec)
		e.mu.Unlock()
		w.WriteHeader(rec.status)
	}))
	t.Cleanup(e.recv.Close)
	e.events = NewEvents(e.store, e.vault, e.tokens, e.recv.URL, e.clock, slog.New(slog.DiscardHandler))
	mux.Handle("POST /webhooks/{id}", e.events)
	e.customer = &valet.Customer{AccountID: e.h.Account.ID, Email: "casey@example.test", Name: "Casey Customer"}
	must(t, e.h.Store.CreateCustomer(ctx, e.customer))
	return e
}

// connect installs the hub's app on acme with scopes and stores the
// connection as the connect flow would.
func (e *eventEnv) connect(scopes ...valet.Scope) *valet.Connection {
	e.t.Helper()
	return e.save(e.h.Install(e.t, e.app, scopes...), scopes)
}

// connectBeta is connect on the second account, beta.
func (e *eventEnv) connectBeta(scopes ...valet.Scope) *valet.Connection {
	e.t.Helper()
	if e.beta == nil {
		e.beta, e.betaOwner = e.h.AddAccount(e.t, "beta")
		e.betaCustomer = &valet.Customer{AccountID: e.beta.ID, Email: "bo@example.test", Name: "Bo Customer"}
		must(e.t, e.h.Store.CreateCustomer(ctx, e.betaCustomer))
	}
	return e.save(e.h.InstallOn(e.t, e.beta, e.betaOwner, e.app, scopes...), scopes)
}

func (e *eventEnv) save(issued *valet.IssuedTokens, scopes []valet.Scope) *valet.Connection {
	e.t.Helper()
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	c := &valet.Connection{Provider: ProviderValet, BaseURL: e.h.URL, Account: issued.AccountName, Scopes: names,
		AccessExpires: issued.AccessExpires, NextRefresh: issued.AccessExpires.Add(-time.Hour)}
	must(e.t, e.store.SaveConnection(ctx, c, e.vault.Seal(Secrets{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken})))
	return c
}

func (e *eventEnv) find(id int64) (*valet.Connection, Secrets) {
	e.t.Helper()
	c, sealed, err := e.store.FindConnection(ctx, id)
	must(e.t, err)
	sec, err := e.vault.Open(*sealed)
	must(e.t, err)
	return c, sec
}

// newTicket creates a ticket of acme with its first message through store
// (the helpdesk's, or a restarted process's handle): two events.
func (e *eventEnv) newTicket(store *sqlstore.Store, subject string) *valet.Ticket {
	e.t.Helper()
	return e.newTicketOf(store, e.h.Account, e.customer, subject)
}

func (e *eventEnv) newTicketOf(store *sqlstore.Store, a *valet.Account, c *valet.Customer, subject string) *valet.Ticket {
	e.t.Helper()
	tk := &valet.Ticket{AccountID: a.ID, Subject: subject, Customer: valet.PersonRef{ID: c.ID}}
	must(e.t, store.CreateTicket(ctx, tk, []*valet.Message{{Public: true, BodyText: "About " + subject}}))
	return tk
}

// ticketEvents returns the ids of the account's events that webhooks carry.
func (e *eventEnv) ticketEvents(store *sqlstore.Store) map[int64]string {
	e.t.Helper()
	out := map[int64]string{}
	for after := int64(0); ; {
		evs, err := store.ListEvents(ctx, e.h.Account.ID, valet.EventFilter{After: after, Types: valet.WebhookTriggers, Limit: valet.MaxLimit})
		must(e.t, err)
		if len(evs) == 0 {
			return out
		}
		for _, ev := range evs {
			out[ev.ID] = ev.Type
		}
		after = evs[len(evs)-1].ID
	}
}

// counted reads the receiver's counter of outcome.
func (e *eventEnv) counted(outcome string) float64 {
	e.t.Helper()
	var m dto.Metric
	must(e.t, e.events.deliveries.WithLabelValues(outcome).Write(&m))
	return m.GetCounter().GetValue()
}

func (e *eventEnv) activity() []valet.Activity {
	e.t.Helper()
	a, err := e.store.ListActivity(ctx, 0, 200)
	must(e.t, err)
	return a
}

// post sends a delivery to the receiver as anyone could.
func (e *eventEnv) post(path string, header http.Header, body []byte) int {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.recv.URL+path, bytes.NewReader(body))
	must(e.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	must(e.t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func quietDispatcher(store valet.IntegrationService, clock valet.Clock) *webhook.Dispatcher {
	// Jitter 0 makes every retry due a second after the failure (the
	// dispatcher's floor): the test moves the clock instead of sleeping.
	return webhook.New(store, webhook.Config{Clock: clock, Logger: slog.New(slog.DiscardHandler),
		Jitter: func(int64) int64 { return 0 }, AllowPrivate: true})
}

func runOnce(t *testing.T, d *webhook.Dispatcher) int {
	t.Helper()
	n, err := d.RunOnce(ctx)
	must(t, err)
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The webhook test of issue 4. The hub registers its webhook on connect;
// the receiver then loses an answer, goes down, and the helpdesk restarts
// (a new store handle and dispatcher on the same database) while tickets
// keep coming. Once the receiver is back and the outbox drained, every
// event is in the activity feed exactly once, every accepted delivery was
// validly signed, and forged, tampered and replayed deliveries are
// refused and recorded nowhere.
func TestWebhookDeliveredExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEventEnv(t)
	conn := e.connect(valet.ScopeOffline, valet.ScopeAccountRead, valet.ScopeTicketsRead, valet.ScopeEventsRead, valet.ScopeIntegrationsWrite)
	must(t, e.events.Register(ctx, conn))
	stored, sec := e.find(conn.ID)
	if conn.IntegrationID == 0 || stored.IntegrationID != conn.IntegrationID || !strings.HasPrefix(sec.WebhookSecret, valet.PrefixWebhookSecret) {
		t.Fatalf("after Register: integration %d, stored %d, secret stored: %v", conn.IntegrationID, stored.IntegrationID, sec.WebhookSecret != "")
	}
	in, err := e.h.Store.FindIntegration(ctx, e.h.Account.ID, conn.IntegrationID)
	must(t, err)
	if in.HTTP.URL != e.recv.URL+"/webhooks/"+strconv.FormatInt(conn.ID, 10) || in.AppID == nil || *in.AppID != e.app.ID {
		t.Fatalf("integration on the helpdesk: %+v", in)
	}
	for _, typ := range valet.WebhookTriggers {
		if !in.Subscribes(typ) {
			t.Fatalf("the integration does not subscribe to %s", typ)
		}
	}

	d1 := quietDispatcher(e.h.Store, e.clock)
	// Up: delivered at once.
	a := e.newTicket(e.h.Store, "Where is my order?")
	if n := runOnce(t, d1); n != 2 {
		t.Fatalf("first round sent %d, want 2", n)
	}
	if got := len(e.activity()); got != 2 {
		t.Fatalf("%d activities after the first round, want 2", got)
	}

	// The hub records the next events but its answers are lost: the
	// helpdesk must send them again.
	e.mode.Store(receiverLost)
	e.newTicket(e.h.Store, "Wrong size")
	runOnce(t, d1)

	// Down, with more events.
	e.mode.Store(receiverDown)
	c := e.newTicket(e.h.Store, "Refund please")
	_, err = e.h.Store.UpdateTicket(ctx, e.h.Account.ID, a.ID, func(tk *valet.Ticket) error { tk.Status = valet.StatusClosed; return nil })
	must(t, err)
	e.clock.Advance(2 * time.Second)
	runOnce(t, d1)

	// The helpdesk restarts: its dispatcher stops, a new process opens the
	// database and writes more while the receiver is still down.
	d1 = nil
	restarted, err := sqlstore.Open(ctx, e.h.DSN, sqlstore.WithSealKey(sqltest.SealKey), sqlstore.WithClock(e.clock))
	must(t, err)
	t.Cleanup(func() { restarted.Close() })
	d2 := quietDispatcher(restarted, e.clock)
	e.newTicket(restarted, "Damaged parcel")
	must(t, restarted.CreateMessage(ctx, &valet.Message{AccountID: e.h.Account.ID, TicketID: c.ID, Public: true, BodyText: "Any news?"}))
	e.clock.Advance(2 * time.Second)
	runOnce(t, d2)
	if down := len(e.activity()); down != 4 {
		t.Fatalf("%d activities while the receiver was down, want 4 (2 delivered + 2 recorded with lost answers)", down)
	}

	// Back up: drain the outbox.
	e.mode.Store(receiverUp)
	for round := 0; ; round++ {
		if round == 20 {
			t.Fatal("the outbox did not drain in 20 rounds")
		}
		e.clock.Advance(2 * time.Second)
		runOnce(t, d2)
		ds, err := restarted.ListDeliveries(ctx, e.h.Account.ID, conn.IntegrationID, valet.MaxLimit)
		must(t, err)
		pending := 0
		for _, d := range ds {
			switch d.Status {
			case valet.DeliveryPending:
				pending++
			case valet.DeliveryFailed:
				t.Fatalf("delivery %+v failed", d)
			}
		}
		if pending == 0 {
			break
		}
	}

	want := e.ticketEvents(restarted)
	if len(want) != 10 { // 4 tickets × (created + message), 1 update, 1 message
		t.Fatalf("the helpdesk has %d ticket events, want 10", len(want))
	}
	got := e.activity()
	if len(got) != len(want) {
		t.Fatalf("%d activities for %d events", len(got), len(want))
	}
	once := map[int64]bool{}
	for _, act := range got {
		if once[act.EventID] {
			t.Fatalf("event %d recorded twice", act.EventID)
		}
		once[act.EventID] = true
		if typ, ok := want[act.EventID]; !ok || typ != act.EventType || act.Via != ViaWebhook ||
			act.ConnectionID != conn.ID || act.Account != "acme" || act.Summary == "" {
			t.Fatalf("activity %+v (helpdesk event type %q)", act, typ)
		}
	}
	if dups := e.counted(outcomeDuplicate); dups < 2 {
		t.Fatalf("%v duplicates counted, want the 2 events whose answers were lost", dups)
	}
	wantSummary := fmt.Sprintf("Ticket #%d created: Where is my order?", a.ID)
	found := false
	for _, act := range got {
		found = found || act.Summary == wantSummary
	}
	if !found {
		t.Fatalf("no activity reads %q: %+v", wantSummary, got)
	}

	// Every delivery the hub accepted verifies independently against the
	// secret the helpdesk issued, at the time it arrived; and the hub
	// refused none of the helpdesk's.
	e.mu.Lock()
	seen := append([]received(nil), e.seen...)
	e.mu.Unlock()
	var sample received
	for _, r := range seen {
		if r.status == http.StatusUnauthorized {
			t.Fatalf("the hub refused a delivery from the helpdesk: %s", r.body)
		}
		if r.status != http.StatusOK {
			continue
		}
		if err := webhook.Verify(sec.WebhookSecret, r.header.Get(webhook.SignatureHeader), r.body, r.at, WebhookTolerance); err != nil {
			t.Fatalf("accepted a delivery whose signature does not verify: %v", err)
		}
		sample = r
	}
	if sample.body == nil {
		t.Fatal("no accepted delivery logged")
	}
	before := len(got)
	refused := e.counted(outcomeForged)

	// A captured delivery sent again within the tolerance is a duplicate:
	// accepted, nothing new.
	if st := e.post(sample.path, sample.header, sample.body); st != http.StatusOK {
		t.Fatalf("a repeated delivery got %d, want 200", st)
	}
	// A new event, forged: signed with another secret.
	forged := eventBody(t, 999001, "Forged ticket")
	h := http.Header{webhook.SignatureHeader: {webhook.Sign("vws_not-the-secret", e.clock.Now(), forged)}}
	if st := e.post(sample.path, h, forged); st != http.StatusUnauthorized {
		t.Fatalf("a forged delivery got %d, want 401", st)
	}
	// A real signature over another body (tampered).
	if st := e.post(sample.path, sample.header, forged); st != http.StatusUnauthorized {
		t.Fatalf("a tampered delivery got %d, want 401", st)
	}
	// No signature, or a malformed one.
	if st := e.post(sample.path, http.Header{webhook.SignatureHeader: {"t=1,v1=zz"}}, forged); st != http.StatusUnauthorized {
		t.Fatalf("a malformed signature got %d, want 401", st)
	}
	// Replayed: a valid signature, made with the real secret, but older than
	// the tolerance. Both a new event and the captured delivery, once the
	// clock has moved past its tolerance.
	old := eventBody(t, 999002, "Replayed ticket")
	h = http.Header{webhook.SignatureHeader: {webhook.Sign(sec.WebhookSecret, e.clock.Now().Add(-WebhookTolerance-time.Minute), old)}}
	if st := e.post(sample.path, h, old); st != http.StatusUnauthorized {
		t.Fatalf("a replayed (old timestamp) delivery got %d, want 401", st)
	}
	e.clock.Advance(WebhookTolerance + time.Minute)
	if st := e.post(sample.path, sample.header, sample.body); st != http.StatusUnauthorized {
		t.Fatalf("a captured delivery replayed after the tolerance got %d, want 401", st)
	}
	// Unknown connections, and one without a webhook.
	plain := e.connectBeta(valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeEventsRead)
	for _, path := range []string{"/webhooks/999999", "/webhooks/abc", "/webhooks/" + strconv.FormatInt(plain.ID, 10)} {
		if st := e.post(path, sample.header, sample.body); st != http.StatusNotFound {
			t.Fatalf("POST %s got %d, want 404", path, st)
		}
	}
	after := e.activity()
	if len(after) != before {
		t.Fatalf("refused deliveries changed the feed: %d activities, had %d", len(after), before)
	}
	for _, act := range after {
		if act.EventID >= 999001 {
			t.Fatalf("a refused delivery was recorded: %+v", act)
		}
	}
	if n := e.counted(outcomeForged) - refused; n != 5 {
		t.Fatalf("%v deliveries counted as refused, want 5", n)
	}
	if stored, _ := e.find(conn.ID); stored.EventCursor != maxKey(want) {
		t.Fatalf("event cursor %d, want the newest event %d", stored.EventCursor, maxKey(want))
	}

	// Unregister deletes the webhook on the helpdesk and forgets it.
	stored, _ = e.find(conn.ID)
	must(t, e.events.Unregister(ctx, stored))
	if _, err := restarted.FindIntegration(ctx, e.h.Account.ID, conn.IntegrationID); valet.ErrorCode(err) != valet.ENOTFOUND {
		t.Fatalf("the webhook after Unregister: %v", err)
	}
	if stored, sec := e.find(conn.ID); stored.IntegrationID != 0 || sec.WebhookSecret != "" {
		t.Fatalf("the connection still has a webhook: %d", stored.IntegrationID)
	}
}

// eventBody is a delivery body for a made-up ticket.
func eventBody(t *testing.T, id int64, subject string) []byte {
	t.Helper()
	b, err := json.Marshal(webhook.Payload{ID: id, Type: valet.EventTicketCreated, Account: "acme", ObjectType: "Ticket",
		ObjectID: id, CreatedDatetime: time.Now(), Data: json.RawMessage(fmt.Sprintf(`{"id":%d,"subject":%q}`, id, subject))})
	must(t, err)
	return b
}

func maxKey(m map[int64]string) int64 {
	var n int64
	for k := range m {
		n = max(n, k)
	}
	return n
}

// Register on a Reconnect replaces the connection's webhook rather than
// adding a second one; without integrations:write it registers nothing.
func TestWebhookRegisterReplacesAndNeedsScope(t *testing.T) {
	t.Parallel()
	e := newEventEnv(t)
	conn := e.connect(valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeEventsRead, valet.ScopeIntegrationsWrite)
	must(t, e.events.Register(ctx, conn))
	first := conn.IntegrationID
	must(t, e.events.Register(ctx, conn))
	if conn.IntegrationID == first {
		t.Fatal("Register kept the old webhook")
	}
	ins, err := e.h.Store.ListIntegrations(ctx, e.h.Account.ID, valet.ListOptions{})
	must(t, err)
	if len(ins.Data) != 1 || ins.Data[0].ID != conn.IntegrationID {
		t.Fatalf("integrations on the helpdesk: %+v, want only %d", ins.Data, conn.IntegrationID)
	}

	noScope := e.connectBeta(valet.ScopeOffline, valet.ScopeEventsRead)
	must(t, e.events.Register(ctx, noScope))
	if stored, _ := e.find(noScope.ID); noScope.IntegrationID != 0 || stored.IntegrationID != 0 {
		t.Fatalf("a connection without integrations:write got webhook %d", stored.IntegrationID)
	}
	// Nor one that may not read the tickets a webhook delivers.
	noRead := e.connectBeta(valet.ScopeOffline, valet.ScopeEventsRead, valet.ScopeIntegrationsWrite)
	must(t, e.events.Register(ctx, noRead))
	if stored, _ := e.find(noRead.ID); noRead.IntegrationID != 0 || stored.IntegrationID != 0 {
		t.Fatalf("a connection without tickets:read got webhook %d", stored.IntegrationID)
	}
}

// A connection without integrations:write gets its events by polling,
// each once, and its cursor moves so the next poll reads only what is new.
func TestPollWithoutWebhook(t *testing.T) {
	t.Parallel()
	e := newEventEnv(t)
	conn := e.connect(valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeEventsRead)
	must(t, e.events.Register(ctx, conn))
	if conn.IntegrationID != 0 {
		t.Fatal("a webhook without integrations:write")
	}
	tk := e.newTicket(e.h.Store, "Where is my order?")
	e.newTicket(e.h.Store, "Wrong size")
	n, err := e.events.Poll(ctx, conn)
	must(t, err)
	if n != 4 {
		t.Fatalf("Poll recorded %d, want 4", n)
	}
	stored, _ := e.find(conn.ID)
	want := e.ticketEvents(e.h.Store)
	if stored.EventCursor != maxKey(want) {
		t.Fatalf("cursor %d, want %d", stored.EventCursor, maxKey(want))
	}
	// Nothing new: nothing recorded, even polling from the old cursor.
	if n, err := e.events.Poll(ctx, conn); err != nil || n != 0 {
		t.Fatalf("polling again from the old cursor: %d, %v", n, err)
	}
	_, err = e.h.Store.UpdateTicket(ctx, e.h.Account.ID, tk.ID, func(t *valet.Ticket) error { t.Status = valet.StatusClosed; return nil })
	must(t, err)
	if n, err := e.events.Poll(ctx, stored); err != nil || n != 1 {
		t.Fatalf("polling the update: %d, %v", n, err)
	}
	got := e.activity()
	if len(got) != 5 {
		t.Fatalf("%d activities, want 5", len(got))
	}
	for _, a := range got {
		if a.Via != ViaPoll {
			t.Fatalf("activity %+v not via poll", a)
		}
	}
	if want := fmt.Sprintf("Ticket #%d updated (closed): Where is my order?", tk.ID); got[0].Summary != want {
		t.Fatalf("newest summary %q, want %q", got[0].Summary, want)
	}
}

// The poller: connections without a webhook every round; with a webhook
// only on sweeps, which catch what the webhook missed (here, deleted on the
// helpdesk by an admin); revoked connections are skipped.
func TestPollerSweepsAndSkipsRevoked(t *testing.T) {
	t.Parallel()
	e := newEventEnv(t)
	hooked := e.connect(valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeEventsRead, valet.ScopeIntegrationsWrite)
	must(t, e.events.Register(ctx, hooked))
	if hooked.IntegrationID == 0 {
		t.Fatal("no webhook registered")
	}
	must(t, e.h.Store.DeleteIntegration(ctx, e.h.Account.ID, hooked.IntegrationID))
	polled := e.connectBeta(valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeEventsRead)

	e.newTicket(e.h.Store, "Missed by the webhook")
	e.newTicketOf(e.h.Store, e.beta, e.betaCustomer, "Polled")
	count := func() map[int64]int {
		m := map[int64]int{}
		for _, a := range e.activity() {
			if a.Via != ViaPoll {
				t.Fatalf("activity %+v not via poll", a)
			}
			m[a.ConnectionID]++
		}
		return m
	}
	e.events.pollRound(ctx, false)
	if m := count(); m[hooked.ID] != 0 || m[polled.ID] != 2 {
		t.Fatalf("after a plain round: %v, want only the polled connection's 2 events", m)
	}
	e.events.pollRound(ctx, true)
	if m := count(); m[hooked.ID] != 2 || m[polled.ID] != 2 {
		t.Fatalf("after a sweep: %v, want 2 events each", m)
	}
	// The next sweep reads from where the last one ended.
	e.newTicket(e.h.Store, "Also missed")
	e.events.pollRound(ctx, true)
	if m := count(); m[hooked.ID] != 4 {
		t.Fatalf("after a second sweep: %v, want 4 events of the webhook connection", m)
	}

	// Revoke beta's grant in the helpdesk: its poll fails with ErrRevoked
	// and marks it revoked; later rounds skip it and go on with the others.
	grants, err := e.h.Store.ListGrants(ctx, e.beta.ID)
	must(t, err)
	for _, g := range grants {
		must(t, e.h.Store.RevokeGrant(ctx, e.beta.ID, g.ID))
	}
	stored, _ := e.find(polled.ID)
	if _, err := e.events.Poll(ctx, stored); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Poll of a revoked connection: %v, want ErrRevoked", err)
	}
	if stored, _ := e.find(polled.ID); stored.Status != valet.ConnectionRevoked {
		t.Fatalf("status %q after a revoked poll", stored.Status)
	}
	e.newTicket(e.h.Store, "After the revocation")
	before := e.h.TokenRequests("refresh_token")
	e.events.pollRound(ctx, true)
	if n := e.h.TokenRequests("refresh_token") - before; n != 0 {
		t.Fatalf("a round with a revoked connection made %d refresh requests", n)
	}
	if m := count(); m[hooked.ID] != 6 {
		t.Fatalf("after the revocation: %v, want the other connection polled on", m)
	}
}

// RunPoller brings new events in by itself and stops with its context.
func TestRunPoller(t *testing.T) {
	t.Parallel()
	e := newEventEnv(t)
	e.connect(valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeEventsRead)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.events.RunPoller(pctx, 10*time.Millisecond); close(done) }()
	e.newTicket(e.h.Store, "Hello")
	deadline := time.Now().Add(10 * time.Second)
	for len(e.activity()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the poller did not record the events")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunPoller did not stop")
	}
}

// Unregister of a revoked connection is best effort: nothing to call,
// no error.
func TestUnregisterRevoked(t *testing.T) {
	t.Parallel()
	e := newEventEnv(t)
	conn := e.connect(valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeIntegrationsWrite)
	must(t, e.events.Register(ctx, conn))
	grants, err := e.h.Store.ListGrants(ctx, e.h.Account.ID)
	must(t, err)
	must(t, e.h.Store.RevokeGrant(ctx, e.h.Account.ID, grants[0].ID))
	// The stored access token is refused; a refresh is refused too.
	_, err = e.store.MarkConnection(ctx, conn.ID, conn.Generation, valet.ConnectionRevoked, "revoked in the helpdesk")
	must(t, err)
	stored, _ := e.find(conn.ID)
	if err := e.events.Unregister(ctx, stored); err != nil {
		t.Fatalf("Unregister of a revoked connection: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		id   int64
		data string
		want string
	}{
		{valet.EventTicketCreated, 12, `{"id":12,"subject":"Where is my order?"}`, "Ticket #12 created: Where is my order?"},
		{valet.EventTicketCreated, 12, `{"id":12,"subject":""}`, "Ticket #12 created: (no subject)"},
		{valet.EventTicketUpdated, 12, `{"id":12,"subject":"Hi","status":"closed"}`, "Ticket #12 updated (closed): Hi"},
		{valet.EventTicketMessageCreated, 40, `{"id":40,"ticket_id":12,"sender":{"name":"Casey"}}`, "Ticket #12: new message from Casey"},
		{valet.EventTicketMessageCreated, 40, `{"id":40,"ticket_id":12,"sender":{}}`, "Ticket #12: new message"},
		{valet.EventTicketDeleted, 12, `null`, "Ticket #12 deleted"},
		{valet.EventCustomerCreated, 3, `{"id":3,"name":"","email":"a@b.test"}`, "Customer #3 created: a@b.test"},
		{"something-new", 5, `{}`, "something-new #5"},
		{valet.EventTicketCreated, 7, `{"subject":"line one\nline two\u0007 ` + strings.Repeat("x", 100) + `"}`,
			"Ticket #7 created: line one line two " + strings.Repeat("x", 61) + "…"},
		{valet.EventTicketCreated, 8, `not json`, "Ticket #8 created: (no subject)"},
	} {
		if got := Summarize(tc.typ, tc.id, json.RawMessage(tc.data)); got != tc.want {
			t.Errorf("Summarize(%s, %s) = %q, want %q", tc.typ, tc.data, got, tc.want)
		}
	}
}

// The receiver bounds what it reads and answers only POST.
func TestWebhookReceiverLimits(t *testing.T) {
	t.Parallel()
	e := newEventEnv(t)
	conn := e.connect(valet.ScopeOffline, valet.ScopeTicketsRead, valet.ScopeIntegrationsWrite)
	must(t, e.events.Register(ctx, conn))
	path := "/webhooks/" + strconv.FormatInt(conn.ID, 10)
	if st := e.post(path, nil, bytes.Repeat([]byte("x"), MaxWebhookBody+1)); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("an oversized body got %d, want 413", st)
	}
	_, sec := e.find(conn.ID)
	notEvent := []byte(`{"hello":"world"}`)
	h := http.Header{webhook.SignatureHeader: {webhook.Sign(sec.WebhookSecret, e.clock.Now(), notEvent)}}
	if st := e.post(path, h, notEvent); st != http.StatusBadRequest {
		t.Fatalf("a signed non-event got %d, want 400", st)
	}
	rec := httptest.NewRecorder()
	e.events.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET got %d", rec.Code)
	}
	if len(e.activity()) != 0 {
		t.Fatal("refused deliveries were recorded")
	}
}
