package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect holds everything that differs between SQLite and PostgreSQL. The
// SQL of the service methods is shared; it never gets rewritten.
type dialect struct {
	name string
	// migrations is the folder of migrations/ for this database.
	migrations string

	// placeholder returns bind parameter n (from 1) for statements built
	// with thousands of parameters (bulk INSERTs), which must number all
	// their parameters with it, in order. SQLite looks a $N name up with a
	// linear search for every parameter, quadratic for a 500-row INSERT,
	// while a plain ? costs nothing. Every other statement is written with
	// $N, which both databases accept.
	placeholder func(n int) string

	// bulkMaxParams is how many parameters one bulk INSERT binds (ImportTickets
	// sends rows in statements of bulkMaxParams/columns rows). SQLite's binding
	// is as fast with 400 as with 8,000; PostgreSQL imports ~15% faster with
	// 8,000 (fewer round trips).
	bulkMaxParams int

	// open returns the writer pool and the reader pool (the same pool on
	// PostgreSQL, which has no single-writer rule).
	open func(ctx context.Context, dsn string) (w, r *sql.DB, err error)

	// lockMigrations is run first in the migration transaction so that two
	// processes starting at once apply each migration once. Empty on
	// SQLite, where the transaction's BEGIN IMMEDIATE is the lock.
	lockMigrations string

	// lockEvents is run with the account id as $1 just before a
	// transaction inserts its events, and holds until commit. On PostgreSQL
	// ids come from a sequence when the insert runs, but become visible at
	// commit: without the lock, event 11 could commit before event 10 and a
	// consumer reading after=11 would never see 10. Empty on SQLite, where
	// writers are serialised anyway.
	lockEvents string

	// forUpdate is appended to a SELECT (one FROM table, aliased) that loads
	// a row the transaction will then change, so that concurrent
	// read-modify-write cycles on PostgreSQL do not lose updates. Empty on
	// SQLite, where the write transaction already holds the database lock.
	forUpdate func(alias string) string

	// analyze returns the statements that refresh the planner's statistics
	// of tables (see Store.Analyze).
	analyze func(tables []string) []string

	// reserveIDs returns n fresh ids of table, for bulk inserts that must
	// know their rows' ids without relying on RETURNING's order.
	reserveIDs func(ctx context.Context, tx *sql.Tx, table string, n int) ([]int64, error)

	isUnique     func(error) bool
	isForeignKey func(error) bool
}

func dialectFor(dsn string) *dialect {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return postgresDialect
	}
	return sqliteDialect
}

var sqliteDialect = &dialect{
	name:          "sqlite",
	migrations:    "migrations/sqlite",
	placeholder:   func(int) string { return "?" },
	bulkMaxParams: 400,
	open:          openSQLite,
	forUpdate:     func(string) string { return "" },
	analyze: func(tables []string) []string {
		// analysis_limit makes ANALYZE sample each index instead of reading
		// it all: seconds become milliseconds on a million rows, and the
		// planner only needs the proportions.
		stmts := []string{`PRAGMA analysis_limit = 1000`}
		for _, t := range tables {
			stmts = append(stmts, `ANALYZE `+t)
		}
		return stmts
	},
	reserveIDs: func(ctx context.Context, tx *sql.Tx, table string, n int) ([]int64, error) {
		// The write transaction holds the database lock, so nothing else
		// can take ids until commit. sqlite_sequence remembers the highest id
		// ever used by an AUTOINCREMENT table, even after deletes, and is
		// raised by inserts with explicit ids.
		var last int64
		err := tx.QueryRowContext(ctx,
			`SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = $1), 0)`, table).Scan(&last)
		if err != nil {
			return nil, err
		}
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = last + int64(i) + 1
		}
		return ids, nil
	},
	isUnique: func(err error) bool {
		code := sqliteCode(err)
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
	isForeignKey: func(err error) bool { return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY },
}

func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// sqliteBusyTimeout is how long a writer waits for another process's write
// transaction (the CLI's, or a second server's) before giving up.
const sqliteBusyTimeout = 10 * time.Second

