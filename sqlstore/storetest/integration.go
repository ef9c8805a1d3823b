package storetest

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// The webhook cases. testIntegrations runs in Run (the system clock will
// do); RunIntegrations holds the cases that move time: leases, backoff, the
// retry window.

// RunIntegrations runs the outbox cases that need a settable clock against
// stores made by open, which returns a fresh store whose clock is clock.
func RunIntegrations(t *testing.T, open func(tb testing.TB, clock valet.Clock) valet.Store) {
	cases := []struct {
		name string
		fn   func(*testing.T, valet.Store, *Clock)
	}{
		{"Lease", testDeliveryLease},
		{"Complete", testDeliveryComplete},
		{"GiveUp", testDeliveryGiveUp},
		{"DisableAfterFailures", testDeliveryDisable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock()
			c.fn(t, open(t, clock), clock)
		})
	}
}

// allTriggers subscribes to every webhook trigger.
func allTriggers() map[string]bool {
	m := map[string]bool{}
	for _, typ := range valet.WebhookTriggers {
		m[typ] = true
	}
	return m
}

func (f *fixture) newIntegration(t *testing.T, triggers map[string]bool) (*valet.Integration, string) {
	t.Helper()
	in := &valet.Integration{AccountID: f.account.ID, Type: valet.IntegrationTypeHTTP, Name: "Hook of " + f.account.Name,
		HTTP: valet.IntegrationHTTP{URL: "https://hooks.example.com/" + f.account.Name, Triggers: triggers}}
	secret, err := f.s.CreateIntegration(ctx, in)
	must(t, err)
	return in, secret
}

// deliveries returns an integration's deliveries, oldest first.
func (f *fixture) deliveries(t *testing.T, integrationID int64) []valet.Delivery {
	t.Helper()
	ds, err := f.s.ListDeliveries(ctx, f.account.ID, integrationID, valet.MaxLimit)
	must(t, err)
	for i, j := 0, len(ds)-1; i < j; i, j = i+1, j-1 {
		ds[i], ds[j] = ds[j], ds[i]
	}
	return ds
}

func deliveryTypes(ds []valet.Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.EventType+":"+d.Status)
	}
	return out
}

