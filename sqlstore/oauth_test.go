package sqlstore_test

import (
	"os"
	"testing"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/sqlstore/storetest"
)

func TestOAuthSQLite(t *testing.T) {
	storetest.RunOAuth(t, func(tb testing.TB, c valet.Clock) valet.OAuthStore {
		return sqltest.SQLite(tb, sqlstore.WithClock(c))
	})
}

func TestOAuthPostgres(t *testing.T) {
	if os.Getenv(sqltest.PostgresEnv) == "" {
		t.Skip(sqltest.PostgresEnv + " is not set; skipping the PostgreSQL run")
	}
	storetest.RunOAuth(t, func(tb testing.TB, c valet.Clock) valet.OAuthStore {
		return sqltest.Postgres(tb, sqlstore.WithClock(c))
	})
}
