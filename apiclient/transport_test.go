package apiclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/valethq/valet/apiclient"
)

// source is a TokenSource whose current token the API will refuse; Renew
// moves it to next (once: only while stale is current), or fails with err.
type source struct {
	mu     sync.Mutex
	cur    string
	next   string
	err    error
	renews int
	stales []string
}

func (s *source) Token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, nil
}

func (s *source) Renew(_ context.Context, stale string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renews++
	s.stales = append(s.stales, stale)
	if s.err != nil {
		return "", s.err
	}
	if stale == s.cur {
		s.cur = s.next
	}
	return s.cur, nil
}

func (s *source) renewCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renews
}

// TestRenewAfter401: the first token is a revoked OAuth token; after the
// API's 401 the source renews it (to an API key, which the API takes as
// Bearer too) and the request, body included, is sent once more.
func TestRenewAfter401(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	revoked, grant := e.oauthToken(t)
	must(t, e.store.RevokeGrant(context.Background(), e.account.ID, grant.ID))
	src := &source{cur: revoked, next: e.key}
	rec := newRecorder()
	c := newClient(t, e.hs.URL, apiclient.WithTokenSource(src), apiclient.WithHTTPClient(rec.httpClient()))
	ctx := context.Background()

	cu, err := c.CreateCustomer(ctx, apiclient.NewCustomer{Email: "renewed@example.com", Name: "Renewed"})
	if err != nil {
		t.Fatalf("CreateCustomer through a renewal: %v", err)
	}
	if cu.Email != "renewed@example.com" || cu.Name != "Renewed" {
		t.Errorf("body not replayed: %+v", cu)
	}
	if src.renewCount() != 1 || src.stales[0] != revoked {
		t.Errorf("Renew called %d times with %q", src.renewCount(), src.stales)
	}
	if st := rec.statuses(); len(st) != 2 || st[0] != 401 || st[1] != 201 {
		t.Errorf("statuses = %v, want [401 201]", st)
	}
	// The renewed token is used from then on.
	_, err = c.Account(ctx)
	must(t, err)
	if src.renewCount() != 1 || rec.count() != 3 {
		t.Errorf("after renewal: %d renewals, %d requests", src.renewCount(), rec.count())
	}
	// The caller's http.Client was not changed by WithTokenSource.
	if _, ok := rec.httpClient().Transport.(*recorder); !ok {
		t.Error("WithTokenSource changed the given client")
	}

	// Many callers refused together: each calls Renew, the source renews
	// once and hands the others the already renewed token.
	tok, grant2 := e.oauthToken(t)
	src2 := &source{cur: tok, next: e.key}
	c2 := newClient(t, e.hs.URL, apiclient.WithTokenSource(src2))
	_, err = c2.Account(ctx)
	must(t, err)
	must(t, e.store.RevokeGrant(ctx, e.account.ID, grant2.ID))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c2.Ticket(ctx, e.ticket.ID); err != nil {
				t.Errorf("concurrent call: %v", err)
			}
		})
	}
	wg.Wait()
	if n := src2.renewCount(); n < 1 || n > 8 {
		t.Errorf("%d renewals", n)
	}
}

var errRevoked = errors.New("connection revoked")

// TestRenewError: when the source cannot renew, the call fails at once with
// the source's error, and is not retried.
func TestRenewError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := &source{cur: "vat_not_a_real_token", err: errRevoked}
	rec := newRecorder()
	c := newClient(t, e.hs.URL, apiclient.WithTokenSource(src), apiclient.WithHTTPClient(rec.httpClient()))
	_, err := c.Ticket(context.Background(), e.ticket.ID)
	if !errors.Is(err, errRevoked) || !apiclient.IsUnauthorized(err) {
		t.Fatalf("error = %v, want the source's, unauthorized", err)
	}
	var te *apiclient.TokenError
	if !errors.As(err, &te) || te.Op != "renew" {
		t.Errorf("error = %#v, want a renew TokenError", err)
	}
	if src.renewCount() != 1 || rec.count() != 1 {
		t.Errorf("%d renewals, %d requests; want 1 and 1", src.renewCount(), rec.count())
	}

	// A source that renews to the same token: the 401 is the answer.
	same := &source{cur: "vat_not_a_real_token", next: "vat_not_a_real_token"}
	_, err = newClient(t, e.hs.URL, apiclient.WithTokenSource(same)).Account(context.Background())
	if !apiclient.IsUnauthorized(err) || apiclient.StatusCode(err) != 401 || same.renewCount() != 1 {
		t.Errorf("same token: %v after %d renewals", err, same.renewCount())
	}

	// StaticToken never renews.
	_, err = newClient(t, e.hs.URL, apiclient.WithTokenSource(apiclient.StaticToken("vak_nope"))).Account(context.Background())
	if !errors.Is(err, apiclient.ErrCannotRenew) {
		t.Errorf("StaticToken refused: %v", err)
	}
	// A good StaticToken just works.
	if _, err := newClient(t, e.hs.URL, apiclient.WithTokenSource(apiclient.StaticToken(e.key))).Account(context.Background()); err != nil {
		t.Errorf("StaticToken: %v", err)
	}
}

