package sqlstore_test

import (
	"os"
	"testing"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/sqlstore/storetest"
)

// TestPostgres runs the conformance suite on the server named by
// VALET_TEST_POSTGRES, each case in a schema of its own; it skips without it.
func TestPostgres(t *testing.T) {
	if os.Getenv(sqltest.PostgresEnv) == "" {
		t.Skip(sqltest.PostgresEnv + " is not set; skipping the PostgreSQL run")
	}
	storetest.Run(t, func(tb testing.TB) valet.Store { return sqltest.Postgres(tb) })
}
