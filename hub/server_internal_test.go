package hub

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "/",
		"/":                    "/",
		"/connections/3":       "/connections/3",
		"/connections/3?x=1":   "/connections/3?x=1",
		"//evil.example/":      "/",
		"/\\evil.example":      "/",
		"https://evil.example": "/",
		"connections":          "/",
		"/a\r\nSet-Cookie: x":  "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckIssuer(t *testing.T) {
	announced := &Provider{BaseURL: "http://help", Issuer: "http://help"}
	silent := &Provider{BaseURL: "http://help"}
	for _, tc := range []struct {
		name string
		p    *Provider
		iss  string
		ok   bool
	}{
		{"announced, sent", announced, "http://help", true},
		{"announced, missing", announced, "", false},
		{"announced, other", announced, "http://evil", false},
		{"silent, missing", silent, "", true},
		{"silent, own", silent, "http://help", true},
		{"silent, other", silent, "http://evil", false},
	} {
		err := checkIssuer(tc.p, tc.iss)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		var pe *pageErr
		if err != nil && (!errors.As(err, &pe) || pe.Status != http.StatusBadRequest) {
			t.Errorf("%s: want a 400 page, got %v", tc.name, err)
		}
	}
}

func TestAuthError(t *testing.T) {
	for _, tc := range []struct {
		q      url.Values
		status int
	}{
		{url.Values{"code": {"c"}}, 0},
		{url.Values{"error": {"access_denied"}}, http.StatusForbidden},
		{url.Values{"error": {"invalid_scope"}}, http.StatusBadRequest},
		{url.Values{"error": {"server_error"}}, http.StatusBadGateway},
		{url.Values{"error": {"temporarily_unavailable"}}, http.StatusBadGateway},
	} {
		err := authError(tc.q, "connect")
		var pe *pageErr
		switch {
		case tc.status == 0 && err != nil, tc.status != 0 && (!errors.As(err, &pe) || pe.Status != tc.status || pe.Retry != "connect"):
			t.Errorf("%v: %v, want status %d", tc.q, err, tc.status)
		}
	}
}

func TestRelative(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		0:                 "just now",
		-30 * time.Second: "just now",
		5 * time.Minute:   "in 5m",
		-5 * time.Minute:  "5m ago",
		23 * time.Hour:    "in 23h",
		-72 * time.Hour:   "3d ago",
	} {
		if got := relative(now, now.Add(d)); got != want {
			t.Errorf("relative(%v) = %q, want %q", d, got, want)
		}
	}
}
