package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet"
)

func TestAPIStatusOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want int
	}{
		{nil, http.StatusOK},
		{valet.Errorf(valet.EINVALID, "x"), http.StatusBadRequest},
		{valet.Errorf(valet.EUNAUTHORIZED, "x"), http.StatusUnauthorized},
		{valet.Errorf(valet.EFORBIDDEN, "x"), http.StatusForbidden},
		{valet.Errorf(valet.ESCOPE, "x"), http.StatusForbidden},
		{valet.Errorf(valet.ENOTFOUND, "x"), http.StatusNotFound},
		{valet.Errorf(valet.ECONFLICT, "x"), http.StatusConflict},
		{valet.Errorf(valet.EPRECONDITION, "x"), http.StatusPreconditionFailed},
		{valet.Errorf(valet.ETOOLARGE, "x"), http.StatusRequestEntityTooLarge},
		{valet.Errorf(valet.ERATELIMIT, "x"), http.StatusTooManyRequests},
		{valet.Errorf(valet.EINTERNAL, "x"), http.StatusInternalServerError},
		{valet.Errorf("some-new-code", "x"), http.StatusInternalServerError},
		{errors.New("plain"), http.StatusInternalServerError},
		{fmt.Errorf("wrapped: %w", valet.Errorf(valet.ENOTFOUND, "x")), http.StatusNotFound},
		{&valet.Error{Code: valet.ECONFLICT, Op: "sqlstore.CreateCustomer", Err: errors.New("unique")}, http.StatusConflict},
	}
	for _, tt := range tests {
		if got := StatusOf(tt.err); got != tt.want {
			t.Errorf("StatusOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestAPILimiter(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	l := newLimiter(clock)
	lim := RateLimit{Requests: 3, Per: 3 * time.Second} // drains one per second
	a := bucketKey{account: 1, kind: valet.CredentialAPIKey}
	for i := 1; i <= 3; i++ {
		if res := l.take(a, lim); !res.ok || res.used != i || res.limit != 3 {
			t.Fatalf("take %d = %+v, want ok used=%d", i, res, i)
		}
	}
	res := l.take(a, lim)
	if res.ok || res.used != 3 || res.retry != time.Second || retryAfterSeconds(res.retry) != 1 {
		t.Fatalf("4th take = %+v, want refused with retry 1s", res)
	}
	// Another account and another kind have buckets of their own.
	if res := l.take(bucketKey{account: 2, kind: valet.CredentialAPIKey}, lim); !res.ok || res.used != 1 {
		t.Fatalf("other account: %+v", res)
	}
	if res := l.take(bucketKey{account: 1, kind: valet.CredentialOAuth}, lim); !res.ok || res.used != 1 {
		t.Fatalf("other kind: %+v", res)
	}
	clock.Advance(500 * time.Millisecond)
	if res := l.take(a, lim); res.ok || res.retry != 500*time.Millisecond || retryAfterSeconds(res.retry) != 1 {
		t.Fatalf("after 0.5 s: %+v, want refused with retry 0.5s (Retry-After 1)", res)
	}
	clock.Advance(500 * time.Millisecond)
	if res := l.take(a, lim); !res.ok || res.used != 3 {
		t.Fatalf("after 1 s: %+v, want ok used=3", res)
	}
	// Idle buckets are dropped once they have drained.
	clock.Advance(10 * time.Second)
	l.take(bucketKey{account: 3, kind: valet.CredentialAPIKey}, lim)
	if n := l.size(); n != 1 {
		t.Fatalf("after idling, %d buckets held, want 1", n)
	}
	// No limit configured: always ok, no header.
	if res := l.take(a, RateLimit{}); !res.ok || res.limit != 0 {
		t.Fatalf("unlimited: %+v", res)
	}
}

func TestAPIRetryAfterSeconds(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, 20 * time.Second: 20} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestAPICheckPrecondition(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 123456000, time.UTC)
	other := now.Add(time.Microsecond)
	nowBody, otherBody := &apiTime{now}, &apiTime{other}
	tag := etag(now)
	tests := []struct {
		name    string
		ifMatch string
		body    *apiTime
		ok      bool
	}{
		{"nothing", "", nil, true},
		{"weak etag", tag, nil, true},
		{"strong form", strings.TrimPrefix(tag, "W/"), nil, true},
		{"star", "*", nil, true},
		{"in a list", `"1", ` + tag, nil, true},
		{"stale etag", etag(other), nil, false},
		{"garbage", "nonsense", nil, false},
		{"body current", "", nowBody, true},
		{"body stale", "", otherBody, false},
		{"etag ok body stale", tag, otherBody, false},
	}
	for _, tt := range tests {
		err := checkPrecondition(tt.ifMatch, tt.body, now)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && valet.ErrorCode(err) != valet.EPRECONDITION {
			t.Errorf("%s: code %s", tt.name, valet.ErrorCode(err))
		}
	}
}

func TestAPIDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		code  string
		field string
	}{
		{"ok", `{"subject": "hi", "customer": {"email": "a@b.example"}}`, "", ""},
		{"empty", ``, valet.EINVALID, "body"},
		{"malformed", `{"subject": `, valet.EINVALID, "body"},
		{"syntax", `{"subject" "x"}`, valet.EINVALID, "body"},
		{"unknown field", `{"subjet": "hi"}`, valet.EINVALID, "subjet"},
		{"unknown nested field", `{"customer": {"mail": "x"}}`, valet.EINVALID, "mail"},
		{"wrong type", `{"subject": 3}`, valet.EINVALID, "subject"},
		{"wrong nested type", `{"customer": {"id": "3"}}`, valet.EINVALID, "customer.id"},
		{"wrong tags", `{"tags": "a"}`, valet.EINVALID, "tags"},
		{"tag objects", `{"tags": [{"name": "a"}, "b"]}`, "", ""},
		{"tag object unknown field", `{"tags": [{"nom": "a"}]}`, valet.EINVALID, "tags"},
		{"two values", `{} {}`, valet.EINVALID, "body"},
		{"trailing garbage", `{} x`, valet.EINVALID, "body"},
		{"array", `[]`, valet.EINVALID, "body"},
		{"NUL", `{"subject": "a\u0000b"}`, valet.EINVALID, "body"},
	}
	for _, tt := range tests {
		var v ticketCreate
		err := decodeBytes([]byte(tt.body), &v)
		if got := valet.ErrorCode(err); got != tt.code {
			t.Errorf("%s: code %q (%v), want %q", tt.name, got, err, tt.code)
			continue
		}
		if tt.field != "" {
			if _, ok := valet.ErrorFields(err)[tt.field]; !ok {
				t.Errorf("%s: fields %v, want %q", tt.name, valet.ErrorFields(err), tt.field)
			}
		}
	}
}
