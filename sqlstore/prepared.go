package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
)

// stmtCache holds the prepared statements of the hot reads (Authenticate,
// FindTicket, ListTickets, FindSession…) on the reader pool, by SQL text.
// Parsing and planning a statement costs SQLite more than running these
// indexed reads (Authenticate 68 µs → 17 µs, FindTicket 173 µs → 23 µs).
// A *sql.Stmt is safe for concurrent use and prepares itself once on each
// pool connection it runs on (again on a new connection, say after Analyze
// recycled the idle readers). Only statements whose text comes from a small
// fixed set go through it: the cache is never evicted, so it must stay
// bounded (ListTickets has at most a few hundred filter combinations).
type stmtCache struct {
	m      sync.Map // string -> *sql.Stmt
	mu     sync.Mutex
	closed bool
	n      atomic.Int64 // statements held

	// pending are the writer statements to prepare at the next begin. They
	// have their own lock: mu is held while preparing, which waits for the
	// writer's connection, and the transaction holding that connection must
	// still be able to note a statement.
	pmu        sync.Mutex
	pending    map[string]bool
	hasPending atomic.Bool
}

var errStoreClosed = errors.New("sqlstore: the store is closed")

// prepared returns the reader pool's prepared statement of query, preparing
// it on first use.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	return s.stmts.get(ctx, s.r, query)
}

func (c *stmtCache) get(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	if st, ok := c.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	if c.closed {
		return nil, errStoreClosed
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m.Store(query, st)
	c.n.Add(1)
	return st, nil
}

// SQLite's writer is one connection, so a statement prepared on it once
// serves every write transaction after: the token endpoint's transactions
// spent a third of their time re-parsing SQL before. (PostgreSQL needs none
// of this: pgx caches prepared statements per connection itself.) Only
// statements of bounded text are kept, and at most writerStmtLimit of them,
// so generated SQL (bulk imports) cannot grow the cache without end.
const (
	writerStmtLimit    = 400
	writerStmtMaxBytes = 2048
)

// writerStmt returns the writer's prepared statement of query, or nil when
// it is not prepared (yet) or not worth keeping. It cannot prepare one
// itself: it runs inside a transaction, which holds the writer's only
// connection. So it notes the query, and the next begin prepares it while
// the connection is free.
func (s *Store) writerStmt(query string) *sql.Stmt {
	// A prepared statement is one statement: text holding several (a
	// migration) must keep running through Exec, which runs them all.
	if s.d != sqliteDialect || len(query) > writerStmtMaxBytes || strings.Contains(query, ";") {
		return nil
	}
	if st, ok := s.wstmts.m.Load(query); ok {
		return st.(*sql.Stmt)
	}
	s.wstmts.pmu.Lock()
	if int(s.wstmts.n.Load())+len(s.wstmts.pending) < writerStmtLimit {
		if s.wstmts.pending == nil {
			s.wstmts.pending = make(map[string]bool)
		}
		s.wstmts.pending[query] = true
		s.wstmts.hasPending.Store(true)
	}
	s.wstmts.pmu.Unlock()
	return nil
}

// prepareWrites prepares the statements writerStmt noted, before a write
// transaction takes the writer's connection. A failure only means the
// statement runs unprepared.
func (s *Store) prepareWrites(ctx context.Context) {
	if !s.wstmts.hasPending.Load() {
		return
	}
	s.wstmts.pmu.Lock()
	pending := s.wstmts.pending
	s.wstmts.pending = nil
	s.wstmts.hasPending.Store(false)
	s.wstmts.pmu.Unlock()
	for query := range pending {
		_, _ = s.wstmts.get(ctx, s.w, query)
	}
}

// ExecContext runs query in the transaction, prepared once if it is a
// write transaction on SQLite.
func (tx *tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := tx.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}

// QueryRowContext is ExecContext's counterpart for one row.
func (tx *tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := tx.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}

// QueryContext is ExecContext's counterpart for rows.
func (tx *tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := tx.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

// stmt binds the writer's prepared statement of query to the transaction.
// database/sql reuses the statement already prepared on the writer's one
// connection rather than preparing it again.
func (tx *tx) stmt(ctx context.Context, query string) *sql.Stmt {
	if !tx.writer {
		return nil
	}
	st := tx.s.writerStmt(query)
	if st == nil {
		return nil
	}
	return tx.Tx.StmtContext(ctx, st)
}

// queryRow is s.r.QueryRowContext through a prepared statement.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.prepared(ctx, query)
	if err != nil {
		// The unprepared query reports the same error through the row (or
		// works, if preparing failed for a passing reason).
		return s.r.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// query is s.r.QueryContext through a prepared statement.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// close closes the prepared statements; later calls prepare nothing.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	c.m.Range(func(k, v any) bool {
		errs = append(errs, v.(*sql.Stmt).Close())
		c.m.Delete(k)
		return true
	})
	return errors.Join(errs...)
}
