package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valethq/valet"
)

var _ valet.Store = (*Store)(nil)

// Store implements valet.Store on SQLite or PostgreSQL.
type Store struct {
	w      *sql.DB // writes (SQLite: one connection)
	r      *sql.DB // reads (SQLite: read-only pool; PostgreSQL: w)
	d      *dialect
	clock  valet.Clock
	stmts  stmtCache // the hot reads, prepared on r
	wstmts stmtCache // the writes, prepared on w (SQLite only)
	group  committer // group commit of the token endpoint's writes (SQLite)

	// rotations and redemptions batch the token endpoint's one-statement
	// paths (PostgreSQL).
	rotations, redemptions batchRunner[*issuing, *valet.IssuedTokens]

	// refreshIdle and refreshAbsolute bound refresh tokens
	// (WithRefreshLifetimes).
	refreshIdle, refreshAbsolute time.Duration

	// sealKey seals webhook signing secrets (WithSealKey); without it the
	// store refuses to create integrations.
	sealKey []byte

	// imported counts the tickets ImportTickets stored, to analyze the
	// tables each time their count doubles.
	importMu     sync.Mutex
	imported     int
	nextAnalysis int

	// signInSwept is when this node last deleted drained sign-in buckets
	// (µs since the epoch).
	signInSwept atomic.Int64
}

// Option configures Open.
type Option func(*Store)

// WithClock sets the clock behind every "now" the store records or compares
// (datetimes, token and session expiry).
func WithClock(c valet.Clock) Option { return func(s *Store) { s.clock = c } }

// WithSealKey sets the 32-byte key that seals webhook signing secrets at
// rest (AES-256-GCM with valet.SealKey). cmd/valet derives it from the server
// secret: valet.DeriveKey(secret, "webhook secrets"). Without it
// CreateIntegration and ClaimDeliveries answer EINTERNAL.
func WithSealKey(key []byte) Option {
	return func(s *Store) { s.sealKey = append([]byte(nil), key...) }
}

// WithRefreshLifetimes sets how long a refresh token lives unused (idle,
// default valet.RefreshIdleTTL) and how long a chain of rotations may go on
// from its code (absolute, default valet.RefreshAbsoluteTTL). Values that
// are not positive keep the default. Every node must use the same.
func WithRefreshLifetimes(idle, absolute time.Duration) Option {
	return func(s *Store) {
		if idle > 0 {
			s.refreshIdle = idle
		}
		if absolute > 0 {
			s.refreshAbsolute = absolute
		}
	}
}

// CanSealSecrets reports whether the store was opened with a seal key, so
// that pages can say webhooks need VALET_SECRET before anyone fills a form.
func (s *Store) CanSealSecrets() bool { return s.sealKey != nil }

// Open connects to dsn and applies pending migrations. A dsn starting with
// postgres:// or postgresql:// is a PostgreSQL connection string; anything
// else is the path of an SQLite file, created if missing.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s := &Store{d: dialectFor(dsn), clock: valet.SystemClock{},
		refreshIdle: valet.RefreshIdleTTL, refreshAbsolute: valet.RefreshAbsoluteTTL}
	for _, o := range opts {
		o(s)
	}
	w, r, err := s.d.open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", s.d.name, err)
	}
	s.w, s.r = w, r
	s.rotations.run, s.redemptions.run = s.rotateAll, s.redeemAll
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.d == sqliteDialect {
		// Analyzes the tables whose size changed a lot since they were last
		// analyzed (say, by a seed run in another process), cheaply: SQLite
		// recommends it when a long-lived connection opens.
		for _, stmt := range []string{`PRAGMA analysis_limit = 1000`, `PRAGMA optimize = 0x10002`} {
			if _, err := s.w.ExecContext(ctx, stmt); err != nil {
				s.Close()
				return nil, fmt.Errorf("sqlstore: optimize: %w", err)
			}
		}
	}
	return s, nil
}