func testIntegrations(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")

	t.Run("Validation", func(t *testing.T) {
		long := strings.Repeat("x", 101)
		cases := []struct {
			name, field string
			mod         func(*valet.Integration)
		}{
			{"type", "type", func(in *valet.Integration) { in.Type = "email" }},
			{"long name", "name", func(in *valet.Integration) { in.Name = long }},
			{"no url", "http.url", func(in *valet.Integration) { in.HTTP.URL = "" }},
			{"relative url", "http.url", func(in *valet.Integration) { in.HTTP.URL = "/hooks" }},
			{"ftp", "http.url", func(in *valet.Integration) { in.HTTP.URL = "ftp://example.com/hooks" }},
			{"plain http", "http.url", func(in *valet.Integration) { in.HTTP.URL = "http://example.com/hooks" }},
			{"fragment", "http.url", func(in *valet.Integration) { in.HTTP.URL = "https://example.com/hooks#x" }},
			{"link-local", "http.url", func(in *valet.Integration) { in.HTTP.URL = "https://169.254.169.254/latest/meta-data" }},
			{"mapped link-local", "http.url", func(in *valet.Integration) { in.HTTP.URL = "https://[::ffff:169.254.169.254]/x" }},
			{"multicast", "http.url", func(in *valet.Integration) { in.HTTP.URL = "https://[ff02::1]/x" }},
			{"unspecified", "http.url", func(in *valet.Integration) { in.HTTP.URL = "https://0.0.0.0/x" }},
			{"userinfo", "http.url", func(in *valet.Integration) { in.HTTP.URL = "https://u:p@example.com/hooks" }},
			{"method", "http.method", func(in *valet.Integration) { in.HTTP.Method = "GET" }},
			{"unknown trigger", "http.triggers", func(in *valet.Integration) { in.HTTP.Triggers["ticket-deleted"] = true }},
			{"no trigger on", "http.triggers", func(in *valet.Integration) {
				in.HTTP.Triggers = map[string]bool{valet.EventTicketCreated: false}
			}},
			{"no triggers", "http.triggers", func(in *valet.Integration) { in.HTTP.Triggers = nil }},
			{"status", "status", func(in *valet.Integration) { in.Status = "paused" }},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				in := &valet.Integration{AccountID: a.account.ID, Type: "http", Name: "Hook",
					HTTP: valet.IntegrationHTTP{URL: "https://example.com/hooks", Triggers: allTriggers()}}
				c.mod(in)
				_, err := s.CreateIntegration(ctx, in)
				wantField(t, err, c.field)
			})
		}
		list, err := s.ListIntegrations(ctx, a.account.ID, valet.ListOptions{})
		must(t, err)
		wantEqual(t, len(list.Data), 0)

		// Defaults, and http on a loopback host.
		for _, u := range []string{"http://127.0.0.1:8080/hooks", "http://localhost/hooks", "http://[::1]/x", "https://example.com/h?k=v"} {
			in := &valet.Integration{AccountID: a.account.ID, HTTP: valet.IntegrationHTTP{URL: u,
				Triggers: map[string]bool{valet.EventTicketUpdated: true}}}
			_, err := s.CreateIntegration(ctx, in)
			must(t, err)
			wantEqual(t, []string{in.Type, in.Name, in.HTTP.Method, in.Status}, []string{"http", "Webhook", "POST", "active"})
			wantEqual(t, in.HTTP.Triggers, map[string]bool{valet.EventTicketCreated: false,
				valet.EventTicketUpdated: true, valet.EventTicketMessageCreated: false})
			must(t, s.DeleteIntegration(ctx, a.account.ID, in.ID))
		}
		// An account that does not exist.
		_, err = s.CreateIntegration(ctx, &valet.Integration{AccountID: b.account.ID + 1000,
			HTTP: valet.IntegrationHTTP{URL: "https://example.com/", Triggers: allTriggers()}})
		wantCode(t, err, valet.ENOTFOUND)
	})

	t.Run("CreateFindList", func(t *testing.T) {
		actx := valet.WithActor(ctx, valet.Actor{UserID: a.owner.ID})
		in := &valet.Integration{AccountID: a.account.ID, Name: "  Zapier  ",
			HTTP: valet.IntegrationHTTP{URL: "https://hooks.example.com/z", Triggers: allTriggers()}}
		secret, err := s.CreateIntegration(actx, in)
		must(t, err)
		if !valet.HasSecretPrefix(secret, valet.PrefixWebhookSecret) || len(secret) < 40 {
			t.Fatalf("secret %q", secret)
		}
		if in.ID == 0 || in.SecretHint != valet.SecretHint(secret) || in.Name != "Zapier" ||
			in.CreatedByUserID == nil || *in.CreatedByUserID != a.owner.ID || in.AppID != nil {
			t.Fatalf("created %s", dump(in))
		}
		wantTime(t, "created_datetime", in.CreatedDatetime)
		got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
		must(t, err)
		wantEqual(t, got, in)
		// The secret is shown once: nothing the store returns carries it.
		b, _ := json.Marshal(got)
		if strings.Contains(string(b), secret[len(valet.PrefixWebhookSecret):]) {
			t.Fatalf("the integration carries its secret: %s", b)
		}
		second, _ := a.newIntegration(t, allTriggers())
		third, _ := a.newIntegration(t, allTriggers())
		list, err := s.ListIntegrations(ctx, a.account.ID, valet.ListOptions{})
		must(t, err)
		wantEqual(t, integrationIDs(list.Data), []int64{third.ID, second.ID, in.ID})
		// A page at a time, newest first, and oldest first with id:asc.
		first, err := s.ListIntegrations(ctx, a.account.ID, valet.ListOptions{Limit: 2})
		must(t, err)
		wantEqual(t, integrationIDs(first.Data), []int64{third.ID, second.ID})
		rest, err := s.ListIntegrations(ctx, a.account.ID, valet.ListOptions{Limit: 2, Cursor: first.NextCursor})
		must(t, err)
		wantEqual(t, integrationIDs(rest.Data), []int64{in.ID})
		wantEqual(t, rest.NextCursor, "")
		asc, err := s.ListIntegrations(ctx, a.account.ID, valet.ListOptions{Limit: 2, OrderBy: "id:asc"})
		must(t, err)
		wantEqual(t, integrationIDs(asc.Data), []int64{in.ID, second.ID})
		for _, bad := range []valet.ListOptions{{Limit: 101}, {OrderBy: "name"}, {Cursor: "nope"},
			{Cursor: first.NextCursor, OrderBy: "id:asc"}} {
			_, err := s.ListIntegrations(ctx, a.account.ID, bad)
			wantCode(t, err, valet.EINVALID)
		}
		for _, x := range []*valet.Integration{in, second, third} {
			must(t, s.DeleteIntegration(ctx, a.account.ID, x.ID))
		}
	})

	t.Run("AccountIsolation", func(t *testing.T) {
		in, _ := a.newIntegration(t, allTriggers())
		defer s.DeleteIntegration(ctx, a.account.ID, in.ID)
		_, err := s.FindIntegration(ctx, b.account.ID, in.ID)
		wantCode(t, err, valet.ENOTFOUND)
		_, err = s.ListDeliveries(ctx, b.account.ID, in.ID, 10)
		wantCode(t, err, valet.ENOTFOUND)
		upd := *in
		upd.AccountID, upd.Name = b.account.ID, "Stolen"
		wantCode(t, s.UpdateIntegration(ctx, &upd), valet.ENOTFOUND)
		wantCode(t, s.DeleteIntegration(ctx, b.account.ID, in.ID), valet.ENOTFOUND)
		list, err := s.ListIntegrations(ctx, b.account.ID, valet.ListOptions{})
		must(t, err)
		wantEqual(t, len(list.Data), 0)
		got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
		must(t, err)
		wantEqual(t, got.Name, in.Name)
	})

	t.Run("Enqueue", func(t *testing.T) {
		a.newTicket(t, "before the integration")
		created, _ := a.newIntegration(t, map[string]bool{valet.EventTicketCreated: true})
		defer s.DeleteIntegration(ctx, a.account.ID, created.ID)
		// The cursor starts at the newest event: the earlier ticket is not sent.
		wantEqual(t, created.LastEventID, a.lastEventID(t))
		everything, _ := a.newIntegration(t, allTriggers())
		defer s.DeleteIntegration(ctx, a.account.ID, everything.ID)
		beta, _ := b.newIntegration(t, allTriggers())
		defer s.DeleteIntegration(ctx, b.account.ID, beta.ID)
		n, err := s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		wantEqual(t, n, 0)

		tk := a.newTicket(t, "after") // ticket-created, ticket-message-created
		_, err = s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Status = valet.StatusClosed; return nil })
		must(t, err)
		a.newCustomer(t, "untriggered")
		n, err = s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		wantEqual(t, n, 4)
		n, err = s.EnqueueDeliveries(ctx, 0) // only once
		must(t, err)
		wantEqual(t, n, 0)

		wantEqual(t, deliveryTypes(a.deliveries(t, created.ID)), []string{"ticket-created:pending"})
		wantEqual(t, deliveryTypes(a.deliveries(t, everything.ID)),
			[]string{"ticket-created:pending", "ticket-message-created:pending", "ticket-updated:pending"})
		wantEqual(t, deliveryTypes(b.deliveries(t, beta.ID)), []string{})
		d := a.deliveries(t, everything.ID)[0]
		if d.IntegrationID != everything.ID || d.Attempts != 0 || d.LastAttempt != nil || d.EventID <= everything.LastEventID ||
			!d.NextAttempt.Equal(d.CreatedDatetime) {
			t.Fatalf("delivery %s", dump(d))
		}
		wantTime(t, "delivery created_datetime", d.CreatedDatetime)
		got, err := s.FindIntegration(ctx, a.account.ID, created.ID)
		must(t, err)
		wantEqual(t, got.LastEventID, a.lastEventID(t))

		// A limit smaller than the backlog takes it in steps, in order.
		for range 3 {
			a.newTicket(t, "backlog")
		}
		total := 0
		for {
			n, err := s.EnqueueDeliveries(ctx, 2)
			must(t, err)
			if n == 0 {
				break
			}
			total += n
		}
		wantEqual(t, total, 3+6) // created: 3 tickets; everything: 3 tickets and 3 messages
		ds := a.deliveries(t, everything.ID)
		for i := 1; i < len(ds); i++ {
			if ds[i].EventID <= ds[i-1].EventID {
				t.Fatalf("deliveries out of event order: %s", dump(ds))
			}
		}
		_, err = s.ListDeliveries(ctx, a.account.ID, everything.ID, 101)
		wantCode(t, err, valet.EINVALID)
		page, err := s.ListDeliveries(ctx, a.account.ID, everything.ID, 2)
		must(t, err)
		wantEqual(t, []int64{page[0].ID, page[1].ID}, []int64{ds[len(ds)-1].ID, ds[len(ds)-2].ID})
	})

	t.Run("Claim", func(t *testing.T) {
		in, secret := a.newIntegration(t, map[string]bool{valet.EventTicketCreated: true})
		defer s.DeleteIntegration(ctx, a.account.ID, in.ID)
		drain(t, s)
		tk := a.newTicket(t, "claim me")
		_, err := s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		jobs, err := s.ClaimDeliveries(ctx, 10, time.Minute)
		must(t, err)
		if len(jobs) != 1 {
			t.Fatalf("claimed %d jobs: %s", len(jobs), dump(jobs))
		}
		j := jobs[0]
		if j.IntegrationID != in.ID || j.URL != in.HTTP.URL || j.Secret != secret || j.AccountName != "alpha" ||
			j.Event.ID != j.EventID || j.Event.Type != valet.EventTicketCreated || j.Event.ObjectType != "Ticket" ||
			j.Event.ObjectID != tk.ID || j.Event.AccountID != a.account.ID {
			t.Fatalf("job %s", dump(j))
		}
		var data struct{ Subject string }
		must(t, json.Unmarshal(j.Event.Data, &data))
		wantEqual(t, data.Subject, "claim me")
		wantTime(t, "event created_datetime", j.Event.CreatedDatetime)
		// Leased: nobody else gets it.
		again, err := s.ClaimDeliveries(ctx, 10, time.Minute)
		must(t, err)
		wantEqual(t, len(again), 0)
		must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID, OK: true, StatusCode: 204}))
		ds := a.deliveries(t, in.ID)
		if len(ds) != 1 || ds[0].Status != valet.DeliveryDelivered || ds[0].Attempts != 1 || ds[0].LastStatusCode != 204 ||
			ds[0].LastAttempt == nil {
			t.Fatalf("deliveries %s", dump(ds))
		}
		_, err = s.ClaimDeliveries(ctx, 10, 0)
		wantCode(t, err, valet.EINVALID)
	})

	t.Run("AppWebhookStopsWithItsGrant", func(t *testing.T) {
		oauth, ok := s.(valet.OAuthStore)
		if !ok {
			t.Skip("the store has no OAuth grants")
		}
		app, _ := newApp(t, oauth, func(a *valet.App) { a.Scopes = valet.ScopeSet{"tickets:read", "integrations:write"} })
		grant, err := oauth.Consent(ctx, a.account.ID, a.owner.ID, app.ID, app.Scopes)
		must(t, err)
		in := &valet.Integration{AccountID: a.account.ID, Type: valet.IntegrationTypeHTTP, Name: "Hub",
			HTTP:  valet.IntegrationHTTP{URL: "https://hub.example/hook", Triggers: map[string]bool{valet.EventTicketCreated: true}},
			AppID: &app.ID, CreatedByUserID: &a.owner.ID}
		_, err = s.CreateIntegration(ctx, in)
		must(t, err)
		defer s.DeleteIntegration(ctx, a.account.ID, in.ID)
		wantEqual(t, in.AppAccessEnded, false)
		drain(t, s)
		// accessEnded is what reading the webhook says of the app's access,
		// one by one and in the list.
		accessEnded := func() bool {
			t.Helper()
			got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
			must(t, err)
			page, err := s.ListIntegrations(ctx, a.account.ID, valet.ListOptions{})
			must(t, err)
			for _, listed := range page.Data {
				if listed.ID == in.ID && listed.AppAccessEnded != got.AppAccessEnded {
					t.Fatalf("listed %v, found %v", listed.AppAccessEnded, got.AppAccessEnded)
				}
				if listed.AppID == nil && listed.AppAccessEnded {
					t.Fatalf("a webhook no app set up says its app's access ended: %s", dump(listed))
				}
			}
			return got.AppAccessEnded
		}
		wantEqual(t, accessEnded(), false)
		// Made for an app the person has not installed, it says so at once.
		stray, _ := newApp(t, oauth, func(a *valet.App) { a.Scopes = app.Scopes })
		orphan := &valet.Integration{AccountID: a.account.ID, Type: valet.IntegrationTypeHTTP, Name: "Stray",
			HTTP:  valet.IntegrationHTTP{URL: "https://stray.example/hook", Triggers: map[string]bool{valet.EventTicketCreated: true}},
			AppID: &stray.ID, CreatedByUserID: &a.owner.ID}
		_, err = s.CreateIntegration(ctx, orphan)
		must(t, err)
		wantEqual(t, orphan.AppAccessEnded, true)
		must(t, s.DeleteIntegration(ctx, a.account.ID, orphan.ID))
		enqueue := func() {
			t.Helper()
			_, err := s.EnqueueDeliveries(ctx, 0)
			must(t, err)
		}

		a.newTicket(t, "while granted")
		enqueue()
		a.newTicket(t, "pending when revoked")
		enqueue()
		wantEqual(t, len(a.deliveries(t, in.ID)), 2)
		jobs, err := s.ClaimDeliveries(ctx, 1, time.Minute)
		must(t, err)
		if len(jobs) != 1 || jobs[0].IntegrationID != in.ID {
			t.Fatalf("claimed %s", dump(jobs))
		}
		must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: jobs[0].ID, OK: true, StatusCode: 204}))

		// Revoked: what was pending is not sent, and nothing new is queued.
		must(t, s.RevokeGrant(ctx, a.account.ID, grant.ID))
		jobs, err = s.ClaimDeliveries(ctx, 10, time.Minute)
		must(t, err)
		wantEqual(t, len(jobs), 0)
		ds := a.deliveries(t, in.ID)
		if len(ds) != 2 || ds[0].Status != valet.DeliveryDelivered || ds[1].Status != valet.DeliveryFailed ||
			!strings.Contains(ds[1].LastError, "no longer has access") {
			t.Fatalf("deliveries after revocation %s", dump(ds))
		}
		a.newTicket(t, "after the revocation")
		enqueue()
		wantEqual(t, len(a.deliveries(t, in.ID)), 2)
		got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
		must(t, err)
		wantEqual(t, got.LastEventID, a.lastEventID(t)) // moved past it
		// It says so, though its status stays as set.
		wantEqual(t, []any{accessEnded(), got.Status}, []any{true, valet.IntegrationActive})

		// Granted again: new events are delivered, the missed ones are not.
		_, err = oauth.Consent(ctx, a.account.ID, a.owner.ID, app.ID, app.Scopes)
		must(t, err)
		wantEqual(t, accessEnded(), false)
		a.newTicket(t, "granted again")
		enqueue()
		wantEqual(t, len(a.deliveries(t, in.ID)), 3)
		drain(t, s)
	})

	t.Run("UpdateDisableEnable", func(t *testing.T) {
		in, _ := a.newIntegration(t, allTriggers())
		defer s.DeleteIntegration(ctx, a.account.ID, in.ID)
		upd := &valet.Integration{ID: in.ID, AccountID: a.account.ID, Name: "Renamed",
			HTTP: valet.IntegrationHTTP{URL: "https://elsewhere.example.com/", Triggers: map[string]bool{valet.EventTicketUpdated: true}}}
		must(t, s.UpdateIntegration(ctx, upd))
		got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
		must(t, err)
		wantEqual(t, got, upd)
		if got.Name != "Renamed" || got.HTTP.URL != "https://elsewhere.example.com/" || got.HTTP.Triggers[valet.EventTicketCreated] ||
			got.SecretHint != in.SecretHint || !got.CreatedDatetime.Equal(in.CreatedDatetime) {
			t.Fatalf("updated %s", dump(got))
		}
		bad := *got
		bad.HTTP.URL = "http://example.com/"
		wantField(t, s.UpdateIntegration(ctx, &bad), "http.url")

		// Disabling by hand gives up the pending deliveries and stops new ones.
		tk := a.newTicket(t, "to update")
		_, err = s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Subject = "updated"; return nil })
		must(t, err)
		_, err = s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		wantEqual(t, deliveryTypes(a.deliveries(t, in.ID)), []string{"ticket-updated:pending"})
		off := *got
		off.Status = valet.IntegrationDisabled
		must(t, s.UpdateIntegration(ctx, &off))
		if off.Status != valet.IntegrationDisabled || off.DisabledDatetime == nil {
			t.Fatalf("disabled %s", dump(off))
		}
		ds := a.deliveries(t, in.ID)
		if len(ds) != 1 || ds[0].Status != valet.DeliveryFailed || ds[0].LastError == "" {
			t.Fatalf("deliveries of a disabled integration: %s", dump(ds))
		}
		_, err = s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Subject = "while off"; return nil })
		must(t, err)
		_, err = s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		wantEqual(t, len(a.deliveries(t, in.ID)), 1)
		// An update that does not name the status keeps it.
		rename := off
		rename.Status, rename.Name = "", "Still off"
		must(t, s.UpdateIntegration(ctx, &rename))
		wantEqual(t, []string{rename.Status, rename.Name}, []string{valet.IntegrationDisabled, "Still off"})

		// Re-enabled, it starts from now: what happened while off is not sent.
		on := off
		on.Status = valet.IntegrationActive
		must(t, s.UpdateIntegration(ctx, &on))
		if on.Status != valet.IntegrationActive || on.DisabledDatetime != nil || on.ConsecutiveFailures != 0 ||
			on.LastEventID != a.lastEventID(t) {
			t.Fatalf("re-enabled %s", dump(on))
		}
		_, err = s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		wantEqual(t, len(a.deliveries(t, in.ID)), 1)
		_, err = s.UpdateTicket(ctx, a.account.ID, tk.ID, func(t *valet.Ticket) error { t.Subject = "back on"; return nil })
		must(t, err)
		_, err = s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		wantEqual(t, deliveryTypes(a.deliveries(t, in.ID)), []string{"ticket-updated:failed", "ticket-updated:pending"})
	})

	t.Run("Delete", func(t *testing.T) {
		in, _ := a.newIntegration(t, allTriggers())
		drain(t, s)
		a.newTicket(t, "never sent")
		_, err := s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		jobs, err := s.ClaimDeliveries(ctx, 100, time.Minute)
		must(t, err)
		wantEqual(t, len(jobs), 2)
		must(t, s.DeleteIntegration(ctx, a.account.ID, in.ID))
		_, err = s.FindIntegration(ctx, a.account.ID, in.ID)
		wantCode(t, err, valet.ENOTFOUND)
		_, err = s.ListDeliveries(ctx, a.account.ID, in.ID, 10)
		wantCode(t, err, valet.ENOTFOUND)
		// Its deliveries went with it: an attempt in flight cannot complete.
		wantCode(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: jobs[0].ID, OK: true}), valet.ENOTFOUND)
		wantCode(t, s.DeleteIntegration(ctx, a.account.ID, in.ID), valet.ENOTFOUND)
	})
}

