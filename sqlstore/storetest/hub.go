package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/valethq/valet"
)

// RunHub runs the integration hub's cases against stores made by open,
// which returns a fresh, empty store whose clock is clock and closes it when
// tb ends.
func RunHub(t *testing.T, open func(tb testing.TB, clock valet.Clock) valet.HubStore) {
	cases := []struct {
		name string
		fn   func(*testing.T, valet.HubStore, *Clock)
	}{
		{"Ping", testHubPing},
		{"Users", testHubUsers},
		{"Sessions", testHubSessions},
		{"SaveConnection", testHubSaveConnection},
		{"SaveInvalid", testHubSaveInvalid},
		{"Reconnect", testHubReconnect},
		{"TakenConnection", testHubTakenConnection},
		{"ListConnections", testHubListConnections},
		{"DueConnections", testHubDueConnections},
		{"Lease", testHubLease},
		{"LeaseExpiredStolen", testHubLeaseStolen},
		{"LeaseRelease", testHubLeaseRelease},
		{"LeaseRevoked", testHubLeaseRevoked},
		{"FailRefresh", testHubFailRefresh},
		{"MarkConnection", testHubMarkConnection},
		{"Touch", testHubTouch},
		{"Webhook", testHubWebhook},
		{"Reseal", testHubReseal},
		{"Activity", testHubActivity},
		{"PurgeActivity", testHubPurgeActivity},
		{"DeleteCascades", testHubDelete},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock()
			c.fn(t, open(t, clock), clock)
		})
	}
}

const hubIssuer = "https://helpdesk.test"

func newHubUser(t *testing.T, s valet.HubStore, subject, name string) *valet.HubUser {
	t.Helper()
	u := &valet.HubUser{Issuer: hubIssuer, Subject: subject, Email: subject + "@example.test", Name: name}
	must(t, s.UpsertHubUser(ctx, u))
	return u
}

// sealedSecrets stands for what the vault seals: the store only keeps bytes.
func sealedSecrets(keyID, tag string) valet.ConnectionSecrets {
	return valet.ConnectionSecrets{KeyID: keyID, AccessToken: []byte("sealed-access-" + tag),
		RefreshToken: []byte("sealed-refresh-" + tag)}
}

func newConnection(t *testing.T, s valet.HubStore, clock *Clock, by int64, account string, mod ...func(*valet.Connection)) *valet.Connection {
	t.Helper()
	now := clock.Now()
	c := &valet.Connection{Provider: "valet", BaseURL: "https://helpdesk.test", Account: account,
		Scopes: []string{"openid", "offline", "tickets:read"}, ConnectedBy: by,
		AccessExpires: now.Add(24 * time.Hour), NextRefresh: now.Add(23 * time.Hour)}
	for _, m := range mod {
		m(c)
	}
	must(t, s.SaveConnection(ctx, c, sealedSecrets("k1", account)))
	return c
}

func findConnection(t *testing.T, s valet.HubStore, id int64) (*valet.Connection, *valet.ConnectionSecrets) {
	t.Helper()
	c, sec, err := s.FindConnection(ctx, id)
	must(t, err)
	return c, sec
}

func connectionIDs(cs []valet.Connection) []int64 {
	out := []int64{}
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func testHubPing(t *testing.T, s valet.HubStore, _ *Clock) {
	must(t, s.Ping(ctx))
}

func testHubUsers(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	if u.ID == 0 {
		t.Fatal("UpsertHubUser set no id")
	}
	wantEqual(t, u.CreatedDatetime, clock.Now())

	clock.Advance(time.Minute)
	again := &valet.HubUser{Issuer: hubIssuer, Subject: "sub-1", Email: "ada@new.test", Name: "Ada L."}
	must(t, s.UpsertHubUser(ctx, again))
	wantEqual(t, again.ID, u.ID)
	wantEqual(t, again.CreatedDatetime, u.CreatedDatetime)

	// The same subject from another issuer is another person.
	other := &valet.HubUser{Issuer: "https://other.test", Subject: "sub-1"}
	must(t, s.UpsertHubUser(ctx, other))
	if other.ID == u.ID {
		t.Fatal("one user for two issuers")
	}

	secret, err := s.CreateHubSession(ctx, u.ID, time.Hour)
	must(t, err)
	got, err := s.HubSessionUser(ctx, secret)
	must(t, err)
	wantEqual(t, *got, valet.HubUser{ID: u.ID, Issuer: hubIssuer, Subject: "sub-1", Email: "ada@new.test",
		Name: "Ada L.", CreatedDatetime: u.CreatedDatetime})

	for _, tc := range []struct {
		name  string
		user  valet.HubUser
		field string
	}{
		{"no issuer", valet.HubUser{Subject: "x"}, "issuer"},
		{"no subject", valet.HubUser{Issuer: hubIssuer}, "subject"},
		{"blank subject", valet.HubUser{Issuer: hubIssuer, Subject: "  "}, "subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantField(t, s.UpsertHubUser(ctx, &tc.user), tc.field)
		})
	}
}

