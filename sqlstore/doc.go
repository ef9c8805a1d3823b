// Package sqlstore implements valet.Store on database/sql, for SQLite
// (modernc.org/sqlite, pure Go) and PostgreSQL (jackc/pgx/v5).
//
// It owns the schema (embedded migrations under migrations/, applied by
// Open), the SQL of every service method, and the mapping of database errors
// to valet error codes. Both databases run the same statements: bind
// parameters are written $1, $2, … (SQLite accepts that form too), datetimes
// are BIGINT unix microseconds and JSON is TEXT. What does differ lives in
// one small dialect struct (dialect.go): opening, error detection and
// locking.
//
// Each public method runs in one transaction; private helpers take the *tx.
// Every change to helpdesk data queues an event on the tx, and the events
// are inserted just before commit (see tx.commit for why that ordering
// matters on PostgreSQL).
//
// On SQLite one *sql.DB with a single connection writes (transactions start
// with BEGIN IMMEDIATE, so a second process — the CLI while the server runs
// — waits for the lock instead of failing half-way), and a separate pool of
// read-only connections serves reads in WAL mode.
package sqlstore
