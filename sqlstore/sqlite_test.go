package sqlstore_test

import (
	"testing"

	"github.com/valethq/valet"
	"github.com/valethq/valet/sqlstore/sqltest"
	"github.com/valethq/valet/sqlstore/storetest"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(tb testing.TB) valet.Store { return sqltest.SQLite(tb) })
}