func testHubSessions(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	secret, err := s.CreateHubSession(ctx, u.ID, time.Hour)
	must(t, err)
	if !valet.HasSecretPrefix(secret, valet.PrefixSession) {
		t.Fatalf("session secret %q lacks %s", secret, valet.PrefixSession)
	}
	got, err := s.HubSessionUser(ctx, secret)
	must(t, err)
	wantEqual(t, got.ID, u.ID)

	_, err = s.HubSessionUser(ctx, secret+"x")
	wantCode(t, err, valet.EUNAUTHORIZED)
	_, err = s.CreateHubSession(ctx, u.ID+1000, time.Hour)
	wantCode(t, err, valet.ENOTFOUND)

	// Expiry follows the clock.
	clock.Advance(59 * time.Minute)
	_, err = s.HubSessionUser(ctx, secret)
	must(t, err)
	clock.Advance(time.Minute)
	_, err = s.HubSessionUser(ctx, secret)
	wantCode(t, err, valet.EUNAUTHORIZED)

	// Signing out ends a live session; unknown secrets are no error.
	live, err := s.CreateHubSession(ctx, u.ID, time.Hour)
	must(t, err)
	must(t, s.DeleteHubSession(ctx, live))
	_, err = s.HubSessionUser(ctx, live)
	wantCode(t, err, valet.EUNAUTHORIZED)
	must(t, s.DeleteHubSession(ctx, "vss_unknown"))
}

func testHubSaveConnection(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	now := clock.Now()
	c := &valet.Connection{Provider: "valet", BaseURL: "https://helpdesk.test", Account: "acme",
		Scopes: []string{"openid", "tickets:read"}, ConnectedBy: u.ID,
		AccessExpires: now.Add(24 * time.Hour), NextRefresh: now.Add(20 * time.Hour)}
	sec := sealedSecrets("k1", "acme")
	must(t, s.SaveConnection(ctx, c, sec))
	if c.ID == 0 {
		t.Fatal("SaveConnection set no id")
	}
	want := valet.Connection{ID: c.ID, Provider: "valet", BaseURL: "https://helpdesk.test", Account: "acme",
		Scopes: []string{"openid", "tickets:read"}, Status: valet.ConnectionActive, ConnectedBy: u.ID,
		ConnectedByName: "Ada", AccessExpires: now.Add(24 * time.Hour), NextRefresh: now.Add(20 * time.Hour),
		Generation: 1, CreatedDatetime: now, UpdatedDatetime: now}
	wantEqual(t, *c, want)
	got, gotSec := findConnection(t, s, c.ID)
	wantEqual(t, *got, want)
	wantEqual(t, *gotSec, sec)

	// A provider that issues no refresh token.
	noRefresh := valet.ConnectionSecrets{KeyID: "k1", AccessToken: []byte("sealed-access")}
	g := &valet.Connection{Provider: "gorgias", BaseURL: "https://acme.gorgias.com", Account: "acme", ConnectedBy: u.ID}
	must(t, s.SaveConnection(ctx, g, noRefresh))
	if g.ID == c.ID {
		t.Fatal("another provider's account replaced the connection")
	}
	_, gotSec = findConnection(t, s, g.ID)
	wantEqual(t, *gotSec, noRefresh)

	_, _, err := s.FindConnection(ctx, g.ID+1000)
	wantCode(t, err, valet.ENOTFOUND)
}

func testHubSaveInvalid(t *testing.T, s valet.HubStore, _ *Clock) {
	ok := valet.Connection{Provider: "valet", BaseURL: "https://helpdesk.test", Account: "acme"}
	for _, tc := range []struct {
		name  string
		mod   func(*valet.Connection, *valet.ConnectionSecrets)
		field string
	}{
		{"no provider", func(c *valet.Connection, _ *valet.ConnectionSecrets) { c.Provider = "" }, "provider"},
		{"no account", func(c *valet.Connection, _ *valet.ConnectionSecrets) { c.Account = " " }, "account"},
		{"no base url", func(c *valet.Connection, _ *valet.ConnectionSecrets) { c.BaseURL = "" }, "base_url"},
		{"relative base url", func(c *valet.Connection, _ *valet.ConnectionSecrets) { c.BaseURL = "/helpdesk" }, "base_url"},
		{"no host", func(c *valet.Connection, _ *valet.ConnectionSecrets) { c.BaseURL = "https:///x" }, "base_url"},
		{"not http", func(c *valet.Connection, _ *valet.ConnectionSecrets) { c.BaseURL = "ftp://helpdesk.test" }, "base_url"},
		{"unknown connector", func(c *valet.Connection, _ *valet.ConnectionSecrets) { c.ConnectedBy = 4242 }, "connected_by"},
		{"no key id", func(_ *valet.Connection, s *valet.ConnectionSecrets) { s.KeyID = "" }, "key_id"},
		{"no access token", func(_ *valet.Connection, s *valet.ConnectionSecrets) { s.AccessToken = nil }, "access_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sec := ok, sealedSecrets("k1", "acme")
			tc.mod(&c, &sec)
			wantField(t, s.SaveConnection(ctx, &c, sec), tc.field)
		})
	}
	all, err := s.ListConnections(ctx, 0)
	must(t, err)
	wantEqual(t, len(all), 0)
}