// Analyze refreshes the query planner's statistics. Call it after a bulk
// load: until then PostgreSQL's planner may not know which index narrows a
// list best (that one customer's tickets are far fewer than the account's
// open ones, say) and scan a million rows for a page of 30. ImportTickets
// calls it as the tickets table doubles; normal operation needs no call
// (PostgreSQL's autovacuum analyzes, and the SQLite store runs PRAGMA
// optimize when it opens and closes).
func (s *Store) Analyze(ctx context.Context) error {
	return s.analyze(ctx, allTables...)
}

// allTables are the tables of the schema, for Analyze.
var allTables = []string{"accounts", "users", "members", "customers", "tickets", "messages", "tags",
	"ticket_tags", "events", "api_keys", "apps", "grants", "access_tokens", "sessions",
	"auth_codes", "refresh_tokens", "signing_keys", "audit_log", "integrations", "deliveries"}

func (s *Store) analyze(ctx context.Context, tables ...string) error {
	for _, stmt := range s.d.analyze(tables) {
		if _, err := s.w.ExecContext(ctx, stmt); err != nil {
			return s.fail("sqlstore.Analyze", err, "")
		}
	}
	if s.r != s.w {
		// SQLite connections read the statistics when they load the schema:
		// closing the idle readers makes the next queries use the new ones.
		n := max(4, runtime.NumCPU())
		s.r.SetMaxIdleConns(0)
		s.r.SetMaxIdleConns(n)
	}
	return nil
}

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.d.name }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return &valet.Error{Code: valet.EINTERNAL, Op: "sqlstore.Ping", Err: err}
	}
	return nil
}

// Close closes the prepared statements and the connection pools.
func (s *Store) Close() error {
	s.group.stop()
	s.rotations.stop()
	s.redemptions.stop()
	errs := []error{s.stmts.close(), s.wstmts.close()}
	if s.r != nil && s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		if s.d == sqliteDialect {
			// Keeps the planner's statistics current for the next start; cheap
			// when nothing changed.
			_, _ = s.w.Exec(`PRAGMA optimize`)
		}
		errs = append(errs, s.w.Close())
	}
	return errors.Join(errs...)
}

func (s *Store) now() time.Time { return s.clock.Now().UTC().Truncate(time.Microsecond) }

// tx is one transaction of a public method. Helpers take it so that a method
// composes them into a single atomic change.
type tx struct {
	*sql.Tx
	s      *Store
	now    time.Time
	actor  valet.Actor
	events []valet.Event
	writer bool // on the writer pool: statements go through s.wstmts
}

// begin starts a write transaction (BEGIN IMMEDIATE on SQLite).
func (s *Store) begin(ctx context.Context) (*tx, error) {
	s.prepareWrites(ctx)
	t, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &tx{Tx: t, s: s, now: s.now(), actor: valet.ActorFromContext(ctx), writer: true}, nil
}

// read starts a read-only transaction, so that a method issuing several
// queries sees one snapshot.
func (s *Store) read(ctx context.Context) (*tx, error) {
	t, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.d != sqliteDialect})
	if err != nil {
		return nil, err
	}
	return &tx{Tx: t, s: s, now: s.now()}, nil
}

// event queues an event; commit inserts the queue. data is marshalled now,
// so it is the object as it is at this point of the transaction.
func (tx *tx) event(accountID int64, typ, objectType string, objectID int64, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	e := valet.Event{AccountID: accountID, Type: typ, ObjectType: objectType, ObjectID: objectID,
		Data: b, CreatedDatetime: tx.now}
	if tx.actor.UserID != 0 {
		e.UserID = &tx.actor.UserID
	}
	if tx.actor.AppID != 0 {
		e.AppID = &tx.actor.AppID
	}
	tx.events = append(tx.events, e)
	return nil
}

// commit inserts the queued events and commits. The events go in last, so
// that on PostgreSQL the per-account event lock is held only from here to
// commit: a transaction holding it waits for nothing else, so it cannot be
// part of a deadlock, and events commit in id order.
func (tx *tx) commit(ctx context.Context) error {
	if err := tx.insertEvents(ctx); err != nil {
		return err
	}
	return tx.Commit()
}

