package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"

	"github.com/valethq/valet"
)

// ListEvents implements valet.EventService.
func (s *Store) ListEvents(ctx context.Context, accountID int64, f valet.EventFilter) ([]valet.Event, error) {
	const op = "sqlstore.ListEvents"
	limit := f.Limit
	if limit == 0 {
		limit = valet.DefaultLimit
	}
	if limit < 1 || limit > valet.MaxLimit {
		return nil, invalid(op, "limit", "must be between 1 and 100")
	}
	if f.After < 0 {
		return nil, invalid(op, "after", "must not be negative")
	}
	args := []any{accountID, f.After}
	where := ``
	if len(f.Types) > 0 {
		for _, t := range f.Types {
			if !slices.Contains(valet.EventTypes, t) {
				return nil, invalid(op, "types", "unknown event type: "+t)
			}
			args = append(args, t)
		}
		where = ` AND type IN (` + params(3, len(f.Types)) + `)`
	}
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, `SELECT id, account_id, type, object_type, object_id, user_id, app_id,
		data, created_at FROM events WHERE account_id = $1 AND id > $2`+where+
		` ORDER BY id LIMIT $`+itoa(len(args)), args...)
	if err != nil {
		return nil, s.fail(op, err, "")
	}
	defer rows.Close()
	out := []valet.Event{}
	for rows.Next() {
		var e valet.Event
		var userID, appID sql.NullInt64
		var data string
		var created int64
		if err := rows.Scan(&e.ID, &e.AccountID, &e.Type, &e.ObjectType, &e.ObjectID, &userID, &appID,
			&data, &created); err != nil {
			return nil, s.fail(op, err, "")
		}
		if userID.Valid {
			e.UserID = &userID.Int64
		}
		if appID.Valid {
			e.AppID = &appID.Int64
		}
		e.Data = json.RawMessage(data)
		e.CreatedDatetime = fromMicros(created)
		out = append(out, e)
	}
	return out, s.fail(op, rows.Err(), "")
}