func testHubReconnect(t *testing.T, s valet.HubStore, clock *Clock) {
	ada := newHubUser(t, s, "sub-1", "Ada")
	bob := newHubUser(t, s, "sub-2", "")
	c := newConnection(t, s, clock, ada.ID, "acme")
	created := c.CreatedDatetime
	must(t, s.SetConnectionWebhook(ctx, c.ID, 77, []byte("sealed-webhook")))
	must(t, s.TouchConnections(ctx, map[int64]time.Time{c.ID: clock.Now()}))
	_, err := s.RecordActivity(ctx, &valet.Activity{ConnectionID: c.ID, EventID: 12, EventType: "ticket-created", Via: "poll"})
	must(t, err)

	// The connection broke (a failed refresh, then a 401), and a refresh is
	// in flight when Bob reconnects.
	l, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	must(t, err)
	must(t, s.FailRefresh(ctx, l, valet.ConnectionDegraded, "503", clock.Now()))
	inFlight, err := s.AcquireRefreshLease(ctx, c.ID, "node-b", time.Minute)
	must(t, err)
	changed, err := s.MarkConnection(ctx, c.ID, c.Generation, valet.ConnectionRevoked, "401")
	must(t, err)
	wantEqual(t, changed, true)
	broken, _ := findConnection(t, s, c.ID)
	if broken.Failures != 1 || broken.RevokedDatetime == nil {
		t.Fatalf("before the reconnect: %+v", broken)
	}

	clock.Advance(time.Hour)
	now := clock.Now()
	re := &valet.Connection{Provider: "valet", BaseURL: c.BaseURL, Account: "acme", Scopes: []string{"openid", "tickets:write"},
		ConnectedBy: bob.ID, AccessExpires: now.Add(time.Hour), NextRefresh: now.Add(50 * time.Minute)}
	fresh := sealedSecrets("k1", "reconnected")
	must(t, s.SaveConnection(ctx, re, fresh))
	wantEqual(t, re.ID, c.ID)
	wantEqual(t, re.Generation, int64(2))
	wantEqual(t, re.Status, valet.ConnectionActive)
	wantEqual(t, re.Failures, 0)
	wantEqual(t, re.LastError, "")
	wantEqual(t, re.RevokedDatetime, (*time.Time)(nil))
	wantEqual(t, re.Scopes, []string{"openid", "tickets:write"})
	wantEqual(t, re.ConnectedBy, bob.ID)
	wantEqual(t, re.ConnectedByName, bob.Email) // no name: the email
	wantEqual(t, re.CreatedDatetime, created)
	wantEqual(t, re.UpdatedDatetime, now)
	wantEqual(t, re.AccessExpires, now.Add(time.Hour))
	wantEqual(t, re.NextRefresh, now.Add(50*time.Minute))
	wantEqual(t, re.EventCursor, int64(12))
	wantEqual(t, re.IntegrationID, int64(77))
	if re.LastUsedDatetime == nil {
		t.Fatal("reconnect lost the last-used time")
	}
	_, sec := findConnection(t, s, c.ID)
	// The webhook secret is kept: it is sealed under the same key.
	wantEqual(t, *sec, valet.ConnectionSecrets{KeyID: "k1", AccessToken: fresh.AccessToken,
		RefreshToken: fresh.RefreshToken, WebhookSecret: []byte("sealed-webhook")})

	// The refresh of the old tokens loses; the reconnect released its lease.
	_, err = s.CompleteRefresh(ctx, inFlight, sealedSecrets("k1", "stale"), now.Add(time.Hour), now.Add(time.Hour))
	wantCode(t, err, valet.ECONFLICT)
	_, sec = findConnection(t, s, c.ID)
	wantEqual(t, sec.AccessToken, fresh.AccessToken)
	_, err = s.AcquireRefreshLease(ctx, c.ID, "node-c", time.Minute)
	must(t, err)

	// A reconnect under a new vault key cannot keep a webhook secret sealed
	// under the old one: the webhook is forgotten rather than unreadable.
	rotated := sealedSecrets("k2", "rotated")
	must(t, s.SaveConnection(ctx, &valet.Connection{Provider: "valet", BaseURL: c.BaseURL, Account: "acme",
		ConnectedBy: bob.ID}, rotated))
	got, sec := findConnection(t, s, c.ID)
	wantEqual(t, *sec, rotated)
	wantEqual(t, got.IntegrationID, int64(0))
	wantEqual(t, got.Generation, int64(3))

	// A reconnect that brings a webhook stores it.
	withHook := sealedSecrets("k2", "hook")
	withHook.WebhookSecret = []byte("sealed-webhook-2")
	must(t, s.SaveConnection(ctx, &valet.Connection{Provider: "valet", BaseURL: c.BaseURL, Account: "acme",
		ConnectedBy: bob.ID, IntegrationID: 78}, withHook))
	got, sec = findConnection(t, s, c.ID)
	wantEqual(t, *sec, withHook)
	wantEqual(t, got.IntegrationID, int64(78))

	all, err := s.ListConnections(ctx, 0)
	must(t, err)
	wantEqual(t, connectionIDs(all), []int64{c.ID})
}

func testHubListConnections(t *testing.T, s valet.HubStore, clock *Clock) {
	ada := newHubUser(t, s, "sub-1", "Ada")
	bob := newHubUser(t, s, "sub-2", "Bob")
	a1 := newConnection(t, s, clock, ada.ID, "acme")
	b1 := newConnection(t, s, clock, bob.ID, "bolt")
	a2 := newConnection(t, s, clock, ada.ID, "corp")

	for _, tc := range []struct {
		name string
		by   int64
		want []int64
	}{
		{"ada", ada.ID, []int64{a2.ID, a1.ID}},
		{"bob", bob.ID, []int64{b1.ID}},
		{"everyone", 0, []int64{a2.ID, b1.ID, a1.ID}},
		{"nobody", bob.ID + 1000, []int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListConnections(ctx, tc.by)
			must(t, err)
			wantEqual(t, connectionIDs(got), tc.want)
		})
	}
	got, err := s.ListConnections(ctx, bob.ID)
	must(t, err)
	want, _ := findConnection(t, s, b1.ID)
	wantEqual(t, got[0], *want)
	wantEqual(t, got[0].ConnectedByName, "Bob")
}