// drain delivers everything pending, so that a case sees only its own jobs.
func drain(t *testing.T, s valet.Store) {
	t.Helper()
	_, err := s.EnqueueDeliveries(ctx, 0)
	must(t, err)
	for {
		jobs, err := s.ClaimDeliveries(ctx, 100, time.Minute)
		must(t, err)
		if len(jobs) == 0 {
			return
		}
		for _, j := range jobs {
			must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID, OK: true, StatusCode: 200}))
		}
	}
}

// claim enqueues every event and claims with a lease of a minute.
func claim(t *testing.T, s valet.Store) []valet.DeliveryJob {
	t.Helper()
	for {
		n, err := s.EnqueueDeliveries(ctx, 0)
		must(t, err)
		if n == 0 {
			break
		}
	}
	jobs, err := s.ClaimDeliveries(ctx, 1000, time.Minute)
	must(t, err)
	return jobs
}

func testDeliveryLease(t *testing.T, s valet.Store, clock *Clock) {
	a := newFixture(t, s, "alpha")
	in, _ := a.newIntegration(t, map[string]bool{valet.EventTicketCreated: true})
	a.newTicket(t, "one")
	a.newTicket(t, "two")
	jobs := claim(t, s)
	if len(jobs) != 2 || jobs[0].ID >= jobs[1].ID || jobs[0].IntegrationID != in.ID {
		t.Fatalf("claimed %s", dump(jobs))
	}
	wantEqual(t, len(claim(t, s)), 0)
	clock.Advance(time.Minute - time.Microsecond)
	wantEqual(t, len(claim(t, s)), 0)
	// The lease ran out (a node died mid-attempt): the job is claimable again.
	clock.Advance(time.Microsecond)
	again := claim(t, s)
	wantEqual(t, []int64{again[0].ID, again[1].ID}, []int64{jobs[0].ID, jobs[1].ID})

	// A limit takes the oldest first.
	clock.Advance(time.Minute)
	_, err := s.EnqueueDeliveries(ctx, 0)
	must(t, err)
	one, err := s.ClaimDeliveries(ctx, 1, time.Minute)
	must(t, err)
	wantEqual(t, len(one), 1)
	wantEqual(t, one[0].ID, jobs[0].ID)
}

