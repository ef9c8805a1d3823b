package seed_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/seed"
	"github.com/valethq/valet/sqlstore"
)

// cheap keeps argon2id from dominating the test's time.
var cheap = seed.WithPasswordParams(passwd.Params{MemoryKiB: 1024, Time: 1, Threads: 1})

func openStore(t *testing.T, opts ...sqlstore.Option) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "seed.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func allTickets(t *testing.T, s valet.Store, accountID int64, f valet.TicketFilter) []valet.Ticket {
	t.Helper()
	var out []valet.Ticket
	f.Limit = valet.MaxLimit
	for {
		page, err := s.ListTickets(context.Background(), accountID, f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Data...)
		if page.NextCursor == "" {
			return out
		}
		f.Cursor = page.NextCursor
	}
}

func TestDemo(t *testing.T) {
	ctx := context.Background()
	clock := &seed.Clock{}
	store := openStore(t, sqlstore.WithClock(clock))
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	began := time.Now()
	info, err := seed.Demo(ctx, store, seed.WithClock(clock), seed.WithNow(now), cheap)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d tickets, %d messages in %v", info.Tickets, info.Messages, time.Since(began))
	if got := clock.Now(); got.Sub(time.Now()) > time.Minute || time.Since(got) > time.Minute {
		t.Errorf("clock left at %v, want the wall clock", got)
	}

	if info.Account.Name != "acme" || info.Account.DisplayName != "Acme Outfitters" {
		t.Errorf("account = %+v", info.Account)
	}
	if len(info.Users) != 3 || info.Users[0].Role != valet.RoleOwner || info.Users[1].Role != valet.RoleAgent || info.Users[2].Role != valet.RoleAgent {
		t.Fatalf("users = %+v, want an owner and two agents", info.Users)
	}
	if info.Customers != 50 || info.Tickets != 300 || info.Messages < 600 || info.Messages > 1800 {
		t.Errorf("counts: %d customers, %d tickets, %d messages", info.Customers, info.Tickets, info.Messages)
	}
	owner, err := store.FindUserByEmail(ctx, info.Owner().Email)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := passwd.Verify(owner.PasswordHash, seed.DemoPassword); !ok || err != nil {
		t.Errorf("the demo password does not verify: %v %v", ok, err)
	}
	cred, err := store.Authenticate(ctx, info.APIKey.Secret)
	if err != nil || cred.AccountID != info.Account.ID || cred.UserID != owner.ID {
		t.Fatalf("Authenticate(demo key) = %+v, %v", cred, err)
	}

	tickets := allTickets(t, store, info.Account.ID, valet.TicketFilter{})
	if len(tickets) != 300 {
		t.Fatalf("listed %d tickets, want 300", len(tickets))
	}
	statuses, channels, tags := map[valet.TicketStatus]int{}, map[string]int{}, map[string]int{}
	oldest, newest := now, time.Time{}
	unassigned := 0
	for _, tk := range tickets {
		statuses[tk.Status]++
		channels[tk.Channel]++
		for _, tag := range tk.Tags {
			tags[tag.Name]++
		}
		if tk.AssigneeUser == nil {
			unassigned++
		}
		if tk.CreatedDatetime.Before(oldest) {
			oldest = tk.CreatedDatetime
		}
		if tk.CreatedDatetime.After(newest) {
			newest = tk.CreatedDatetime
		}
		if tk.MessagesCount < 1 || tk.MessagesCount > 6 {
			t.Errorf("ticket %d has %d messages", tk.ID, tk.MessagesCount)
		}
	}
	if statuses[valet.StatusOpen] < 20 || statuses[valet.StatusClosed] < 100 {
		t.Errorf("statuses %v: want a mix, mostly closed", statuses)
	}
	if len(channels) < 4 || channels["email"] < 100 {
		t.Errorf("channels %v: want a mix, mostly email", channels)
	}
	for _, want := range []string{"refund", "shipping", "vip", "returns"} {
		if tags[want] == 0 {
			t.Errorf("no ticket tagged %s; tags %v", want, tags)
		}
	}
	if unassigned == 0 || unassigned > 100 {
		t.Errorf("%d unassigned tickets, want some", unassigned)
	}
	if span := newest.Sub(oldest); span < 60*24*time.Hour || oldest.Before(now.Add(-91*24*time.Hour)) || newest.After(now) {
		t.Errorf("tickets span %v to %v; want most of the 90 days before %v", oldest, newest, now)
	}

	// A long conversation: the customer opens, agents answer, all in time order.
	var long *valet.Ticket
	for i := range tickets {
		if tickets[i].MessagesCount >= 4 {
			long = &tickets[i]
			break
		}
	}
	if long == nil {
		t.Fatal("no ticket with 4 or more messages")
	}
	msgs, err := store.ListMessages(ctx, info.Account.ID, long.ID, valet.ListOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs.Data) != long.MessagesCount || msgs.Data[0].FromAgent || !msgs.Data[0].Public {
		t.Fatalf("ticket %d: %d messages (count %d), first from agent %v", long.ID, len(msgs.Data), long.MessagesCount, msgs.Data[0].FromAgent)
	}
	agentReplied := false
	for i, m := range msgs.Data {
		agentReplied = agentReplied || m.FromAgent
		if i > 0 && m.CreatedDatetime.Before(msgs.Data[i-1].CreatedDatetime) {
			t.Errorf("message %d is older than the one before it", m.ID)
		}
	}
	if !agentReplied {
		t.Error("no agent reply in a long conversation")
	}

	customers, err := store.ListCustomers(ctx, info.Account.ID, valet.CustomerFilter{ListOptions: valet.ListOptions{Limit: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if len(customers.Data) != 50 {
		t.Fatalf("%d customers", len(customers.Data))
	}
	c := customers.Data[0]
	var data map[string]any
	if err := json.Unmarshal(c.Data, &data); err != nil || data["orders_count"] == nil {
		t.Errorf("customer data %s: %v", c.Data, err)
	}
	if c.Language == "" || c.Timezone == "" || c.Email == "" || c.Firstname == "" {
		t.Errorf("customer %+v lacks details", c)
	}

	// A second seeding of the same store is refused; EnsureDemo finds the
	// account and issues a new key instead.
	if _, err := seed.Demo(ctx, store, cheap); valet.ErrorCode(err) != valet.ECONFLICT {
		t.Errorf("second Demo = %v, want ECONFLICT", err)
	}
	again, seeded, err := seed.EnsureDemo(ctx, store, cheap)
	if err != nil || seeded || again.Account.ID != info.Account.ID || again.APIKey.Secret == info.APIKey.Secret {
		t.Fatalf("EnsureDemo = %+v, %v, %v", again, seeded, err)
	}
	if _, err := store.Authenticate(ctx, again.APIKey.Secret); err != nil {
		t.Errorf("the new key does not authenticate: %v", err)
	}
}

func TestDemoIsDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds twice")
	}
	ctx := context.Background()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	subjects := func() []string {
		clock := &seed.Clock{}
		store := openStore(t, sqlstore.WithClock(clock))
		info, err := seed.Demo(ctx, store, seed.WithClock(clock), seed.WithNow(now), cheap)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tk := range allTickets(t, store, info.Account.ID, valet.TicketFilter{}) {
			out = append(out, tk.CreatedDatetime.Format(time.RFC3339)+" "+tk.Subject+" "+tk.Excerpt)
		}
		return out
	}
	a, b := subjects(), subjects()
	if len(a) != len(b) {
		t.Fatalf("%d vs %d tickets", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("ticket %d differs:\n%s\n%s", i, a[i], b[i])
		}
	}
}

func TestTickets(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	acct := &valet.Account{Name: "bulk"}
	if err := store.CreateAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, email := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		c := &valet.Customer{AccountID: acct.ID, Email: email}
		if err := store.CreateCustomer(ctx, c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	var progress []int
	const n = 2500
	if err := seed.Tickets(ctx, store, acct.ID, ids, n, seed.WithBatchSize(1000),
		seed.WithProgress(func(done int) { progress = append(progress, done) })); err != nil {
		t.Fatal(err)
	}
	if len(progress) != 3 || progress[2] != n {
		t.Errorf("progress %v, want three batches ending at %d", progress, n)
	}
	tickets := allTickets(t, store, acct.ID, valet.TicketFilter{})
	if len(tickets) != n {
		t.Fatalf("listed %d tickets, want %d", len(tickets), n)
	}
	open := allTickets(t, store, acct.ID, valet.TicketFilter{Status: valet.StatusOpen})
	if len(open) < n/6 || len(open) > n/3 {
		t.Errorf("%d open of %d, want about a quarter", len(open), n)
	}
	// Newest first by default, and ids follow time.
	for i := 1; i < len(tickets); i++ {
		if tickets[i].CreatedDatetime.After(tickets[i-1].CreatedDatetime) || tickets[i].ID > tickets[i-1].ID {
			t.Fatalf("tickets %d and %d out of order", tickets[i-1].ID, tickets[i].ID)
		}
	}
	if tickets[0].Subject == "" || tickets[0].Excerpt == "" || len(tickets[0].Tags) != 1 {
		t.Errorf("ticket %+v lacks a subject or excerpt", tickets[0])
	}
	if err := seed.Tickets(ctx, store, acct.ID, nil, 10); valet.ErrorCode(err) != valet.EINVALID {
		t.Errorf("Tickets without customers = %v, want EINVALID", err)
	}
}