func testHubDueConnections(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	now := clock.Now()
	at := func(d time.Duration) func(*valet.Connection) {
		return func(c *valet.Connection) { c.NextRefresh = now.Add(d) }
	}
	late := newConnection(t, s, clock, u.ID, "late", at(-time.Minute))
	soon := newConnection(t, s, clock, u.ID, "soon", at(-time.Hour))
	exact := newConnection(t, s, clock, u.ID, "exact", at(0))
	future := newConnection(t, s, clock, u.ID, "future", at(time.Minute))
	degraded := newConnection(t, s, clock, u.ID, "degraded", at(-2*time.Minute))
	revoked := newConnection(t, s, clock, u.ID, "revoked", at(-3*time.Hour))
	_, err := s.MarkConnection(ctx, degraded.ID, degraded.Generation, valet.ConnectionDegraded, "503")
	must(t, err)
	_, err = s.MarkConnection(ctx, revoked.ID, revoked.Generation, valet.ConnectionRevoked, "invalid_grant")
	must(t, err)

	for _, tc := range []struct {
		name  string
		t     time.Time
		limit int
		want  []int64
	}{
		{"now", now, 10, []int64{soon.ID, degraded.ID, late.ID, exact.ID}},
		{"limit", now, 2, []int64{soon.ID, degraded.ID}},
		{"later", now.Add(time.Hour), 10, []int64{soon.ID, degraded.ID, late.ID, exact.ID, future.ID}},
		{"earlier", now.Add(-2 * time.Hour), 10, []int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.DueConnections(ctx, tc.t, tc.limit)
			must(t, err)
			wantEqual(t, connectionIDs(got), tc.want)
		})
	}

	// A connection being refreshed is not due again until its lease expires.
	_, err = s.AcquireRefreshLease(ctx, soon.ID, "node-a", time.Minute)
	must(t, err)
	got, err := s.DueConnections(ctx, now, 10)
	must(t, err)
	wantEqual(t, connectionIDs(got), []int64{degraded.ID, late.ID, exact.ID})
	clock.Advance(time.Minute)
	got, err = s.DueConnections(ctx, now, 10)
	must(t, err)
	wantEqual(t, connectionIDs(got), []int64{soon.ID, degraded.ID, late.ID, exact.ID})
}

func testHubLease(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	c := newConnection(t, s, clock, u.ID, "acme")
	start := clock.Now()

	l, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	must(t, err)
	wantEqual(t, l.ConnectionID, c.ID)
	wantEqual(t, l.Owner, "node-a")
	wantEqual(t, l.Fence, int64(1))
	wantEqual(t, l.Expires, start.Add(time.Minute))
	wantEqual(t, l.Connection, *c)
	wantEqual(t, l.Secrets, sealedSecrets("k1", "acme"))

	// Held: another owner is refused; the holder may renew (new fence).
	_, err = s.AcquireRefreshLease(ctx, c.ID, "node-b", time.Minute)
	wantCode(t, err, valet.ECONFLICT)
	clock.Advance(30 * time.Second)
	renewed, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	must(t, err)
	wantEqual(t, renewed.Fence, int64(2))
	wantEqual(t, renewed.Expires, start.Add(90*time.Second))
	// The renewal made the first lease stale.
	_, err = s.CompleteRefresh(ctx, l, sealedSecrets("k1", "stale"), start, start)
	wantCode(t, err, valet.ECONFLICT)

	clock.Advance(10 * time.Second)
	now := clock.Now()
	next := sealedSecrets("k1", "refreshed")
	done, err := s.CompleteRefresh(ctx, renewed, next, now.Add(24*time.Hour), now.Add(23*time.Hour))
	must(t, err)
	want := *c
	want.Generation = 2
	want.AccessExpires, want.NextRefresh = now.Add(24*time.Hour), now.Add(23*time.Hour)
	want.LastRefresh = &now
	want.UpdatedDatetime = now
	wantEqual(t, *done, want)
	got, sec := findConnection(t, s, c.ID)
	wantEqual(t, *got, want)
	wantEqual(t, *sec, next)

	// Completing released the lease: anyone may take it now, and the
	// completed lease cannot write twice.
	_, err = s.CompleteRefresh(ctx, renewed, sealedSecrets("k1", "twice"), now, now)
	wantCode(t, err, valet.ECONFLICT)
	again, err := s.AcquireRefreshLease(ctx, c.ID, "node-b", time.Minute)
	must(t, err)
	wantEqual(t, again.Fence, int64(3))
	wantEqual(t, again.Secrets, next)
	wantEqual(t, again.Connection.Generation, int64(2))

	_, err = s.AcquireRefreshLease(ctx, c.ID+1000, "node-a", time.Minute)
	wantCode(t, err, valet.ENOTFOUND)
	gone := *again
	gone.ConnectionID = c.ID + 1000
	_, err = s.CompleteRefresh(ctx, &gone, next, now, now)
	wantCode(t, err, valet.ENOTFOUND)
	wantCode(t, s.FailRefresh(ctx, &gone, valet.ConnectionDegraded, "x", now), valet.ENOTFOUND)
	_, err = s.AcquireRefreshLease(ctx, c.ID, "", time.Minute)
	wantField(t, err, "owner")
	_, err = s.AcquireRefreshLease(ctx, c.ID, "node-a", 0)
	wantField(t, err, "ttl")
}

