package valet_test

import (
	"strings"
	"testing"

	"github.com/valethq/valet"
)

var createdDesc = valet.Order{Field: "created_datetime", Desc: true}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []valet.Cursor{
		{Order: createdDesc, Key: 1732800000000000, ID: 42},
		{Order: valet.Order{Field: "id"}, Before: true, Key: -5, ID: 0},
	} {
		got, err := valet.ParseCursor(c.String())
		if err != nil || got != c {
			t.Fatalf("ParseCursor(%q) = %+v, %v; want %+v", c.String(), got, err, c)
		}
	}
}

func TestResolve(t *testing.T) {
	fields := []string{"created_datetime", "updated_datetime"}
	valid := valet.Cursor{Order: createdDesc, Key: 10, ID: 3}.String()
	otherOrder := valet.Cursor{Order: valet.Order{Field: "updated_datetime"}, Key: 10, ID: 3}.String()
	tests := []struct {
		name      string
		opt       valet.ListOptions
		wantLimit int
		wantOrder string
		badField  string
	}{
		{"defaults", valet.ListOptions{}, 30, "created_datetime:desc", ""},
		{"limit max", valet.ListOptions{Limit: 100}, 100, "created_datetime:desc", ""},
		{"limit over", valet.ListOptions{Limit: 101}, 0, "", "limit"},
		{"limit negative", valet.ListOptions{Limit: -1}, 0, "", "limit"},
		{"order asc implied", valet.ListOptions{OrderBy: "updated_datetime"}, 30, "updated_datetime:asc", ""},
		{"order desc", valet.ListOptions{OrderBy: "updated_datetime:desc"}, 30, "updated_datetime:desc", ""},
		{"order unknown", valet.ListOptions{OrderBy: "subject"}, 0, "", "order_by"},
		{"order bad dir", valet.ListOptions{OrderBy: "created_datetime:up"}, 0, "", "order_by"},
		{"cursor", valet.ListOptions{Cursor: valid}, 30, "created_datetime:desc", ""},
		{"cursor garbage", valet.ListOptions{Cursor: "!!"}, 0, "", "cursor"},
		{"cursor for another order", valet.ListOptions{Cursor: otherOrder}, 0, "", "cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := tt.opt.Resolve(createdDesc, fields...)
			if tt.badField != "" {
				if valet.ErrorCode(err) != valet.EINVALID || len(valet.ErrorFields(err)[tt.badField]) == 0 {
					t.Fatalf("err = %v, want EINVALID on %s", err, tt.badField)
				}
				return
			}
			if err != nil || q.Limit != tt.wantLimit || q.Order.String() != tt.wantOrder {
				t.Fatalf("Resolve = %+v, %v", q, err)
			}
		})
	}
}

type row struct{ key, id int64 }

func rowKey(r *row) (int64, int64) { return r.key, r.id }

// TestNewPageWalk pages through a list in memory the way a store does and
// checks that next and prev cursors visit each row once, in order.
func TestNewPageWalk(t *testing.T) {
	var all []row
	for i := int64(1); i <= 7; i++ {
		all = append(all, row{key: i * 10, id: i})
	}
	// fetch mimics a store: ascending order, keyset condition, limit+1.
	fetch := func(q valet.ListQuery) []row {
		var out []row
		if q.Cursor != nil && q.Cursor.Before {
			for i := len(all) - 1; i >= 0; i-- {
				r := all[i]
				if r.key < q.Cursor.Key || (r.key == q.Cursor.Key && r.id < q.Cursor.ID) {
					out = append(out, r)
				}
			}
		} else {
			for _, r := range all {
				if q.Cursor == nil || r.key > q.Cursor.Key || (r.key == q.Cursor.Key && r.id > q.Cursor.ID) {
					out = append(out, r)
				}
			}
		}
		if len(out) > q.Limit+1 {
			out = out[:q.Limit+1]
		}
		return out
	}
	order := valet.Order{Field: "created_datetime"}
	var seen []int64
	var pages []*valet.Page[row]
	opt := valet.ListOptions{Limit: 3}
	for {
		q, err := opt.Resolve(order, "created_datetime")
		if err != nil {
			t.Fatal(err)
		}
		p := valet.NewPage(fetch(q), q, rowKey)
		pages = append(pages, p)
		for _, r := range p.Data {
			seen = append(seen, r.id)
		}
		if p.NextCursor == "" {
			break
		}
		opt.Cursor = p.NextCursor
	}
	if got := len(seen); got != 7 || seen[0] != 1 || seen[6] != 7 {
		t.Fatalf("walked %v", seen)
	}
	if pages[0].PrevCursor != "" {
		t.Fatal("first page has a prev cursor")
	}
	// Going back from the last page returns the middle page exactly.
	q, _ := valet.ListOptions{Limit: 3, Cursor: pages[2].PrevCursor}.Resolve(order, "created_datetime")
	back := valet.NewPage(fetch(q), q, rowKey)
	if len(back.Data) != 3 || back.Data[0].id != 4 || back.Data[2].id != 6 {
		t.Fatalf("prev page = %v", back.Data)
	}
	if back.PrevCursor == "" || back.NextCursor == "" {
		t.Fatalf("middle page lacks cursors: %+v", back)
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add(valet.Cursor{Order: createdDesc, Key: 1, ID: 2}.String())
	f.Add(valet.Cursor{Order: valet.Order{Field: "id"}, Before: true, Key: -9, ID: 9}.String())
	f.Add("")
	f.Add("YzF8fHx8")
	f.Add(strings.Repeat("A", 300))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := valet.ParseCursor(s)
		if err != nil {
			if valet.ErrorCode(err) != valet.EINVALID {
				t.Fatalf("error code %q", valet.ErrorCode(err))
			}
			return
		}
		// Whatever parses must re-encode to something that parses the same.
		again, err := valet.ParseCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("round trip of %+v: %+v, %v", c, again, err)
		}
	})
}
