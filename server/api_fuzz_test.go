package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/valethq/valet"
)

// fuzzServe sends one request straight to the handler (no network, so the
// fuzzer runs fast) and fails on a 500 or a body that is not JSON.
func fuzzServe(t *testing.T, h http.Handler, method, path, rawQuery string, body []byte, key string) {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.URL.RawQuery = rawQuery
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s?%s with %q: status %d: %s", method, path, rawQuery, body, rec.Code, rec.Body)
	}
	if rec.Code != http.StatusNoContent && rec.Code != http.StatusNotModified && !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%s %s: answer is not JSON: %q", method, path, rec.Body)
	}
}

func ticketBodySeeds(f *testing.F, customerID int64) {
	cid := strconv.FormatInt(customerID, 10)
	for _, s := range []string{
		`{"subject": "Hello", "customer": {"id": ` + cid + `}}`,
		`{"subject": "Hello", "customer": {"email": "new@customers.example", "name": "New"}, "messages": [{"body_text": "hi"}], "tags": ["a", {"name": "b"}]}`,
		`{"customer": {"id": ` + cid + `}, "status": "closed", "priority": "urgent", "channel": "chat", "assignee_user": {"id": 1}}`,
		`{"customer": {"id": ` + cid + `}, "messages": [{"public": false, "from_agent": true, "body_html": "<p>x</p>", "sender": {"id": 1}}]}`,
		`{"status": "open", "assignee_user": null, "updated_datetime": "2026-01-01T00:00:00Z"}`,
		`{"customer": {"id": -1}}`, `{"customer": {"id": 9223372036854775807}}`, `{"customer": {"id": 1e400}}`,
		`{"tags": [[]]}`, `{"tags": [null]}`, `{"messages": null}`, `{"messages": [null]}`,
		`{"subject": "\ud800"}`, `{"subject": "a\u0000"}`, `{"subject": "` + "\xff\xfe" + `"}`,
		`{}`, `[]`, `null`, `""`, `{"a":1}`, `{"subject": "x"}{}`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
}

// FuzzAPITicketBody checks that no ticket body, however odd, makes the
// server panic or answer 500: POST /api/tickets and PUT /api/tickets/{id}.
func FuzzAPITicketBody(f *testing.F) {
	e := newAPIEnv(f)
	fx := newFixture(f, e.store, "acme")
	ticketBodySeeds(f, fx.customer.ID)
	h := e.srv.Handler()
	put := "/api/tickets/" + strconv.FormatInt(fx.ticket.ID, 10)
	f.Fuzz(func(t *testing.T, body []byte) {
		// The decoder alone: only client errors, and a built ticket for valid input.
		var tc ticketCreate
		if err := decodeBytes(body, &tc); err != nil {
			if code := valet.ErrorCode(err); code != valet.EINVALID {
				t.Fatalf("decode %q: %v (%s)", body, err, code)
			}
		} else if _, _, err := tc.build(1); err != nil && valet.ErrorCode(err) != valet.EINVALID {
			t.Fatalf("build %q: %v", body, err)
		}
		fuzzServe(t, h, "POST", "/api/tickets", "", body, fx.key)
		fuzzServe(t, h, "PUT", put, "", body, fx.key)
		fuzzServe(t, h, "POST", put+"/messages", "", body, fx.key)
		fuzzServe(t, h, "PUT", put+"/tags", "", body, fx.key)
	})
}

// FuzzAPICustomerBody is FuzzAPITicketBody for customers.
func FuzzAPICustomerBody(f *testing.F) {
	e := newAPIEnv(f)
	fx := newFixture(f, e.store, "acme")
	for _, s := range []string{
		`{"email": "a@b.example", "name": "A", "firstname": "A", "lastname": "B", "external_id": "1", "language": "fr", "timezone": "UTC", "note": "n", "data": {"k": [1, 2]}}`,
		`{"email": "` + fx.customer.Email + `"}`, `{"data": null, "name": "x"}`, `{"data": [1], "name": "x"}`, `{"data": "s"}`,
		`{"data": {"k": "\u0000"}, "name": "x"}`, `{"updated_datetime": "2026-01-01T00:00:00Z", "note": "x"}`,
		`{"updated_datetime": "not a time"}`, `{"email": 5}`, `{"name": ""}`, `{}`, `null`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	h := e.srv.Handler()
	path := "/api/customers/" + strconv.FormatInt(fx.customer.ID, 10)
	f.Fuzz(func(t *testing.T, body []byte) {
		var cu customerUpdate
		if err := decodeBytes(body, &cu); err != nil && valet.ErrorCode(err) != valet.EINVALID {
			t.Fatalf("decode %q: %v", body, err)
		}
		fuzzServe(t, h, "POST", "/api/customers", "", body, fx.key)
		fuzzServe(t, h, "PUT", path, "", body, fx.key)
	})
}

// FuzzAPIListQuery checks the query and cursor parsing of every list: a
// query string is a client error or a page, never a 500 or a panic.
func FuzzAPIListQuery(f *testing.F) {
	e := newAPIEnv(f)
	fx := newFixture(f, e.store, "acme")
	good := valet.Cursor{Order: valet.Order{Field: "created_datetime", Desc: true}, Key: 1, ID: 1}.String()
	for _, q := range []string{
		"", "limit=5", "limit=100", "limit=0", "limit=-1", "limit=1000000000000000000000", "limit=5&limit=6",
		"order_by=created_datetime:desc&cursor=" + good, "order_by=updated_datetime", "order_by=created_datetime:up",
		"cursor=" + good, "cursor=" + valet.Cursor{Order: valet.Order{Field: "subject"}, Before: true, Key: -1 << 63, ID: 0}.String(),
		"cursor=YzF8fHx8", "cursor=%ZZ", "cursor=" + url.QueryEscape("c1|created_datetime:asc|b|1|1"),
		"status=open&customer_id=1&assignee_user_id=2&updated_since=2026-01-01T00:00:00Z",
		"status=x", "customer_id=9223372036854775808", "updated_since=2026-13-45T99:99:99Z", "updated_since=0000-01-01T00:00:00Z",
		"email=a@b.example&external_id=x", "after=1&types=ticket-created,customer-created&limit=3", "types=,,,", "after=-5",
		";;;&&&===", "%",
	} {
		f.Add(q)
	}
	h := e.srv.Handler()
	tid := strconv.FormatInt(fx.ticket.ID, 10)
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, _ := url.ParseQuery(rawQuery)
		p := valet.Problems{}
		_ = ticketFilter(q, p)
		if eq, err := parseEventQuery(q); err != nil && valet.ErrorCode(err) != valet.EINVALID {
			t.Fatalf("parseEventQuery(%q): %v", rawQuery, err)
		} else if err == nil && (eq.filter.Limit < 1 || eq.filter.Limit > valet.MaxLimit || eq.wait < 0) {
			t.Fatalf("parseEventQuery(%q) = %+v", rawQuery, eq)
		}
		for _, path := range []string{"/api/tickets", "/api/customers", "/api/users", "/api/tickets/" + tid + "/messages"} {
			fuzzServe(t, h, "GET", path, rawQuery, nil, fx.key)
		}
		// Events only without wait, so a fuzzed wait=30 cannot stall the run.
		q.Del("wait")
		fuzzServe(t, h, "GET", "/api/events", q.Encode(), nil, fx.key)
	})
}
