package valet

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Page sizes of list endpoints.
const (
	DefaultLimit = 30
	MaxLimit     = 100
)

// ListOptions are the paging parameters of a list request, as the client sent them.
type ListOptions struct {
	Cursor  string // opaque, from a previous page's meta
	Limit   int    // 0 means DefaultLimit
	OrderBy string // "field" or "field:asc|desc"; "" means the list's default
}

// Order is a validated sort order.
type Order struct {
	Field string
	Desc  bool
}

func (o Order) String() string {
	if o.Desc {
		return o.Field + ":desc"
	}
	return o.Field + ":asc"
}

// Cursor marks a position in a list: the sort key and id of a row, and
// whether the page wanted lies before it. Keyset cursors stay correct while
// rows are inserted, unlike offsets.
type Cursor struct {
	Order  Order
	Before bool
	Key    int64 // the sort field's value (unix microseconds for datetimes)
	ID     int64
}

const cursorVersion = "c1"

// String encodes c as an opaque token.
func (c Cursor) String() string {
	dir := "a"
	if c.Before {
		dir = "b"
	}
	raw := strings.Join([]string{cursorVersion, c.Order.String(), dir,
		strconv.FormatInt(c.Key, 10), strconv.FormatInt(c.ID, 10)}, "|")
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes a token made by Cursor.String. Errors: EINVALID.
func ParseCursor(s string) (Cursor, error) {
	bad := Invalid(map[string][]string{"cursor": {"is not a valid cursor"}})
	if len(s) > 200 {
		return Cursor{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 5 || parts[0] != cursorVersion || (parts[2] != "a" && parts[2] != "b") {
		return Cursor{}, bad
	}
	field, dir, ok := strings.Cut(parts[1], ":")
	if !ok || field == "" || (dir != "asc" && dir != "desc") {
		return Cursor{}, bad
	}
	key, err1 := strconv.ParseInt(parts[3], 10, 64)
	id, err2 := strconv.ParseInt(parts[4], 10, 64)
	if err1 != nil || err2 != nil || id < 0 {
		return Cursor{}, bad
	}
	return Cursor{Order: Order{Field: field, Desc: dir == "desc"}, Before: parts[2] == "b", Key: key, ID: id}, nil
}

// ListQuery is a validated list request, ready for a store.
type ListQuery struct {
	Limit  int
	Order  Order
	Cursor *Cursor // nil: the first page
}

// Resolve validates o against the fields a list can be ordered by; def is
// the order when none is given. A cursor made for another order is
// refused. Errors: EINVALID.
func (o ListOptions) Resolve(def Order, fields ...string) (ListQuery, error) {
	p := Problems{}
	q := ListQuery{Limit: o.Limit, Order: def}
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	if q.Limit < 1 || q.Limit > MaxLimit {
		p.Add("limit", fmt.Sprintf("must be between 1 and %d", MaxLimit))
	}
	if o.OrderBy != "" {
		field, dir, hasDir := strings.Cut(o.OrderBy, ":")
		switch {
		case !slices.Contains(fields, field):
			p.Add("order_by", "must be one of "+strings.Join(fields, ", ")+", optionally with :asc or :desc")
		case hasDir && dir != "asc" && dir != "desc":
			p.Add("order_by", "direction must be asc or desc")
		default:
			q.Order = Order{Field: field, Desc: dir == "desc"}
		}
	}
	if o.Cursor != "" {
		c, err := ParseCursor(o.Cursor)
		switch {
		case err != nil:
			p.Add("cursor", "is not a valid cursor")
		case c.Order != q.Order:
			p.Add("cursor", "was made for order_by="+c.Order.String())
		default:
			q.Cursor = &c
		}
	}
	return q, p.Err()
}

// Page is one page of a list with cursors to its neighbours ("" when none).
type Page[T any] struct {
	Data       []T
	PrevCursor string
	NextCursor string
}

// NewPage builds a page from rows a store fetched for q: up to q.Limit+1 rows
// in the direction of travel (reversed order when q.Cursor.Before). key
// returns a row's sort key and id.
func NewPage[T any](rows []T, q ListQuery, key func(*T) (int64, int64)) *Page[T] {
	more := len(rows) > q.Limit
	if more {
		rows = rows[:q.Limit]
	}
	backward := q.Cursor != nil && q.Cursor.Before
	if backward {
		slices.Reverse(rows)
	}
	page := &Page[T]{Data: rows}
	if page.Data == nil {
		page.Data = []T{}
	}
	if len(rows) == 0 {
		return page
	}
	at := func(row *T, before bool) string {
		k, id := key(row)
		return Cursor{Order: q.Order, Before: before, Key: k, ID: id}.String()
	}
	first, last := &rows[0], &rows[len(rows)-1]
	if backward {
		if more {
			page.PrevCursor = at(first, true)
		}
		page.NextCursor = at(last, false)
	} else {
		if more {
			page.NextCursor = at(last, false)
		}
		if q.Cursor != nil {
			page.PrevCursor = at(first, true)
		}
	}
	return page
}
