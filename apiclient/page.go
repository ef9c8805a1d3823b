package apiclient

import (
	"context"
	"errors"
	"iter"
	"net/url"
	"strconv"
)

// MaxPageSize is the most rows the API returns per page.
const MaxPageSize = 100

// Page is one page of a cursor list.
type Page[T any] struct {
	Data []T
	// NextCursor fetches the following page when passed as Cursor; "" on
	// the last page. PrevCursor likewise; "" on the first.
	NextCursor string
	PrevCursor string
}

// listBody is the API's list envelope (DESIGN.md §2).
type listBody[T any] struct {
	Data []T `json:"data"`
	Meta struct {
		PrevCursor *string `json:"prev_cursor"`
		NextCursor *string `json:"next_cursor"`
		LastID     int64   `json:"last_id"` // events only
	} `json:"meta"`
}

// getPage fetches one page of the list at path.
func getPage[T any](ctx context.Context, c *Client, path string, q url.Values) (*Page[T], error) {
	var body listBody[T]
	if err := c.get(ctx, path, q, &body); err != nil {
		return nil, err
	}
	p := &Page[T]{Data: body.Data}
	if body.Meta.NextCursor != nil {
		p.NextCursor = *body.Meta.NextCursor
	}
	if body.Meta.PrevCursor != nil {
		p.PrevCursor = *body.Meta.PrevCursor
	}
	return p, nil
}

// errStuckCursor guards against a server that hands back the cursor it was
// given, which would make an iterator loop for ever.
var errStuckCursor = errors.New("apiclient: the list's next_cursor did not advance")

// walk iterates every row of the pages fetch returns, from cursor first on.
// A failed fetch is yielded once, as the last element. Pages are fetched
// only as the consumer asks for rows, so breaking out of the loop stops
// the requests.
func walk[T any](first string, fetch func(cursor string) (*Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		cursor := first
		for {
			p, err := fetch(cursor)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, v := range p.Data {
				if !yield(v, nil) {
					return
				}
			}
			if p.NextCursor == "" {
				return
			}
			if p.NextCursor == cursor {
				var zero T
				yield(zero, errStuckCursor)
				return
			}
			cursor = p.NextCursor
		}
	}
}

// listQuery holds the paging parameters every list takes. pageSize 0
// means MaxPageSize: whoever pages through a list wants it all, and each
// request costs one call of the account's rate limit.
func listQuery(cursor string, pageSize int, orderBy string) url.Values {
	q := url.Values{}
	if pageSize <= 0 {
		pageSize = MaxPageSize
	}
	q.Set("limit", strconv.Itoa(pageSize))
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if orderBy != "" {
		q.Set("order_by", orderBy)
	}
	return q
}