func testDeliveryComplete(t *testing.T, s valet.Store, clock *Clock) {
	a := newFixture(t, s, "alpha")
	in, _ := a.newIntegration(t, map[string]bool{valet.EventTicketCreated: true})
	a.newTicket(t, "one")
	j := claim(t, s)[0]

	// A failure reschedules and counts against the integration.
	next := clock.Now().Add(10 * time.Second)
	must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID, StatusCode: 503,
		Error: "HTTP 503 Service Unavailable", NextAttempt: next}))
	d := a.deliveries(t, in.ID)[0]
	if d.Status != valet.DeliveryPending || d.Attempts != 1 || d.LastStatusCode != 503 || d.LastError != "HTTP 503 Service Unavailable" ||
		!d.NextAttempt.Equal(next) || d.LastAttempt == nil || !d.LastAttempt.Equal(clock.Now()) {
		t.Fatalf("after a failure: %s", dump(d))
	}
	got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
	must(t, err)
	wantEqual(t, got.ConsecutiveFailures, 1)
	// Not due yet, then due (the failure also ended the lease).
	wantEqual(t, len(claim(t, s)), 0)
	clock.Advance(10 * time.Second)
	jobs := claim(t, s)
	wantEqual(t, len(jobs), 1)

	// A network error: no status code; a long error is cut.
	clock.Advance(time.Second)
	must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID, Error: strings.Repeat("é", 2000),
		NextAttempt: clock.Now()}))
	d = a.deliveries(t, in.ID)[0]
	if d.Attempts != 2 || d.LastStatusCode != 0 || len([]rune(d.LastError)) > 1000 || d.LastError == "" {
		t.Fatalf("after a network error: %s", dump(d))
	}

	// Success: delivered, and the failure count starts again.
	jobs = claim(t, s)
	wantEqual(t, len(jobs), 1)
	must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID, OK: true, StatusCode: 200}))
	d = a.deliveries(t, in.ID)[0]
	if d.Status != valet.DeliveryDelivered || d.Attempts != 3 || d.LastStatusCode != 200 || d.LastError != "" {
		t.Fatalf("after success: %s", dump(d))
	}
	got, err = s.FindIntegration(ctx, a.account.ID, in.ID)
	must(t, err)
	wantEqual(t, got.ConsecutiveFailures, 0)
	// Delivered is final: a late result changes nothing, and it is never claimed again.
	must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID, StatusCode: 500, NextAttempt: clock.Now()}))
	wantEqual(t, a.deliveries(t, in.ID)[0], d)
	clock.Advance(time.Hour)
	wantEqual(t, len(claim(t, s)), 0)

	wantCode(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID + 1000, OK: true}), valet.ENOTFOUND)
}

