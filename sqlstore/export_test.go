package sqlstore

import (
	"context"
	"database/sql"
	"runtime"
	"strings"
	"time"

	"github.com/valethq/valet"
)

// ExplainListTickets returns SQLite's EXPLAIN QUERY PLAN of the query
// ListTickets runs for f, one line per plan step, on a reader connection
// (which sees the statistics of the last Analyze).
func (s *Store) ExplainListTickets(ctx context.Context, accountID int64, f valet.TicketFilter) ([]string, error) {
	query, args, _, err := listTicketsQuery(accountID, f)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return nil, err
		}
		plan = append(plan, strings.TrimSpace(detail))
	}
	return plan, rows.Err()
}

// Exec runs a statement on the writer connection.
func (s *Store) Exec(ctx context.Context, query string) error {
	_, err := s.w.ExecContext(ctx, query)
	return err
}

// ReloadStatistics closes the idle readers, so that the next ones load the
// statistics as they are now.
func (s *Store) ReloadStatistics() {
	s.r.SetMaxIdleConns(0)
	s.r.SetMaxIdleConns(max(4, runtime.NumCPU()))
}

// Rotate is Refresh's one-statement path alone (PostgreSQL): nil tokens
// when it leaves the decision to the transaction.
func (s *Store) Rotate(ctx context.Context, token string, appID int64, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	return s.rotate(ctx, token, presenter{appID: appID}, accessTTL)
}

// QueryRow runs a query on the writer pool.
func (s *Store) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return s.w.QueryRowContext(ctx, query, args...)
}

// Redeem is ExchangeAuthCode's one-statement path alone (PostgreSQL).
func (s *Store) Redeem(ctx context.Context, code string, r valet.CodeRedemption, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	return s.redeem(ctx, code, presenter{appID: r.AppID}, r, accessTTL)
}

// ExchangeInTransaction is ExchangeAuthCode without its one-statement path.
func (s *Store) ExchangeInTransaction(ctx context.Context, code string, r valet.CodeRedemption, accessTTL time.Duration) (*valet.IssuedTokens, error) {
	var out *valet.IssuedTokens
	err := s.grouped(ctx, func(ctx context.Context, tx *tx) (err error) {
		out, err = s.exchangeAuthCode(ctx, tx, code, presenter{appID: r.AppID}, r, accessTTL)
		return err
	})
	return out, err
}

// BatchCall is one call of a batched one-statement path: the code or
// refresh token, and the client that presents it (an app ID, or a client
// ID and secret).
type BatchCall struct {
	Secret               string
	AppID                int64
	ClientID, ClientPass string
	Redemption           valet.CodeRedemption
}

func (s *Store) batchCalls(calls []BatchCall, accessTTL time.Duration) []*issuing {
	in := make([]*issuing, len(calls))
	for i, c := range calls {
		in[i] = s.newIssuing(c.Secret, presenter{appID: c.AppID, clientID: c.ClientID, secret: c.ClientPass}, accessTTL)
		in[i].r = c.Redemption
	}
	return in
}

// RotateBatch runs refresh grants as one batch: one statement on
// PostgreSQL, the committer's group of statements on SQLite.
func (s *Store) RotateBatch(ctx context.Context, calls []BatchCall, accessTTL time.Duration) ([]*valet.IssuedTokens, error) {
	if s.d == sqliteDialect {
		return s.inWriteTx(ctx, func(tx *tx) ([]*valet.IssuedTokens, error) {
			return tx.rotateRows(ctx, s.batchCalls(calls, accessTTL))
		})
	}
	return s.rotateAll(ctx, s.batchCalls(calls, accessTTL))
}

// RedeemBatch runs code exchanges as one batch (see RotateBatch).
func (s *Store) RedeemBatch(ctx context.Context, calls []BatchCall, accessTTL time.Duration) ([]*valet.IssuedTokens, error) {
	if s.d == sqliteDialect {
		return s.inWriteTx(ctx, func(tx *tx) ([]*valet.IssuedTokens, error) {
			return tx.redeemRows(ctx, s.batchCalls(calls, accessTTL))
		})
	}
	return s.redeemAll(ctx, s.batchCalls(calls, accessTTL))
}

func (s *Store) inWriteTx(ctx context.Context, fn func(*tx) ([]*valet.IssuedTokens, error)) ([]*valet.IssuedTokens, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.rollback()
	out, err := fn(tx)
	if err != nil {
		return nil, err
	}
	return out, tx.commit(ctx)
}
