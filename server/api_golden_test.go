package server

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/valethq/valet"
)

// updateGolden rewrites testdata golden files: go test ./server/ -run Golden -update
var updateGolden = flag.Bool("update", false, "rewrite golden files under testdata/")

// normalizeJSON replaces what changes between runs (datetimes, cursors,
// request ids) so golden files pin only the shape and stable values.
func normalizeJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			switch {
			case val == nil:
			case strings.HasSuffix(k, "_datetime"):
				x[k] = "<datetime>"
			case k == "prev_cursor" || k == "next_cursor":
				x[k] = "<cursor>"
			case k == "msg":
				if s, ok := val.(string); ok && strings.Contains(s, "(request ") {
					x[k] = s[:strings.Index(s, "(request ")] + "(request <id>)."
				}
			default:
				x[k] = normalizeJSON(val)
			}
		}
	case []any:
		for i := range x {
			x[i] = normalizeJSON(x[i])
		}
	}
	return v
}

// TestAPIGolden pins the JSON shapes of the API (objects, lists, errors)
// in testdata/api/*.json, so a change to what clients see is a reviewed diff.
func TestAPIGolden(t *testing.T) {
	t.Parallel()
	onStores(t, testAPIGolden)
}

func testAPIGolden(t *testing.T, open storeOpener) {
	e := newAPIEnvOn(t, open)
	f := newFixture(t, e.store, "acme")
	auth := bearer(f.key)
	tid := strconv.FormatInt(f.ticket.ID, 10)
	e.do(t, "POST", "/api/tickets/"+tid+"/tags", map[string]any{"names": []string{"vip"}}, auth).want(t, 200)
	e.do(t, "PUT", "/api/tickets/"+tid, map[string]any{"assignee_user": map[string]any{"id": f.agent.ID}}, auth).want(t, 200)
	mustTicket(t, e.store, f.account, f.customer, "Second ticket") // so the first page has a next cursor
	readOnly := mustAPIKey(t, e.store, f.account, f.owner, valet.ScopeTicketsRead)

	for _, c := range []struct {
		name   string
		method string
		path   string
		body   any
		key    string
		status int
	}{
		{"account", "GET", "/api/account", nil, f.key, 200},
		{"users_list", "GET", "/api/users", nil, f.key, 200},
		{"customer", "GET", "/api/customers/" + strconv.FormatInt(f.customer.ID, 10), nil, f.key, 200},
		{"ticket", "GET", "/api/tickets/" + tid, nil, f.key, 200},
		{"tickets_list", "GET", "/api/tickets?limit=1&order_by=created_datetime:asc", nil, f.key, 200},
		{"messages_list", "GET", "/api/tickets/" + tid + "/messages", nil, f.key, 200},
		{"tags_list", "GET", "/api/tickets/" + tid + "/tags", nil, f.key, 200},
		{"events_list", "GET", "/api/events?limit=2", nil, f.key, 200},
		{"error_invalid", "POST", "/api/tickets", map[string]any{"status": "pending", "messages": []any{map[string]any{}}}, f.key, 400},
		{"error_unknown_field", "POST", "/api/customers", map[string]any{"emial": "x"}, f.key, 400},
		{"error_forbidden", "POST", "/api/tickets", map[string]any{}, readOnly, 403},
		{"error_not_found", "GET", "/api/tickets/999999", nil, f.key, 404},
		{"error_unauthorized", "GET", "/api/tickets", nil, "", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, c.method, c.path, c.body, bearer(c.key)).want(t, c.status)
			var v any
			r.JSON(t, &v)
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(normalizeJSON(v)); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			path := filepath.Join("testdata", "api", c.name+".json")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (run with -update if intended):\n%s", c.name, path, got)
			}
		})
	}
}