func openSQLite(ctx context.Context, path string) (w, r *sql.DB, err error) {
	if path == "" || path == ":memory:" || strings.Contains(path, "mode=memory") {
		// Readers and the writer are separate connections: they must share a file.
		return nil, nil, fmt.Errorf("sqlite: an in-memory database cannot be shared by the writer and the readers; give a file path")
	}
	name := strings.TrimPrefix(path, "file:")
	if i := strings.IndexByte(name, '?'); i >= 0 && strings.HasPrefix(path, "file:") {
		name = name[:i] // a file: URI's own parameters are replaced by ours
	}
	// SQLite parses file: URIs: escape what would end the path early.
	uri := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(name)
	common := url.Values{}
	common.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	common.Add("_pragma", "foreign_keys(1)")
	common.Add("_pragma", "synchronous(NORMAL)")

	wq := cloneValues(common)
	wq.Add("_pragma", "journal_mode(WAL)")
	// The one writer touches every index of a table on each insert; 32 MiB
	// of page cache (instead of 2) keeps their hot pages in memory, which
	// makes bulk loads several times faster and costs nothing until used.
	wq.Add("_pragma", "cache_size(-32768)")
	// Each multi-row INSERT keeps a statement journal (to undo just that
	// statement on a constraint error); in memory, not a temporary file.
	wq.Add("_pragma", "temp_store(MEMORY)")
	wq.Set("_txlock", "immediate")
	w, err = sql.Open("sqlite", uri+"?"+wq.Encode())
	if err != nil {
		return nil, nil, err
	}
	// One writer: SQLite allows one write transaction at a time anyway, and
	// queueing in the pool is cheaper than spinning on SQLITE_BUSY.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Connecting the writer first switches the file to WAL before any reader
	// opens it.
	// Switching to WAL needs a moment alone with the file, and SQLite answers
	// SQLITE_BUSY to it without waiting on busy_timeout when another process
	// is opening the same file at that instant: retry for a bounded time.
	for attempt := 0; ; attempt++ {
		err = w.PingContext(ctx)
		if err == nil {
			break
		}
		busy := strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked")
		if !busy || attempt == 100 || ctx.Err() != nil {
			w.Close()
			return nil, nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}

	rq := cloneValues(common)
	rq.Add("_pragma", "query_only(1)")
	r, err = sql.Open("sqlite", uri+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	n := max(4, runtime.NumCPU())
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	return w, r, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// advisoryMigrationsKey is the session-wide advisory lock key of migrations
// ("valet" in ASCII). Event locks use the two-int key space, which does not
// overlap with this one.
const advisoryMigrationsKey = 0x76616c6574

// advisoryEventsClass is the first key of the per-account event locks.
const advisoryEventsClass = 0x7661

var postgresDialect = &dialect{
	name:           "postgres",
	migrations:     "migrations/postgres",
	placeholder:    func(n int) string { return "$" + strconv.Itoa(n) },
	bulkMaxParams:  8000,
	open:           openPostgres,
	lockMigrations: fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, advisoryMigrationsKey),
	// The account id is folded into int4; two accounts sharing a key only
	// share a lock, which costs concurrency, not correctness.
	lockEvents: fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, ($1::bigint %% 2147483647)::int)`, advisoryEventsClass),
	forUpdate:  func(alias string) string { return " FOR UPDATE OF " + alias },
	analyze: func(tables []string) []string {
		// Tables are always named: ANALYZE alone would analyze every schema
		// of the database (other valets' test schemas included).
		return []string{`ANALYZE ` + strings.Join(tables, ", ")}
	},
	reserveIDs: func(ctx context.Context, tx *sql.Tx, table string, n int) ([]int64, error) {
		rows, err := tx.QueryContext(ctx,
			`SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)`, table, n)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		ids := make([]int64, 0, n)
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		return ids, rows.Err()
	},
	isUnique:     func(err error) bool { return pgCode(err) == "23505" },
	isForeignKey: func(err error) bool { return pgCode(err) == "23503" },
}

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func openPostgres(ctx context.Context, dsn string) (w, r *sql.DB, err error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, db, nil
}

// bulkParams returns placeholders from..from+n-1, comma-separated.
func (d *dialect) bulkParams(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.placeholder(from + i))
	}
	return b.String()
}
