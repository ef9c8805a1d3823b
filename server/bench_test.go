package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/valethq/valet"
)

// BenchmarkGetTicket compares GET /api/tickets/{id} through the full handler
// with a Bearer API key against the same route with the credential injected
// directly, bypassing authentication (DESIGN.md §6: within 1.3x). Both run
// the observe middleware, rate limit, scope check and ticket handler on the
// same SQLite store. authenticated and no_auth call the handler in process,
// so the difference is authentication alone (the strictest ratio);
// http_authenticated and http_no_auth add a loopback HTTP/1.1 keep-alive
// round trip, as a load generator sees the server.
//
//	go test ./server/ -run '^$' -bench BenchmarkGetTicket -benchmem -count 6
func BenchmarkGetTicket(b *testing.B) {
	e := newAPIEnv(b)
	f := newFixture(b, e.store, "acme")
	for i := range 200 { // a table with more than one row, so lookups are real
		mustTicket(b, e.store, f.account, f.customer, "ticket "+strconv.Itoa(i))
	}
	path := "/api/tickets/" + strconv.FormatInt(f.ticket.ID, 10)

	run := func(b *testing.B, h http.Handler, auth string) {
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest("GET", path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	}

	runHTTP := func(b *testing.B, h http.Handler, auth string) {
		hs := httptest.NewServer(h)
		defer hs.Close()
		client := hs.Client()
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("GET", hs.URL+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			res, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	}

	// noAuth is the same route with the credential put in the context
	// directly: everything after authenticate, unchanged.
	cred, err := e.store.Authenticate(context.Background(), f.key)
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/tickets/{id}", e.srv.authorized(valet.ScopeTicketsRead, e.srv.getTicket))
	noAuth := e.srv.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := withCredential(r.Context(), cred)
		ctx = valet.WithActor(ctx, valet.Actor{UserID: cred.UserID, AppID: cred.AppID})
		mux.ServeHTTP(w, r.WithContext(ctx))
	}))

	b.Run("authenticated", func(b *testing.B) { run(b, e.srv.Handler(), "Bearer "+f.key) })
	b.Run("no_auth", func(b *testing.B) { run(b, noAuth, "") })
	b.Run("http_authenticated", func(b *testing.B) { runHTTP(b, e.srv.Handler(), "Bearer "+f.key) })
	b.Run("http_no_auth", func(b *testing.B) { runHTTP(b, noAuth, "") })
}