func testHubLeaseStolen(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	c := newConnection(t, s, clock, u.ID, "acme")
	old, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	must(t, err)

	// node-a stalls past its lease; node-b takes over.
	clock.Advance(59 * time.Second)
	_, err = s.AcquireRefreshLease(ctx, c.ID, "node-b", time.Minute)
	wantCode(t, err, valet.ECONFLICT)
	clock.Advance(time.Second)
	stolen, err := s.AcquireRefreshLease(ctx, c.ID, "node-b", time.Minute)
	must(t, err)
	if stolen.Fence <= old.Fence {
		t.Fatalf("fence %d after %d", stolen.Fence, old.Fence)
	}
	now := clock.Now()
	newer := sealedSecrets("k1", "node-b")
	_, err = s.CompleteRefresh(ctx, stolen, newer, now.Add(time.Hour), now.Add(time.Hour))
	must(t, err)

	// node-a wakes up: it can neither overwrite node-b's tokens nor record
	// a failure.
	_, err = s.CompleteRefresh(ctx, old, sealedSecrets("k1", "node-a"), now.Add(time.Hour), now.Add(time.Hour))
	wantCode(t, err, valet.ECONFLICT)
	wantCode(t, s.FailRefresh(ctx, old, valet.ConnectionRevoked, "invalid_grant", now), valet.ECONFLICT)
	got, sec := findConnection(t, s, c.ID)
	wantEqual(t, *sec, newer)
	wantEqual(t, got.Status, valet.ConnectionActive)
	wantEqual(t, got.Generation, int64(2))

	// A lease expired but not taken over still completes: its fence is current.
	late, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	must(t, err)
	clock.Advance(2 * time.Minute)
	_, err = s.CompleteRefresh(ctx, late, sealedSecrets("k1", "late"), now.Add(time.Hour), now.Add(time.Hour))
	must(t, err)
}

func testHubLeaseRelease(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	c := newConnection(t, s, clock, u.ID, "acme")
	l, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	must(t, err)
	must(t, s.ReleaseRefreshLease(ctx, l))
	// Released unused: nothing changed but the lease.
	got, sec := findConnection(t, s, c.ID)
	wantEqual(t, *got, *c)
	wantEqual(t, *sec, sealedSecrets("k1", "acme"))
	l2, err := s.AcquireRefreshLease(ctx, c.ID, "node-b", time.Minute)
	must(t, err)
	// A stale lease is left alone: releasing it does not free node-b's.
	must(t, s.ReleaseRefreshLease(ctx, l))
	_, err = s.AcquireRefreshLease(ctx, c.ID, "node-c", time.Minute)
	wantCode(t, err, valet.ECONFLICT)
	must(t, s.ReleaseRefreshLease(ctx, l2))
	_, err = s.AcquireRefreshLease(ctx, c.ID, "node-c", time.Minute)
	must(t, err)
}

func testHubLeaseRevoked(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	c := newConnection(t, s, clock, u.ID, "acme")
	changed, err := s.MarkConnection(ctx, c.ID, c.Generation, valet.ConnectionRevoked, "401 after refresh")
	must(t, err)
	wantEqual(t, changed, true)
	_, err = s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	wantCode(t, err, valet.EUNAUTHORIZED)
	wantEqual(t, valet.ErrorMessage(err), "This connection was revoked; reconnect it.")
}

func testHubFailRefresh(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	c := newConnection(t, s, clock, u.ID, "acme")

	for i := 1; i <= 2; i++ {
		l, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
		must(t, err)
		clock.Advance(time.Second)
		next := clock.Now().Add(time.Duration(i) * time.Minute)
		must(t, s.FailRefresh(ctx, l, valet.ConnectionDegraded, fmt.Sprint("503 #", i), next))
		got, sec := findConnection(t, s, c.ID)
		wantEqual(t, got.Status, valet.ConnectionDegraded)
		wantEqual(t, got.LastError, fmt.Sprint("503 #", i))
		wantEqual(t, got.Failures, i)
		wantEqual(t, got.NextRefresh, next)
		wantEqual(t, got.Generation, c.Generation) // the tokens did not change
		wantEqual(t, got.RevokedDatetime, (*time.Time)(nil))
		wantEqual(t, got.UpdatedDatetime, clock.Now())
		wantEqual(t, *sec, sealedSecrets("k1", "acme"))
	}
	// FailRefresh released the lease; a success resets the failures.
	l, err := s.AcquireRefreshLease(ctx, c.ID, "node-b", time.Minute)
	must(t, err)
	now := clock.Now()
	done, err := s.CompleteRefresh(ctx, l, sealedSecrets("k1", "ok"), now.Add(time.Hour), now.Add(time.Hour))
	must(t, err)
	wantEqual(t, done.Status, valet.ConnectionActive)
	wantEqual(t, done.Failures, 0)
	wantEqual(t, done.LastError, "")

	// invalid_grant: revoked at once.
	l, err = s.AcquireRefreshLease(ctx, c.ID, "node-b", time.Minute)
	must(t, err)
	wantField(t, s.FailRefresh(ctx, l, valet.ConnectionActive, "x", now), "status")
	must(t, s.FailRefresh(ctx, l, valet.ConnectionRevoked, "invalid_grant", now.Add(time.Hour)))
	got, _ := findConnection(t, s, c.ID)
	wantEqual(t, got.Status, valet.ConnectionRevoked)
	wantEqual(t, got.LastError, "invalid_grant")
	wantEqual(t, got.Failures, 1)
	if got.RevokedDatetime == nil || !got.RevokedDatetime.Equal(now) {
		t.Fatalf("revoked at %v, want %v", got.RevokedDatetime, now)
	}
	due, err := s.DueConnections(ctx, now.Add(2*time.Hour), 10)
	must(t, err)
	wantEqual(t, len(due), 0)
}

