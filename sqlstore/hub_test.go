package sqlstore_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/sqlstore/storetest"
)

func TestHubSQLite(t *testing.T) {
	storetest.RunHub(t, func(tb testing.TB, c valet.Clock) valet.HubStore {
		return sqltest.HubSQLite(tb, sqlstore.WithClock(c))
	})
}

func TestHubPostgres(t *testing.T) {
	if os.Getenv(sqltest.PostgresEnv) == "" {
		t.Skip(sqltest.PostgresEnv + " is not set; skipping the PostgreSQL run")
	}
	storetest.RunHub(t, func(tb testing.TB, c valet.Clock) valet.HubStore {
		return sqltest.HubPostgres(tb, sqlstore.WithClock(c))
	})
}

// TestHubLeaseRace races two handles on one database, as two hub processes
// would be, for one connection's refresh lease.
func TestHubLeaseRace(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "hub.db")
		storetest.RunHubLeaseRace(t, sqltest.OpenHubSQLiteFile(t, path), sqltest.OpenHubSQLiteFile(t, path))
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := sqltest.PostgresDSN(t)
		open := func() *sqlstore.HubStore {
			h, err := sqlstore.OpenHub(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			return h
		}
		storetest.RunHubLeaseRace(t, open(), open())
	})
}

// TestHubBesideHelpdesk opens the hub on the helpdesk's database, as a
// misconfigured hub would: each schema keeps its own version table and
// tables, and both stores open again cleanly.
func TestHubBesideHelpdesk(t *testing.T) {
	ctx := context.Background()
	dsns := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "valet.db") },
		"postgres": func(t *testing.T) string { return sqltest.PostgresDSN(t) },
	}
	for name, mk := range dsns {
		t.Run(name, func(t *testing.T) {
			dsn := mk(t)
			for range 2 {
				s, err := sqlstore.Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				h, err := sqlstore.OpenHub(ctx, dsn)
				if err != nil {
					s.Close()
					t.Fatal(err)
				}
				v, err := s.SchemaVersion(ctx)
				if err != nil || v < 20 {
					t.Errorf("helpdesk schema version %d, %v", v, err)
				}
				hv, err := h.SchemaVersion(ctx)
				if err != nil || hv != 2 {
					t.Errorf("hub schema version %d, %v", hv, err)
				}
				if err := h.Ping(ctx); err != nil {
					t.Error(err)
				}
				h.Close()
				s.Close()
			}
		})
	}
}

// TestHubOpenTwice opens one hub database from several handles at once:
// the migrations are applied once, without error.
func TestHubOpenTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			h, err := sqlstore.OpenHub(context.Background(), path)
			if err == nil {
				err = h.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM hub_schema_migrations`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d hub migrations recorded, want 2: %v", n, err)
	}
}