// TestTransport uses the exported Transport with an http.Client of one's
// own, as the hub does for the calls it proxies.
func TestTransport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := &source{cur: "vat_stale", next: e.key}
	hc := &http.Client{Transport: apiclient.NewTransport(nil, src)}

	res, err := hc.Post(e.hs.URL+"/api/customers", "application/json", strings.NewReader(`{"name":"Via transport"}`))
	must(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 || !strings.Contains(string(body), "Via transport") {
		t.Errorf("POST through Transport: %d %s", res.StatusCode, body)
	}

	// A body that cannot be replayed: the 401 is returned, Renew not called.
	src2 := &source{cur: "vat_stale", next: e.key}
	hc2 := &http.Client{Transport: apiclient.NewTransport(nil, src2)}
	req, err := http.NewRequest("POST", e.hs.URL+"/api/customers", io.NopCloser(strings.NewReader(`{"name":"x"}`)))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err = hc2.Do(req)
	must(t, err)
	res.Body.Close()
	if res.StatusCode != 401 || src2.renewCount() != 0 {
		t.Errorf("unreplayable body: %d after %d renewals, want 401 and none", res.StatusCode, src2.renewCount())
	}

	// A source that cannot give a token fails the request without sending it.
	rec := newRecorder()
	hc3 := &http.Client{Transport: apiclient.NewTransport(rec, failingSource{})}
	_, err = hc3.Get(e.hs.URL + "/api/account")
	var te *apiclient.TokenError
	if !errors.As(err, &te) || te.Op != "token" || rec.count() != 0 {
		t.Errorf("failing source: %v, %d requests", err, rec.count())
	}
}

type failingSource struct{}

func (failingSource) Token(context.Context) (string, error) { return "", errors.New("vault sealed") }
func (failingSource) Renew(context.Context, string) (string, error) {
	return "", errors.New("vault sealed")
}

// TestFromOAuth2 adapts an x/oauth2 source: its token is sent; Renew can
// only offer a different token, which a static source does not have.
func TestFromOAuth2(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, grant := e.oauthToken(t)
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})
	c := newClient(t, e.hs.URL, apiclient.WithTokenSource(apiclient.FromOAuth2(ts)))
	ctx := context.Background()
	a, err := c.Account(ctx)
	if err != nil || a.ID != e.account.ID {
		t.Fatalf("Account with an OAuth token: %v", err)
	}
	if _, limit := c.CallLimit(); limit != 1_000_000 {
		t.Errorf("limit = %d", limit)
	}
	must(t, e.store.RevokeGrant(ctx, e.account.ID, grant.ID))
	if _, err := c.Account(ctx); !errors.Is(err, apiclient.ErrCannotRenew) || !apiclient.IsUnauthorized(err) {
		t.Errorf("revoked: %v, want ErrCannotRenew", err)
	}
}

func TestNewOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		opts []apiclient.Option
	}{
		{"help.example.com", nil},
		{"ftp://help.example.com", nil},
		{"https://help.example.com/?x=1", nil},
		{"https://help.example.com", []apiclient.Option{apiclient.WithAPIKey("a@b.c", "vak_x"), apiclient.WithTokenSource(apiclient.StaticToken("vak_x"))}},
		{"https://help.example.com", []apiclient.Option{apiclient.WithRetries(-1)}},
		{"https://help.example.com", []apiclient.Option{apiclient.WithHTTPClient(nil)}},
		{"https://help.example.com", []apiclient.Option{apiclient.WithAPIKey("a@b.c", "")}},
	} {
		if _, err := apiclient.New(tc.url, tc.opts...); err == nil {
			t.Errorf("New(%q, %d options) succeeded", tc.url, len(tc.opts))
		}
	}
	if _, err := apiclient.New("https://help.example.com/valet/", apiclient.WithUserAgent("hub/1")); err != nil {
		t.Errorf("New with a path: %v", err)
	}
}
