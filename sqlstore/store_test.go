package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
)

// TestOpenTwice opens one database from two handles at once, as two
// processes starting together would: both migrate without error, and the
// schema is applied once.
func TestOpenTwice(t *testing.T) {
	opens := map[string]func(t *testing.T) func() (*sqlstore.Store, error){
		"sqlite": func(t *testing.T) func() (*sqlstore.Store, error) {
			path := filepath.Join(t.TempDir(), "valet.db")
			return func() (*sqlstore.Store, error) { return sqlstore.Open(context.Background(), path) }
		},
		"postgres": func(t *testing.T) func() (*sqlstore.Store, error) {
			dsn := sqltest.PostgresDSN(t)
			return func() (*sqlstore.Store, error) { return sqlstore.Open(context.Background(), dsn) }
		},
	}
	for name, mk := range opens {
		t.Run(name, func(t *testing.T) {
			open := mk(t)
			stores := make([]*sqlstore.Store, 4)
			errs := make([]error, len(stores))
			var wg sync.WaitGroup
			for i := range stores {
				wg.Go(func() { stores[i], errs[i] = open() })
			}
			wg.Wait()
			for i, s := range stores {
				if errs[i] != nil {
					t.Fatalf("open %d: %v", i, errs[i])
				}
				defer s.Close()
			}
			for _, s := range stores {
				v, err := s.SchemaVersion(context.Background())
				if err != nil || v < 1 {
					t.Fatalf("schema version %d, %v", v, err)
				}
				if err := s.Migrate(context.Background()); err != nil {
					t.Fatalf("migrating again: %v", err)
				}
			}
		})
	}
}

// TestSQLiteNewerSchema refuses a database that a newer valet migrated.
func TestSQLiteNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "valet.db")
	s := sqltest.OpenSQLiteFile(t, path)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err == nil {
		t.Fatal("migrated a database from the future")
	}
	if _, err := sqlstore.Open(context.Background(), path); err == nil {
		t.Fatal("opened a database from the future")
	}
}

func TestSQLiteMemoryRefused(t *testing.T) {
	for _, dsn := range []string{":memory:", "", "file::memory:?mode=memory"} {
		if s, err := sqlstore.Open(context.Background(), dsn); err == nil {
			s.Close()
			t.Fatalf("Open(%q) succeeded", dsn)
		}
	}
}

