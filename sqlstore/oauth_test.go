package sqlstore_test

import (
	"os"
	"testing"
	"time"

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

// TestRefreshLifetimes: a store opened with shorter refresh lifetimes
// enforces them (valet serve --refresh-idle-ttl, --refresh-absolute-ttl).
func TestRefreshLifetimes(t *testing.T) {
	idle, absolute := 2*time.Hour, 5*time.Hour
	t.Run("sqlite", func(t *testing.T) {
		storetest.RunRefreshLifetimes(t, func(tb testing.TB, c valet.Clock) valet.OAuthStore {
			return sqltest.SQLite(tb, sqlstore.WithClock(c), sqlstore.WithRefreshLifetimes(idle, absolute))
		}, idle, absolute)
	})
	t.Run("postgres", func(t *testing.T) {
		if os.Getenv(sqltest.PostgresEnv) == "" {
			t.Skip(sqltest.PostgresEnv + " is not set; skipping the PostgreSQL run")
		}
		storetest.RunRefreshLifetimes(t, func(tb testing.TB, c valet.Clock) valet.OAuthStore {
			return sqltest.Postgres(tb, sqlstore.WithClock(c), sqlstore.WithRefreshLifetimes(idle, absolute))
		}, idle, absolute)
	})
}
