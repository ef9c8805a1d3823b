package sqlstore_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/sqlstore/storetest"
)

// sqliteOn and postgresOn open a fresh store on clock c, for the
// conformance runs that move time.
func sqliteOn(tb testing.TB, c valet.Clock) valet.Store {
	return sqltest.SQLite(tb, sqlstore.WithClock(c))
}
func postgresOn(tb testing.TB, c valet.Clock) valet.Store {
	return sqltest.Postgres(tb, sqlstore.WithClock(c))
}

func TestIntegrationsSQLite(t *testing.T)   { storetest.RunIntegrations(t, sqliteOn) }
func TestIntegrationsPostgres(t *testing.T) { storetest.RunIntegrations(t, postgresOn) }

// nodeBackend opens one database twice, as two nodes (or two processes on one
// SQLite file) would, and a raw connection to look at what is stored.
type nodeBackend struct {
	name string
	open func(t *testing.T) (a, b *sqlstore.Store, raw *sql.DB)
}

var nodeBackends = []nodeBackend{
	{"sqlite", func(t *testing.T) (*sqlstore.Store, *sqlstore.Store, *sql.DB) {
		path := filepath.Join(t.TempDir(), "valet.db")
		a := sqltest.OpenSQLiteFile(t, path)
		b := sqltest.OpenSQLiteFile(t, path)
		raw, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		return a, b, raw
	}},
	{"postgres", func(t *testing.T) (*sqlstore.Store, *sqlstore.Store, *sql.DB) {
		dsn := sqltest.PostgresDSN(t)
		open := func() *sqlstore.Store {
			s, err := sqlstore.Open(context.Background(), dsn, sqlstore.WithSealKey(sqltest.SealKey))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		a, b := open(), open()
		raw, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		return a, b, raw
	}},
}

func newAccount(t *testing.T, s *sqlstore.Store, name string) (*valet.Account, *valet.Customer) {
	t.Helper()
	ctx := context.Background()
	a := &valet.Account{Name: name, DisplayName: name}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	c := &valet.Customer{AccountID: a.ID, Email: "c@" + name + ".test", Name: "C"}
	if err := s.CreateCustomer(ctx, c); err != nil {
		t.Fatal(err)
	}
	return a, c
}

// TestIntegrationSecretSealed checks what the database holds: the signing
// secret only sealed under the store's key, never in the clear.
func TestIntegrationSecretSealed(t *testing.T) {
	ctx := context.Background()
	for _, b := range nodeBackends {
		t.Run(b.name, func(t *testing.T) {
			s, _, raw := b.open(t)
			a, _ := newAccount(t, s, "acme")
			in := &valet.Integration{AccountID: a.ID, HTTP: valet.IntegrationHTTP{URL: "https://example.com/h",
				Triggers: map[string]bool{valet.EventTicketCreated: true}}}
			secret, err := s.CreateIntegration(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			random := strings.TrimPrefix(secret, valet.PrefixWebhookSecret)
			rows, err := raw.QueryContext(ctx, `SELECT * FROM integrations`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			cols, _ := rows.Columns()
			if !rows.Next() {
				t.Fatal("no row")
			}
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var sealed []byte
			for i, c := range cols {
				if strings.Contains(fmt.Sprintf("%s", vals[i]), random) {
					t.Errorf("column %s holds the secret in the clear", c)
				}
				if c == "secret_sealed" {
					sealed, _ = vals[i].([]byte)
				}
			}
			opened, err := valet.OpenKey(sqltest.SealKey, sealed)
			if err != nil || string(opened) != secret {
				t.Fatalf("secret_sealed does not open to the secret: %v", err)
			}
		})
	}
}

// TestIntegrationNeedsSealKey: a server without a secret cannot keep
// webhook secrets, and says so.
func TestIntegrationNeedsSealKey(t *testing.T) {
	ctx := context.Background()
	s := sqltest.SQLite(t, sqlstore.WithSealKey(nil))
	a, _ := newAccount(t, s, "acme")
	_, err := s.CreateIntegration(ctx, &valet.Integration{AccountID: a.ID, HTTP: valet.IntegrationHTTP{
		URL: "https://example.com/h", Triggers: map[string]bool{valet.EventTicketCreated: true}}})
	if valet.ErrorCode(err) != valet.EINTERNAL || !strings.Contains(valet.ErrorMessage(err), "VALET_SECRET") {
		t.Fatalf("error = %v (%q)", err, valet.ErrorMessage(err))
	}
	_, err = s.ClaimDeliveries(ctx, 10, time.Minute)
	if valet.ErrorCode(err) != valet.EINTERNAL {
		t.Fatalf("claim without a seal key: %v", err)
	}
}

// TestClaimTwoNodes: two stores on one database enqueue and claim at once;
// every delivery is claimed by exactly one of them, and enqueued once.
func TestClaimTwoNodes(t *testing.T) {
	ctx := context.Background()
	for _, b := range nodeBackends {
		t.Run(b.name, func(t *testing.T) {
			s1, s2, _ := b.open(t)
			a, c := newAccount(t, s1, "acme")
			in := &valet.Integration{AccountID: a.ID, HTTP: valet.IntegrationHTTP{URL: "https://example.com/h",
				Triggers: map[string]bool{valet.EventTicketCreated: true}}}
			if _, err := s1.CreateIntegration(ctx, in); err != nil {
				t.Fatal(err)
			}
			const tickets = 60
			for i := range tickets {
				tk := &valet.Ticket{AccountID: a.ID, Subject: fmt.Sprint("t", i), Customer: valet.PersonRef{ID: c.ID}}
				if err := s1.CreateTicket(ctx, tk, nil); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			claimed := map[int64]int{}
			enqueued := 0
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for _, s := range []*sqlstore.Store{s1, s2, s1, s2} {
				wg.Go(func() {
					for idle := 0; idle < 3; {
						n, err := s.EnqueueDeliveries(ctx, 7)
						if err != nil {
							errs <- err
							return
						}
						jobs, err := s.ClaimDeliveries(ctx, 5, time.Hour)
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						enqueued += n
						for _, j := range jobs {
							claimed[j.ID]++
						}
						mu.Unlock()
						if n == 0 && len(jobs) == 0 {
							idle++
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if enqueued != tickets || len(claimed) != tickets {
				t.Fatalf("enqueued %d, claimed %d distinct, want %d", enqueued, len(claimed), tickets)
			}
			for id, n := range claimed {
				if n != 1 {
					t.Fatalf("delivery %d claimed %d times", id, n)
				}
			}
		})
	}
}

func TestSignInLimitsSQLite(t *testing.T)   { storetest.RunSignInLimits(t, sqliteOn) }
func TestSignInLimitsPostgres(t *testing.T) { storetest.RunSignInLimits(t, postgresOn) }

// TestSignInLimitTwoNodes: two nodes on one database reserve attempts on
// one email at once; together they get exactly the limit, and the table
// holds the key's hash, not the email.
func TestSignInLimitTwoNodes(t *testing.T) {
	ctx := context.Background()
	limit := valet.SignInLimit{Attempts: 5, Per: time.Hour}
	for _, b := range nodeBackends {
		t.Run(b.name, func(t *testing.T) {
			a, c, raw := b.open(t)
			keys := []string{"email:guessed@acme.test", "addr:192.0.2.7"}
			var granted atomic.Int32
			var wg sync.WaitGroup
			for i := range 16 {
				node := a
				if i%2 == 1 {
					node = c
				}
				wg.Go(func() {
					retry, err := node.ReserveSignIn(ctx, keys, limit)
					if err != nil {
						t.Error(err)
					} else if retry == 0 {
						granted.Add(1)
					}
				})
			}
			wg.Wait()
			if n := granted.Load(); n != int32(limit.Attempts) {
				t.Fatalf("%d attempts granted across two nodes, want %d", n, limit.Attempts)
			}
			var n int
			hash := sha256.Sum256([]byte(keys[0]))
			if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM signin_buckets WHERE key_hash = $1`,
				hash[:]).Scan(&n); err != nil || n != 1 {
				t.Fatalf("rows with the email's hash: %d (%v)", n, err)
			}
			// A successful sign-in of a key without failures writes nothing.
			if err := a.ReleaseSignIn(ctx, []string{"email:never-failed@acme.test"}, limit); err != nil {
				t.Fatal(err)
			}
			if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM signin_buckets`).Scan(&n); err != nil || n != 2 {
				t.Fatalf("rows: %d (%v)", n, err)
			}
		})
	}
}

// TestSignInBucketsSwept: buckets untouched for a whole period are deleted
// by the next reservation after it; the ones in use stay.
func TestSignInBucketsSwept(t *testing.T) {
	ctx := context.Background()
	limit := valet.SignInLimit{Attempts: 3, Per: time.Minute}
	for name, open := range map[string]func(testing.TB, ...sqlstore.Option) *sqlstore.Store{
		"sqlite": sqltest.SQLite, "postgres": sqltest.Postgres,
	} {
		t.Run(name, func(t *testing.T) {
			clock := storetest.NewClock()
			s := open(t, sqlstore.WithClock(clock))
			count := func() int {
				var n int
				if err := s.QueryRow(ctx, `SELECT count(*) FROM signin_buckets`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			reserve := func(key string) {
				if _, err := s.ReserveSignIn(ctx, []string{key}, limit); err != nil {
					t.Fatal(err)
				}
			}
			reserve("email:old")
			clock.Advance(30 * time.Second)
			reserve("email:recent")
			clock.Advance(40 * time.Second) // old: 70 s untouched, recent: 40 s
			reserve("email:new")
			if n := count(); n != 2 {
				t.Fatalf("%d buckets after the sweep, want 2 (recent and new)", n)
			}
		})
	}
}

// TestSignInLimitUnderLoad: many sign-ins at once from one address, each
// with its own email, while a short period makes every reservation sweep:
// no reservation fails (a sweep inside the reservation deadlocked with
// them on PostgreSQL).
func TestSignInLimitUnderLoad(t *testing.T) {
	ctx := context.Background()
	limit := valet.SignInLimit{Attempts: 1_000_000, Per: time.Millisecond}
	for _, b := range nodeBackends {
		t.Run(b.name, func(t *testing.T) {
			a, c, _ := b.open(t)
			var wg sync.WaitGroup
			var failed atomic.Int32
			for i := range 32 {
				node := a
				if i%2 == 1 {
					node = c
				}
				wg.Go(func() {
					keys := []string{"addr:192.0.2.1", fmt.Sprintf("email:user%d@acme.test", i)}
					for range 15 {
						if _, err := node.ReserveSignIn(ctx, keys, limit); err != nil {
							t.Error(err)
							failed.Add(1)
							return
						}
						if err := node.ReleaseSignIn(ctx, keys, limit); err != nil {
							t.Error(err)
							failed.Add(1)
							return
						}
					}
				})
			}
			wg.Wait()
			if n := failed.Load(); n > 0 {
				t.Fatalf("%d sign-ins failed", n)
			}
		})
	}
}