func testHubMarkConnection(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	c := newConnection(t, s, clock, u.ID, "acme")
	// A refresh moves the connection to generation 2.
	l, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	must(t, err)
	now := clock.Now()
	_, err = s.CompleteRefresh(ctx, l, sealedSecrets("k1", "gen2"), now.Add(time.Hour), now.Add(time.Hour))
	must(t, err)

	steps := []struct {
		name       string
		generation int64
		status     string
		lastError  string
		changed    bool
		revoked    bool
	}{
		{"verdict on old tokens ignored", 1, valet.ConnectionRevoked, "401 with old token", false, false},
		{"degraded", 2, valet.ConnectionDegraded, "503", true, false},
		{"revoked", 2, valet.ConnectionRevoked, "401 after refresh", true, true},
		{"revoked again keeps the time", 2, valet.ConnectionRevoked, "401 again", true, true},
		{"active clears the revocation", 2, valet.ConnectionActive, "", true, false},
	}
	var revokedAt *time.Time
	for _, st := range steps {
		clock.Advance(time.Second)
		changed, err := s.MarkConnection(ctx, c.ID, st.generation, st.status, st.lastError)
		must(t, err)
		if changed != st.changed {
			t.Fatalf("%s: changed = %v", st.name, changed)
		}
		got, _ := findConnection(t, s, c.ID)
		if !st.changed {
			wantEqual(t, got.Status, valet.ConnectionActive)
			continue
		}
		wantEqual(t, got.Status, st.status)
		wantEqual(t, got.LastError, st.lastError)
		wantEqual(t, got.Generation, int64(2))
		if (got.RevokedDatetime != nil) != st.revoked {
			t.Fatalf("%s: revoked at %v", st.name, got.RevokedDatetime)
		}
		if st.revoked && revokedAt != nil && !got.RevokedDatetime.Equal(*revokedAt) {
			t.Fatalf("%s: revocation time moved from %v to %v", st.name, revokedAt, got.RevokedDatetime)
		}
		revokedAt = got.RevokedDatetime
	}

	_, err = s.MarkConnection(ctx, c.ID+1000, 1, valet.ConnectionRevoked, "")
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.MarkConnection(ctx, c.ID, 2, "broken", "")
	wantField(t, err, "status")
}

func testHubTouch(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	a := newConnection(t, s, clock, u.ID, "acme")
	b := newConnection(t, s, clock, u.ID, "bolt")
	wantEqual(t, a.LastUsedDatetime, (*time.Time)(nil))
	must(t, s.TouchConnections(ctx, nil))

	t1 := clock.Now().Add(time.Minute)
	t0 := clock.Now()
	must(t, s.TouchConnections(ctx, map[int64]time.Time{a.ID: t1, b.ID: t0, b.ID + 1000: t1}))
	must(t, s.TouchConnections(ctx, map[int64]time.Time{a.ID: t0})) // never backwards
	gotA, _ := findConnection(t, s, a.ID)
	gotB, _ := findConnection(t, s, b.ID)
	wantEqual(t, gotA.LastUsedDatetime, &t1)
	wantEqual(t, gotB.LastUsedDatetime, &t0)
	wantEqual(t, gotA.UpdatedDatetime, a.UpdatedDatetime)
}

func testHubWebhook(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	c := newConnection(t, s, clock, u.ID, "acme")
	must(t, s.SetConnectionWebhook(ctx, c.ID, 42, []byte("sealed-webhook")))
	got, sec := findConnection(t, s, c.ID)
	wantEqual(t, got.IntegrationID, int64(42))
	wantEqual(t, got.Generation, c.Generation)
	wantEqual(t, sec.WebhookSecret, []byte("sealed-webhook"))
	wantEqual(t, sec.AccessToken, sealedSecrets("k1", "acme").AccessToken)
	wantCode(t, s.SetConnectionWebhook(ctx, c.ID+1000, 42, []byte("x")), valet.ENOTFOUND)

	// A refresh that does not mention the webhook keeps it.
	l, err := s.AcquireRefreshLease(ctx, c.ID, "node-a", time.Minute)
	must(t, err)
	wantEqual(t, l.Secrets.WebhookSecret, []byte("sealed-webhook"))
	now := clock.Now()
	_, err = s.CompleteRefresh(ctx, l, sealedSecrets("k1", "refreshed"), now.Add(time.Hour), now.Add(time.Hour))
	must(t, err)
	_, sec = findConnection(t, s, c.ID)
	wantEqual(t, sec.WebhookSecret, []byte("sealed-webhook"))

	// Removing it.
	must(t, s.SetConnectionWebhook(ctx, c.ID, 0, nil))
	got, sec = findConnection(t, s, c.ID)
	wantEqual(t, got.IntegrationID, int64(0))
	wantEqual(t, sec.WebhookSecret, []byte(nil))
}

func testHubReseal(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	a := newConnection(t, s, clock, u.ID, "acme")
	b := newConnection(t, s, clock, u.ID, "bolt")
	must(t, s.SetConnectionWebhook(ctx, b.ID, 9, []byte("hook")))
	cNoRefresh := &valet.Connection{Provider: "gorgias", BaseURL: "https://corp.gorgias.com", Account: "corp", ConnectedBy: u.ID}
	must(t, s.SaveConnection(ctx, cNoRefresh, valet.ConnectionSecrets{KeyID: "k2", AccessToken: []byte("already-k2")}))

	reseal := func(sec valet.ConnectionSecrets) (valet.ConnectionSecrets, error) {
		if sec.KeyID == "k2" {
			return sec, nil
		}
		out := valet.ConnectionSecrets{KeyID: "k2"}
		for _, p := range []struct{ from, to *[]byte }{{&sec.AccessToken, &out.AccessToken},
			{&sec.RefreshToken, &out.RefreshToken}, {&sec.WebhookSecret, &out.WebhookSecret}} {
			if *p.from != nil {
				*p.to = append([]byte("k2:"), *p.from...)
			}
		}
		return out, nil
	}

	// An error aborts it all.
	calls := 0
	boom := errors.New("vault: cannot open")
	_, err := s.ResealConnections(ctx, func(sec valet.ConnectionSecrets) (valet.ConnectionSecrets, error) {
		calls++
		if calls == 2 {
			return valet.ConnectionSecrets{}, boom
		}
		return reseal(sec)
	})
	if err == nil || !errors.Is(err, boom) {
		t.Fatalf("reseal error = %v, want %v", err, boom)
	}
	_, sec := findConnection(t, s, a.ID)
	wantEqual(t, *sec, sealedSecrets("k1", "acme"))

	n, err := s.ResealConnections(ctx, reseal)
	must(t, err)
	wantEqual(t, n, 2)
	gotA, secA := findConnection(t, s, a.ID)
	_, secB := findConnection(t, s, b.ID)
	_, secC := findConnection(t, s, cNoRefresh.ID)
	wantEqual(t, *secA, valet.ConnectionSecrets{KeyID: "k2", AccessToken: []byte("k2:sealed-access-acme"),
		RefreshToken: []byte("k2:sealed-refresh-acme")})
	wantEqual(t, *secB, valet.ConnectionSecrets{KeyID: "k2", AccessToken: []byte("k2:sealed-access-bolt"),
		RefreshToken: []byte("k2:sealed-refresh-bolt"), WebhookSecret: []byte("k2:hook")})
	wantEqual(t, *secC, valet.ConnectionSecrets{KeyID: "k2", AccessToken: []byte("already-k2")})
	wantEqual(t, gotA.Generation, a.Generation) // the tokens are the same

	n, err = s.ResealConnections(ctx, reseal)
	must(t, err)
	wantEqual(t, n, 0)
}