func testDeliveryGiveUp(t *testing.T, s valet.Store, clock *Clock) {
	a := newFixture(t, s, "alpha")
	in, _ := a.newIntegration(t, map[string]bool{valet.EventTicketCreated: true})
	a.newTicket(t, "one")
	a.newTicket(t, "two")
	jobs := claim(t, s)
	wantEqual(t, len(jobs), 2)
	created := jobs[0].CreatedDatetime

	// No next attempt: give up now.
	must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: jobs[0].ID, StatusCode: 410, Error: "HTTP 410 Gone"}))
	// Within the window the last attempt may still be scheduled; past it, not.
	must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: jobs[1].ID, StatusCode: 500,
		NextAttempt: created.Add(valet.DeliveryRetryWindow)}))
	clock.Advance(valet.DeliveryRetryWindow)
	again := claim(t, s)
	wantEqual(t, len(again), 1)
	must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: jobs[1].ID, StatusCode: 500,
		NextAttempt: clock.Now().Add(time.Second)}))
	wantEqual(t, deliveryTypes(a.deliveries(t, in.ID)), []string{"ticket-created:failed", "ticket-created:failed"})
	ds := a.deliveries(t, in.ID)
	if ds[0].LastStatusCode != 410 || ds[0].Attempts != 1 || ds[1].Attempts != 2 {
		t.Fatalf("given up: %s", dump(ds))
	}
	clock.Advance(48 * time.Hour)
	wantEqual(t, len(claim(t, s)), 0)
	got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
	must(t, err)
	wantEqual(t, []any{got.Status, got.ConsecutiveFailures}, []any{valet.IntegrationActive, 3})
}