// insertEvents inserts the queued events.
func (tx *tx) insertEvents(ctx context.Context) error {
	locked := map[int64]bool{}
	for _, e := range tx.events {
		if tx.s.d.lockEvents != "" && !locked[e.AccountID] {
			if _, err := tx.ExecContext(ctx, tx.s.d.lockEvents, e.AccountID); err != nil {
				return err
			}
			locked[e.AccountID] = true
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO events
			(account_id, type, object_type, object_id, user_id, app_id, data, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			e.AccountID, e.Type, e.ObjectType, e.ObjectID, nullID(e.UserID), nullID(e.AppID),
			string(e.Data), micros(e.CreatedDatetime))
		if err != nil {
			return err
		}
	}
	tx.events = nil
	return nil
}

// rollback ends a transaction that did not commit; after a commit it is a
// no-op, so methods defer it.
func (tx *tx) rollback() { _ = tx.Rollback() }

func nullID(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// Datetimes are stored as unix microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// zeroNull stores 0 (an unset reference) as NULL.
func zeroNull(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// errorf builds a valet error for op.
func errorf(op, code, msg string, err error) error {
	return &valet.Error{Code: code, Message: msg, Op: op, Err: err}
}

// fail turns err into a valet error for op: valet errors (validation, the
// caller's update closures) keep their code, a missing row is ENOTFOUND with
// the given message, a unique violation ECONFLICT, the rest EINTERNAL.
func (s *Store) fail(op string, err error, notFound string) error {
	if err == nil {
		return nil
	}
	var ve *valet.Error
	switch {
	case errors.As(err, &ve):
		if ve.Op == "" {
			cp := *ve
			cp.Op = op
			return &cp
		}
		return err
	case errors.Is(err, sql.ErrNoRows):
		return errorf(op, valet.ENOTFOUND, notFound, err)
	case s.d.isUnique(err):
		return errorf(op, valet.ECONFLICT, "This value is already taken.", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &valet.Error{Code: valet.EINTERNAL, Message: "The request was cancelled.", Op: op, Err: err}
	}
	return &valet.Error{Code: valet.EINTERNAL, Op: op, Err: err}
}

// invalid returns an EINVALID error about one field.
func invalid(op, field, problem string) error {
	e := valet.Invalid(map[string][]string{field: {problem}})
	e.Op = op
	return e
}

// params returns "$from, $from+1, … $from+n-1" for IN lists and VALUES rows.
func params(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(from + i))
	}
	return b.String()
}

// keyset returns the WHERE condition and ORDER BY clause of one page: col is
// the sort column, args the query's arguments so far (the cursor's go
// after them). Going backwards (a prev cursor) reverses the order; NewPage
// puts the rows back.
func keyset(q valet.ListQuery, col, idCol string, args []any) (cond, order string, _ []any) {
	desc := q.Order.Desc
	if q.Cursor != nil && q.Cursor.Before {
		desc = !desc
	}
	dir, op := "ASC", ">"
	if desc {
		dir, op = "DESC", "<"
	}
	if q.Cursor != nil {
		args = append(args, q.Cursor.Key, q.Cursor.ID)
		cond = fmt.Sprintf(" AND (%s, %s) %s ($%d, $%d)", col, idCol, op, len(args)-1, len(args))
	}
	order = fmt.Sprintf(" ORDER BY %s %s, %s %s", col, dir, idCol, dir)
	return cond, order, args
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// compactJSON returns raw without insignificant whitespace, so what the store
// returns does not depend on how the client indented it.
func compactJSON(raw json.RawMessage) (sql.NullString, error) {
	if len(raw) == 0 {
		return sql.NullString{}, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: b.String(), Valid: true}, nil
}

// querier is what *sql.DB and *tx share, for helpers used both inside a
// method's transaction and for single-statement reads.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func itoa(n int) string { return strconv.Itoa(n) }