func testHubActivity(t *testing.T, s valet.HubStore, clock *Clock) {
	ada := newHubUser(t, s, "sub-1", "Ada")
	bob := newHubUser(t, s, "sub-2", "Bob")
	a := newConnection(t, s, clock, ada.ID, "acme")
	b := newConnection(t, s, clock, bob.ID, "bolt")

	record := func(c *valet.Connection, eventID int64, via string) (*valet.Activity, bool) {
		t.Helper()
		act := &valet.Activity{ConnectionID: c.ID, EventID: eventID, EventType: "ticket-created",
			Summary: fmt.Sprint("Ticket #", eventID), Via: via}
		dup, err := s.RecordActivity(ctx, act)
		must(t, err)
		return act, dup
	}
	cursor := func(c *valet.Connection) int64 {
		t.Helper()
		got, _ := findConnection(t, s, c.ID)
		return got.EventCursor
	}

	first, dup := record(a, 10, "webhook")
	wantEqual(t, dup, false)
	if first.ID == 0 {
		t.Fatal("RecordActivity set no id")
	}
	wantEqual(t, first.Account, "acme")
	wantEqual(t, first.Received, clock.Now())
	wantEqual(t, cursor(a), int64(10))

	// The same event by poll after the webhook: a duplicate, nothing stored.
	_, dup = record(a, 10, "poll")
	wantEqual(t, dup, true)
	// Out of order: stored, the cursor stays at the newest.
	clock.Advance(time.Second)
	_, dup = record(a, 7, "poll")
	wantEqual(t, dup, false)
	wantEqual(t, cursor(a), int64(10))
	clock.Advance(time.Second)
	_, dup = record(a, 11, "webhook")
	wantEqual(t, dup, false)
	wantEqual(t, cursor(a), int64(11))
	// Event ids are per helpdesk: another connection may see id 10 too.
	_, dup = record(b, 10, "webhook")
	wantEqual(t, dup, false)
	wantEqual(t, cursor(b), int64(10))

	_, err := s.RecordActivity(ctx, &valet.Activity{ConnectionID: b.ID + 1000, EventID: 1, EventType: "x", Via: "poll"})
	wantCode(t, err, valet.ENOTFOUND)

	type seen struct {
		Account string
		EventID int64
		Via     string
	}
	list := func(by int64, limit int) []seen {
		t.Helper()
		acts, err := s.ListActivity(ctx, by, limit)
		must(t, err)
		out := []seen{}
		for _, a := range acts {
			out = append(out, seen{a.Account, a.EventID, a.Via})
		}
		return out
	}
	wantEqual(t, list(ada.ID, 10), []seen{{"acme", 11, "webhook"}, {"acme", 7, "poll"}, {"acme", 10, "webhook"}})
	wantEqual(t, list(bob.ID, 10), []seen{{"bolt", 10, "webhook"}})
	wantEqual(t, list(0, 2), []seen{{"bolt", 10, "webhook"}, {"acme", 11, "webhook"}})
	wantEqual(t, len(list(0, 0)), 4)

	acts, err := s.ListActivity(ctx, ada.ID, 1)
	must(t, err)
	wantEqual(t, acts[0].ConnectionID, a.ID)
	wantEqual(t, acts[0].Summary, "Ticket #11")
	wantEqual(t, acts[0].EventType, "ticket-created")
	wantEqual(t, acts[0].Received, clock.Now())
}

func testHubDelete(t *testing.T, s valet.HubStore, clock *Clock) {
	u := newHubUser(t, s, "sub-1", "Ada")
	a := newConnection(t, s, clock, u.ID, "acme")
	b := newConnection(t, s, clock, u.ID, "bolt")
	for _, c := range []*valet.Connection{a, b} {
		_, err := s.RecordActivity(ctx, &valet.Activity{ConnectionID: c.ID, EventID: 1, EventType: "ticket-created", Via: "poll"})
		must(t, err)
	}
	must(t, s.DeleteConnection(ctx, a.ID))
	_, _, err := s.FindConnection(ctx, a.ID)
	wantCode(t, err, valet.ENOTFOUND)
	wantCode(t, s.DeleteConnection(ctx, a.ID), valet.ENOTFOUND)
	acts, err := s.ListActivity(ctx, 0, 10)
	must(t, err)
	wantEqual(t, len(acts), 1)
	wantEqual(t, acts[0].ConnectionID, b.ID)
	_, err = s.RecordActivity(ctx, &valet.Activity{ConnectionID: a.ID, EventID: 2, EventType: "ticket-created", Via: "poll"})
	wantCode(t, err, valet.ENOTFOUND)
	all, err := s.ListConnections(ctx, 0)
	must(t, err)
	wantEqual(t, connectionIDs(all), []int64{b.ID})

	// Connecting the account again starts afresh.
	again := newConnection(t, s, clock, u.ID, "acme")
	if again.ID == a.ID {
		t.Fatal("a deleted connection's id was reused")
	}
	wantEqual(t, again.Generation, int64(1))
	wantEqual(t, again.EventCursor, int64(0))
}