// TestSQLiteTwoHandles writes through two handles on one file at once (the
// CLI while the server runs): no write fails with "database is locked", and
// each handle reads what the other wrote.
func TestSQLiteTwoHandles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared valet?.db") // characters a file: URI must escape
	s1 := sqltest.OpenSQLiteFile(t, path)
	s2 := sqltest.OpenSQLiteFile(t, path)
	a, _, cs := seedAccount(t, s1, "acme", 1)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not at its path: %v", err)
	}

	const n = 40
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		s := []*sqlstore.Store{s1, s2}[i%2]
		wg.Go(func() {
			tk := &valet.Ticket{AccountID: a.ID, Subject: fmt.Sprint("ticket ", i), Customer: valet.PersonRef{ID: cs[0].ID}}
			if err := s.CreateTicket(ctx, tk, []*valet.Message{{Public: true, BodyText: "hi"}}); err != nil {
				t.Error(err)
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	for _, s := range []*sqlstore.Store{s1, s2} {
		evs, err := s.ListEvents(ctx, a.ID, valet.EventFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1+2*n { // the customer, then each ticket and its message
			t.Fatalf("%d events", len(evs))
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].ID <= evs[i-1].ID {
				t.Fatal("event ids do not increase")
			}
		}
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestClock checks that every "now" comes from the injected clock: recorded
// datetimes, and the expiry of tokens and sessions.
func TestClock(t *testing.T) {
	for _, b := range []struct {
		name string
		open func(testing.TB, ...sqlstore.Option) *sqlstore.Store
	}{{"sqlite", sqltest.SQLite}, {"postgres", sqltest.Postgres}} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			start := time.Date(2030, 5, 17, 9, 30, 0, 123456789, time.FixedZone("CEST", 2*3600))
			clock := &fakeClock{now: start}
			s := b.open(t, sqlstore.WithClock(clock))
			want := start.UTC().Truncate(time.Microsecond)

			a, u, cs := seedAccount(t, s, "acme", 1)
			if !a.CreatedDatetime.Equal(want) || a.CreatedDatetime.Location() != time.UTC || cs[0].CreatedDatetime != want {
				t.Fatalf("created %v, want %v", a.CreatedDatetime, want)
			}
			tk := &valet.Ticket{AccountID: a.ID, Subject: "x", Customer: valet.PersonRef{ID: cs[0].ID}}
			if err := s.CreateTicket(ctx, tk, nil); err != nil {
				t.Fatal(err)
			}
			clock.Add(time.Hour)
			got, err := s.UpdateTicket(ctx, a.ID, tk.ID, func(t *valet.Ticket) error { t.Status = valet.StatusClosed; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if got.CreatedDatetime != want || got.UpdatedDatetime != want.Add(time.Hour) || *got.ClosedDatetime != want.Add(time.Hour) {
				t.Fatalf("ticket datetimes %v %v %v", got.CreatedDatetime, got.UpdatedDatetime, got.ClosedDatetime)
			}
			evs, err := s.ListEvents(ctx, a.ID, valet.EventFilter{Types: []string{valet.EventTicketUpdated}})
			if err != nil || len(evs) != 1 || evs[0].CreatedDatetime != want.Add(time.Hour) {
				t.Fatalf("events %v, %v", evs, err)
			}

			app := &valet.App{Name: "App", Scopes: valet.ScopeSet{valet.ScopeTicketsRead}}
			if err := s.CreateApp(ctx, app); err != nil {
				t.Fatal(err)
			}
			g := &valet.Grant{AccountID: a.ID, UserID: u.ID, AppID: app.ID, Scopes: app.Scopes}
			if err := s.CreateGrant(ctx, g); err != nil {
				t.Fatal(err)
			}
			token, err := s.CreateAccessToken(ctx, g.ID, nil, 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := s.CreateSession(ctx, &valet.Session{UserID: u.ID, ExpiresDatetime: clock.Now().Add(12 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.Authenticate(ctx, token)
			if err != nil || c.ExpiresAt != want.Add(25*time.Hour) {
				t.Fatalf("credential %+v, %v", c, err)
			}
			clock.Add(12 * time.Hour)
			if _, err := s.FindSession(ctx, sess); valet.ErrorCode(err) != valet.EUNAUTHORIZED {
				t.Fatalf("session at its expiry: %v", err)
			}
			if _, err := s.Authenticate(ctx, token); err != nil {
				t.Fatalf("token before its expiry: %v", err)
			}
			clock.Add(12*time.Hour - time.Microsecond)
			if _, err := s.Authenticate(ctx, token); err != nil {
				t.Fatalf("token a microsecond before its expiry: %v", err)
			}
			clock.Add(time.Microsecond)
			if _, err := s.Authenticate(ctx, token); valet.ErrorCode(err) != valet.EUNAUTHORIZED {
				t.Fatalf("token at its expiry: %v", err)
			}
		})
	}
}

// TestPreparedAfterClose checks that the prepared reads fail cleanly, not
// panic, once the store is closed, whether they were prepared before or not.
func TestPreparedAfterClose(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t)
			a, _, cs := seedAccount(t, s, "acme", 1)
			tk := &valet.Ticket{Subject: "Hello", Customer: valet.PersonRef{ID: cs[0].ID}}
			if err := s.ImportTickets(ctx, a.ID, []*valet.Ticket{tk}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.FindTicket(ctx, a.ID, tk.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.FindTicket(ctx, a.ID, tk.ID); err == nil {
				t.Error("FindTicket after Close succeeded")
			}
			if _, err := s.FindSession(ctx, valet.NewSecret(valet.PrefixSession)); err == nil {
				t.Error("FindSession after Close succeeded")
			}
		})
	}
}
