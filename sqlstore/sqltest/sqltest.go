// Package sqltest opens throw-away sqlstore databases for tests: an SQLite
// file in the test's temporary folder, or a fresh schema on the PostgreSQL
// server named by VALET_TEST_POSTGRES.
package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for creating and dropping schemas

	"github.com/valethq/valet/sqlstore"
)

// PostgresEnv names the environment variable holding the DSN of the
// PostgreSQL server tests may use.
const PostgresEnv = "VALET_TEST_POSTGRES"

// SealKey is the fixed key sqltest's stores seal webhook secrets with, so
// that stores reopened on one database can read each other's secrets.
var SealKey = []byte("valet-sqltest-seal-key-32-bytes!")

// withSealKey puts the test seal key first, so that opts may override it.
func withSealKey(opts []sqlstore.Option) []sqlstore.Option {
	return append([]sqlstore.Option{sqlstore.WithSealKey(SealKey)}, opts...)
}

// SQLite returns a store on a new file in tb.TempDir(), closed when the test
// ends.
func SQLite(tb testing.TB, opts ...sqlstore.Option) *sqlstore.Store {
	tb.Helper()
	return OpenSQLiteFile(tb, filepath.Join(tb.TempDir(), "valet.db"), opts...)
}

// OpenSQLiteFile opens (creating and migrating if needed) the SQLite file at
// path and closes it when the test ends. Opening one path twice gives two
// independent handles, as two processes would have.
func OpenSQLiteFile(tb testing.TB, path string, opts ...sqlstore.Option) *sqlstore.Store {
	tb.Helper()
	s, err := sqlstore.Open(context.Background(), path, withSealKey(opts)...)
	if err != nil {
		tb.Fatalf("sqltest: open %s: %v", path, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// Postgres returns a store on a new schema of the server named by
// VALET_TEST_POSTGRES, dropped when the test ends. It skips the test when the
// variable is unset and fails it when the server does not answer.
func Postgres(tb testing.TB, opts ...sqlstore.Option) *sqlstore.Store {
	tb.Helper()
	dsn := PostgresDSN(tb)
	s, err := sqlstore.Open(context.Background(), dsn, withSealKey(opts)...)
	if err != nil {
		tb.Fatalf("sqltest: open postgres: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// PostgresDSN creates a fresh schema on the server named by
// VALET_TEST_POSTGRES and returns a DSN whose search_path is that schema;
// the schema is dropped when the test ends. Tests that open the store
// themselves (say, twice, as two nodes would) use it. It skips like
// Postgres.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		tb.Skip(PostgresEnv + " is not set; skipping the PostgreSQL run")
	}
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("sqltest: %s: %v", PostgresEnv, err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatalf("sqltest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "valet_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		tb.Fatalf("sqltest: PostgreSQL at %s: %v", PostgresEnv, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			tb.Errorf("sqltest: drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// HubSQLite returns a hub store on a new file in tb.TempDir(), closed when
// the test ends.
func HubSQLite(tb testing.TB, opts ...sqlstore.Option) *sqlstore.HubStore {
	tb.Helper()
	return OpenHubSQLiteFile(tb, filepath.Join(tb.TempDir(), "hub.db"), opts...)
}

// OpenHubSQLiteFile opens (creating and migrating if needed) the hub's
// SQLite file at path and closes it when the test ends. Opening one path
// twice gives two independent handles, as two hub processes would have.
func OpenHubSQLiteFile(tb testing.TB, path string, opts ...sqlstore.Option) *sqlstore.HubStore {
	tb.Helper()
	s, err := sqlstore.OpenHub(context.Background(), path, opts...)
	if err != nil {
		tb.Fatalf("sqltest: open hub %s: %v", path, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// HubPostgres returns a hub store on a new schema of the server named by
// VALET_TEST_POSTGRES, dropped when the test ends. It skips like Postgres;
// tests that open the hub store twice use PostgresDSN and sqlstore.OpenHub.
func HubPostgres(tb testing.TB, opts ...sqlstore.Option) *sqlstore.HubStore {
	tb.Helper()
	dsn := PostgresDSN(tb)
	s, err := sqlstore.OpenHub(context.Background(), dsn, opts...)
	if err != nil {
		tb.Fatalf("sqltest: open hub on postgres: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