// RunHubLeaseRace has handles a and b (two hub processes on one database)
// race for one connection's refresh lease, 50 goroutines each with distinct
// owners: exactly one wins, everyone else gets ECONFLICT, and only the
// winner's refresh is stored. It runs on the stores' real clocks.
func RunHubLeaseRace(t *testing.T, a, b valet.HubStore) {
	u := &valet.HubUser{Issuer: hubIssuer, Subject: "racer", Name: "Racer"}
	must(t, a.UpsertHubUser(ctx, u))
	now := time.Now()
	c := &valet.Connection{Provider: "valet", BaseURL: "https://helpdesk.test", Account: "acme",
		Scopes: []string{"offline"}, ConnectedBy: u.ID, AccessExpires: now, NextRefresh: now}
	must(t, a.SaveConnection(ctx, c, sealedSecrets("k1", "acme")))

	const perHandle = 50
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []*valet.RefreshLease
		losers  int
	)
	start := make(chan struct{})
	for i := range 2 * perHandle {
		s := []valet.HubStore{a, b}[i%2]
		wg.Go(func() {
			<-start
			l, err := s.AcquireRefreshLease(ctx, c.ID, fmt.Sprint("node-", i), time.Minute)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, l)
			case valet.ErrorCode(err) == valet.ECONFLICT:
				losers++
			default:
				t.Errorf("owner %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 || losers != 2*perHandle-1 {
		t.Fatalf("%d winners, %d losers; want 1 and %d", len(winners), losers, 2*perHandle-1)
	}
	w := winners[0]
	wantEqual(t, w.Fence, int64(1))

	// Both handles see the winner's lease; only the winner can complete.
	other := *w
	other.Owner = "node-impostor"
	_, err := b.CompleteRefresh(ctx, &other, sealedSecrets("k1", "impostor"), now, now)
	wantCode(t, err, valet.ECONFLICT)
	done, err := b.CompleteRefresh(ctx, w, sealedSecrets("k1", "winner"), now.Add(time.Hour), now.Add(time.Hour))
	must(t, err)
	wantEqual(t, done.Generation, int64(2))
	_, sec, err := a.FindConnection(ctx, c.ID)
	must(t, err)
	wantEqual(t, *sec, sealedSecrets("k1", "winner"))
}

func testHubPurgeActivity(t *testing.T, s valet.HubStore, clock *Clock) {
	ada := newHubUser(t, s, "sub-1", "Ada")
	c := newConnection(t, s, clock, ada.ID, "acme")
	for id := range int64(5) {
		_, err := s.RecordActivity(ctx, &valet.Activity{ConnectionID: c.ID, EventID: id + 1, EventType: "ticket-created", Via: "poll"})
		must(t, err)
		clock.Advance(time.Hour)
	}
	// Received at +0h..+4h; now is +5h. Before +2h: events 1 and 2, one
	// call at a time.
	cutoff := clock.Now().Add(-3 * time.Hour)
	n, err := s.PurgeActivity(ctx, cutoff, 1)
	must(t, err)
	wantEqual(t, n, 1)
	n, err = s.PurgeActivity(ctx, cutoff, 100)
	must(t, err)
	wantEqual(t, n, 1)
	n, err = s.PurgeActivity(ctx, cutoff, 100)
	must(t, err)
	wantEqual(t, n, 0)
	acts, err := s.ListActivity(ctx, ada.ID, 10)
	must(t, err)
	var ids []int64
	for _, a := range acts {
		ids = append(ids, a.EventID)
	}
	wantEqual(t, ids, []int64{5, 4, 3})
	// The cursor stays: purging does not make the poller read again.
	got, _ := findConnection(t, s, c.ID)
	wantEqual(t, got.EventCursor, int64(5))
}

// testHubTakenConnection: another user's live connection of an account is
// not replaced (ECONFLICT, nothing changed); its own user reconnects it.
func testHubTakenConnection(t *testing.T, s valet.HubStore, clock *Clock) {
	ada := newHubUser(t, s, "sub-1", "Ada")
	bob := newHubUser(t, s, "sub-2", "Bob")
	c := newConnection(t, s, clock, ada.ID, "acme")
	now := clock.Now()
	again := func(by int64) *valet.Connection {
		return &valet.Connection{Provider: "valet", BaseURL: c.BaseURL, Account: "acme", Scopes: []string{"openid"},
			ConnectedBy: by, AccessExpires: now.Add(time.Hour), NextRefresh: now.Add(50 * time.Minute)}
	}
	wantCode(t, s.SaveConnection(ctx, again(bob.ID), sealedSecrets("k1", "bob")), valet.ECONFLICT)
	kept, sec := findConnection(t, s, c.ID)
	wantEqual(t, kept.ConnectedBy, ada.ID)
	wantEqual(t, kept.Generation, c.Generation)
	wantEqual(t, string(sec.AccessToken), string(sealedSecrets("k1", "acme").AccessToken))
	mine := again(ada.ID)
	must(t, s.SaveConnection(ctx, mine, sealedSecrets("k1", "ada again")))
	wantEqual(t, mine.ID, c.ID)
	wantEqual(t, mine.Generation, c.Generation+1)
}