func testDeliveryDisable(t *testing.T, s valet.Store, clock *Clock) {
	a := newFixture(t, s, "alpha")
	in, _ := a.newIntegration(t, allTriggers())
	other, _ := a.newIntegration(t, map[string]bool{valet.EventTicketCreated: true})
	const tickets = 52 // two deliveries each for in, one for other
	for range tickets {
		a.newTicket(t, "failing")
	}
	jobs := claim(t, s)
	wantEqual(t, len(jobs), 3*tickets)
	slices.SortFunc(jobs, func(x, y valet.DeliveryJob) int { return cmp.Compare(x.EventID, y.EventID) })
	failures := 0
	for _, j := range jobs {
		if j.IntegrationID == other.ID {
			// Another integration's successes do not reset this one's count.
			must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID, OK: true, StatusCode: 200}))
			continue
		}
		must(t, s.CompleteDelivery(ctx, valet.DeliveryResult{DeliveryID: j.ID, StatusCode: 500,
			NextAttempt: clock.Now().Add(time.Minute)}))
		failures++
		got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
		must(t, err)
		want := valet.IntegrationActive
		if failures >= valet.MaxConsecutiveFailures {
			want = valet.IntegrationDisabled
		}
		if got.Status != want || got.ConsecutiveFailures != min(failures, valet.MaxConsecutiveFailures) {
			t.Fatalf("after %d failures: %s", failures, dump(got))
		}
	}
	got, err := s.FindIntegration(ctx, a.account.ID, in.ID)
	must(t, err)
	if got.DisabledDatetime == nil || !got.DisabledDatetime.Equal(clock.Now()) {
		t.Fatalf("disabled %s", dump(got))
	}
	// Nothing is left pending: the deliveries in flight failed with it.
	pending := 0
	for _, d := range a.deliveries(t, in.ID) {
		if d.Status == valet.DeliveryPending {
			pending++
		}
	}
	wantEqual(t, pending, 0)
	clock.Advance(time.Hour)
	a.newTicket(t, "after disabling")
	for _, j := range claim(t, s) {
		if j.IntegrationID == in.ID {
			t.Fatalf("claimed a delivery of a disabled integration: %s", dump(j))
		}
	}
	o, err := s.FindIntegration(ctx, a.account.ID, other.ID)
	must(t, err)
	wantEqual(t, o.Status, valet.IntegrationActive)

	// Re-enabled by hand: the count starts again.
	got.Status = valet.IntegrationActive
	must(t, s.UpdateIntegration(ctx, got))
	wantEqual(t, []any{got.Status, got.ConsecutiveFailures, got.DisabledDatetime == nil}, []any{"active", 0, true})
	a.newTicket(t, "after re-enabling")
	var mine []valet.DeliveryJob
	for _, j := range claim(t, s) {
		if j.IntegrationID == in.ID {
			mine = append(mine, j)
		}
	}
	wantEqual(t, len(mine), 2)
}

func integrationIDs(ins []valet.Integration) []int64 {
	out := make([]int64, len(ins))
	for i, in := range ins {
		out[i] = in.ID
	}
	return out
}
