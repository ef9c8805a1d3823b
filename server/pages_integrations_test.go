package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
)

func TestInboxIntegrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newInboxEnv(t)
	b := e.browser(t)
	b.mustSignIn(e.owner)

	inboxBody(t, b.get("/settings"), `href="/settings/integrations"`)
	a := b.get("/settings/integrations")
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "No webhooks yet.", "Add webhook", "A ticket is created", `value="ticket-created" checked`)

	// A refused form comes back with what was typed and why.
	a = b.post("/settings/integrations", url.Values{"name": {"Orders"}, "url": {"http://hooks.example.com/x"}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, `value="http://hooks.example.com/x"`, `value="Orders"`, "URL must use https", "Triggers must enable at least one")

	// Created: the secret is shown once, on a page nobody caches.
	a = b.post("/settings/integrations", url.Values{"name": {"Orders"}, "url": {"https://hooks.example.com/valet"},
		"triggers": {"ticket-created", "ticket-updated"}})
	inboxStatus(t, a, http.StatusOK)
	if cc := a.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("secret page Cache-Control = %q", cc)
	}
	m := regexp.MustCompile(`value="(vws_[A-Za-z0-9_-]+)"`).FindStringSubmatch(a.body)
	if m == nil {
		t.Fatalf("no secret on the result page:\n%.2000s", a.body)
	}
	secret := m[1]
	inboxBody(t, a, "only time", "https://hooks.example.com/valet")
	list, err := e.store.ListIntegrations(ctx, e.acme.ID, valet.ListOptions{})
	if err != nil || len(list.Data) != 1 {
		t.Fatalf("integrations %+v %v", list, err)
	}
	in := list.Data[0]
	if in.Name != "Orders" || !in.HTTP.Triggers[valet.EventTicketCreated] || !in.HTTP.Triggers[valet.EventTicketUpdated] ||
		in.HTTP.Triggers[valet.EventTicketMessageCreated] || in.CreatedByUserID == nil || *in.CreatedByUserID != e.owner.ID || in.AppID != nil {
		t.Fatalf("stored %+v", in)
	}
	page := "/settings/integrations/" + inboxID(in.ID)

	a = b.get("/settings/integrations")
	inboxBody(t, a, "Orders", "https://hooks.example.com/valet", "ticket-updated", "active", "by Olivia Owner", page)
	if strings.Contains(a.body, secret) {
		t.Fatal("the list shows the secret again")
	}
	a = b.get(page)
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "Delivery log", "Nothing delivered yet", "vws_"+in.SecretHint, "Disable", "Delete", "Save")
	if strings.Contains(a.body, secret) {
		t.Fatal("the webhook page shows the secret again")
	}

	// Edit.
	a = b.post(page, url.Values{"name": {"Orders v2"}, "url": {"https://hooks.example.com/v2"}, "triggers": {"ticket-message-created"}})
	inboxStatus(t, a, http.StatusSeeOther)
	if a.location != page {
		t.Errorf("edit redirects to %q", a.location)
	}
	inboxBody(t, b.get(page), "Webhook saved.", "Orders v2", "https://hooks.example.com/v2")
	got, _ := e.store.FindIntegration(ctx, e.acme.ID, in.ID)
	if got.Name != "Orders v2" || got.HTTP.Triggers[valet.EventTicketCreated] || !got.HTTP.Triggers[valet.EventTicketMessageCreated] {
		t.Errorf("after edit %+v", got)
	}
	a = b.post(page, url.Values{"name": {"Orders v2"}, "url": {"ftp://nope"}, "triggers": {"ticket-message-created"}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, `value="ftp://nope"`, "URL must")

	// Disable and re-enable by hand.
	b.get(page)
	inboxStatus(t, b.post(page+"/disable", nil), http.StatusSeeOther)
	a = b.get(page)
	inboxBody(t, a, "Webhook disabled", "Re-enable")
	if strings.Contains(a.body, "failed deliveries in a row") {
		t.Error("a webhook disabled by hand says it failed")
	}
	inboxStatus(t, b.post(page+"/enable", nil), http.StatusSeeOther)
	inboxBody(t, b.get(page), "Webhook re-enabled")

	// 100 failures in a row disable it, which the list and the page say.
	e.newTicket(t, e.acme.ID, e.carla, "Where is it?", "Still waiting.")
	if _, err := e.store.EnqueueDeliveries(ctx, 100); err != nil {
		t.Fatal(err)
	}
	ds, err := e.store.ListDeliveries(ctx, e.acme.ID, in.ID, 10)
	if err != nil || len(ds) == 0 {
		t.Fatalf("deliveries %+v %v", ds, err)
	}
	for range valet.MaxConsecutiveFailures {
		if err := e.store.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: ds[0].ID, StatusCode: 500,
			Error: "HTTP 500 Internal Server Error", NextAttempt: e.clock.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	a = b.get("/settings/integrations")
	inboxBody(t, a, "Disabled after 100 failed deliveries")
	a = b.get(page)
	inboxBody(t, a, "Disabled after 100 failed deliveries", "Re-enable", "HTTP 500", "ticket-message-created", "failed")
	inboxStatus(t, b.post(page+"/enable", nil), http.StatusSeeOther)
	a = b.get(page)
	if strings.Contains(a.body, "Disabled after 100") {
		t.Error("still shown disabled after re-enabling")
	}
	got, _ = e.store.FindIntegration(ctx, e.acme.ID, in.ID)
	if got.Status != valet.IntegrationActive || got.ConsecutiveFailures != 0 {
		t.Errorf("re-enabled %+v", got)
	}

	// An agent sees webhooks read-only and cannot change them.
	ag := e.browser(t)
	ag.mustSignIn(e.agent)
	a = ag.get("/settings/integrations")
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "read-only", "Orders v2")
	if strings.Contains(a.body, "Add webhook") {
		t.Error("an agent sees the add form")
	}
	a = ag.get(page)
	inboxStatus(t, a, http.StatusOK)
	if strings.Contains(a.body, page+"/delete") || strings.Contains(a.body, page+"/disable") || strings.Contains(a.body, ">Save<") {
		t.Error("an agent sees the webhook's forms")
	}
	for _, path := range []string{"/settings/integrations", page, page + "/disable", page + "/enable", page + "/delete"} {
		ag.get("/settings/integrations")
		inboxStatus(t, ag.post(path, url.Values{"name": {"x"}, "url": {"https://x.example"}, "triggers": {"ticket-created"}}), http.StatusForbidden)
	}

	// Another account's owner finds nothing.
	g := e.browser(t)
	g.mustSignIn(e.gus)
	inboxStatus(t, g.get(page), http.StatusNotFound)
	for _, path := range []string{page, page + "/disable", page + "/delete"} {
		g.get("/settings/integrations")
		inboxStatus(t, g.post(path, url.Values{"name": {"x"}, "url": {"https://x.example"}, "triggers": {"ticket-created"}}), http.StatusNotFound)
	}
	if a := g.get("/settings/integrations"); strings.Contains(a.body, "Orders v2") {
		t.Error("globex lists acme's webhook")
	}

	// A form without the CSRF token is refused.
	b.get(page)
	inboxStatus(t, b.post(page+"/delete", url.Values{"csrf": {"forged"}}), http.StatusForbidden)

	// A webhook an app set up says when the app's access has ended, in
	// the list and on its page, though its status is still active.
	_, grant := mustOAuthToken(t, e.store, e.acme, e.owner, valet.ScopeIntegrationsWrite, valet.ScopeTicketsRead)
	byApp := &valet.Integration{AccountID: e.acme.ID, Type: valet.IntegrationTypeHTTP, Name: "Hub hook",
		HTTP:  valet.IntegrationHTTP{URL: "https://hub.example.com/hook", Triggers: map[string]bool{valet.EventTicketCreated: true}},
		AppID: &grant.AppID, CreatedByUserID: &e.owner.ID}
	if _, err := e.store.CreateIntegration(ctx, byApp); err != nil {
		t.Fatal(err)
	}
	appPage := "/settings/integrations/" + inboxID(byApp.ID)
	if a := b.get("/settings/integrations"); strings.Contains(a.body, "app access ended") {
		t.Error("a live app's webhook is shown stopped")
	}
	if err := e.store.RevokeGrant(ctx, e.acme.ID, grant.ID); err != nil {
		t.Fatal(err)
	}
	inboxBody(t, b.get("/settings/integrations"), "Hub hook", "stopped: app access ended")
	inboxBody(t, b.get(appPage), "stopped: app access ended", "Test app no longer has access to this account", "installs the app again")
	b.get(appPage)
	inboxStatus(t, b.post(appPage+"/delete", nil), http.StatusSeeOther)

	// Delete.
	b.get(page)
	a = b.post(page+"/delete", nil)
	inboxStatus(t, a, http.StatusSeeOther)
	inboxBody(t, b.get("/settings/integrations"), "Webhook deleted.", "No webhooks yet.")
	inboxStatus(t, b.get(page), http.StatusNotFound)
}

// TestInboxIntegrationsWithoutSecret: without a seal key the page says
// webhooks need VALET_SECRET instead of offering a form that cannot work.
func TestInboxIntegrationsWithoutSecret(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	cfg := DefaultConfig()
	cfg.Issuer = "http://valet.test"
	srv, err := New(sealless{e.store}, cfg, WithClock(e.clock), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		_ = srv.Close(context.Background())
	})
	off := *e
	off.ts = ts
	b := off.browser(t)
	b.mustSignIn(e.owner)
	a := b.get("/settings/integrations")
	inboxStatus(t, a, http.StatusOK)
	inboxBody(t, a, "Webhooks need a server secret", "VALET_SECRET")
	if strings.Contains(a.body, "Add webhook") {
		t.Error("the add form is offered without a secret")
	}
	a = b.post("/settings/integrations", url.Values{"name": {"x"}, "url": {"https://x.example"}, "triggers": {"ticket-created"}})
	inboxStatus(t, a, http.StatusBadRequest)
	inboxBody(t, a, "VALET_SECRET")
}
