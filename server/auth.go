package server

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valethq/valet"
)

type credentialKey struct{}

// withCredential returns ctx carrying the credential of an API call.
func withCredential(ctx context.Context, c *valet.Credential) context.Context {
	return context.WithValue(ctx, credentialKey{}, c)
}

// credentialFrom returns the credential set by authenticate, or nil.
func credentialFrom(ctx context.Context) *valet.Credential {
	c, _ := ctx.Value(credentialKey{}).(*valet.Credential)
	return c
}

// authenticate resolves the Authorization header into a credential in the
// request context and the actor the stores record on events. It is a wrapper
// of its own so that everything after it (rate limit, scope, handler) can run
// with a credential injected directly, which is how the benchmark measures
// what authentication costs.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, presented, err := s.resolveCredential(r)
		if err != nil {
			if valet.ErrorCode(err) == valet.EUNAUTHORIZED {
				challenge := `Bearer realm="valet"`
				if presented {
					challenge += `, error="invalid_token"`
				}
				w.Header().Set("WWW-Authenticate", challenge)
			}
			s.writeError(w, r, err)
			return
		}
		switch cred.Kind {
		case valet.CredentialAPIKey:
			s.api.lastUsed.record(cred.ID, s.clock.Now())
		case valet.CredentialOAuth:
			s.api.grantsUsed.record(cred.GrantID, s.clock.Now())
		}
		ctx := withCredential(r.Context(), cred)
		ctx = valet.WithActor(ctx, valet.Actor{UserID: cred.UserID, AppID: cred.AppID})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// resolveCredential reads Authorization: "Bearer <vak_ or vat_>" or, as
// Gorgias does for private integrations, "Basic base64(email:vak_key)".
// presented reports whether the client sent something that looked like a
// credential, which decides the error= part of the challenge. It only reads
// (store.Authenticate writes nothing; last-used times are batched).
func (s *Server) resolveCredential(r *http.Request) (cred *valet.Credential, presented bool, err error) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return nil, false, valet.Errorf(valet.EUNAUTHORIZED, "An API key or access token is required.")
	}
	invalid := valet.Errorf(valet.EUNAUTHORIZED, "The API key or access token is invalid, expired or revoked.")
	scheme, rest, _ := strings.Cut(header, " ")
	rest = strings.TrimSpace(rest)
	var secret, email string
	basic := false
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		secret = rest
		if !valet.HasSecretPrefix(secret, valet.PrefixAPIKey) && !valet.HasSecretPrefix(secret, valet.PrefixAccessToken) {
			return nil, true, invalid
		}
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, true, invalid
		}
		var ok bool
		email, secret, ok = strings.Cut(string(raw), ":")
		// Basic carries API keys only: an OAuth token has no user email to
		// pair with, and accepting it here would add a second way to present it.
		if !ok || !valet.HasSecretPrefix(secret, valet.PrefixAPIKey) {
			return nil, true, invalid
		}
		basic = true
	default:
		return nil, true, invalid
	}
	// A real secret is ~47 characters; refusing long junk before hashing
	// keeps the header from being a free CPU lever.
	if len(secret) > 128 {
		return nil, true, invalid
	}
	cred, err = s.store.Authenticate(r.Context(), secret)
	if err != nil {
		if valet.ErrorCode(err) == valet.EUNAUTHORIZED {
			return nil, true, invalid
		}
		return nil, true, err
	}
	// The store checks expiry too; checking against the server's clock as
	// well keeps one notion of "now" for tests that move time.
	if !cred.ExpiresAt.IsZero() && !s.clock.Now().Before(cred.ExpiresAt) {
		return nil, true, invalid
	}
	if basic && valet.NormalizeEmail(email) != valet.NormalizeEmail(cred.UserEmail) {
		return nil, true, invalid
	}
	return cred, true, nil
}

// apiFunc is an API handler: the credential is resolved, rate-limited and
// scope-checked before it runs, and a returned error is answered by writeError.
type apiFunc func(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error

// authorized runs fn for the credential in the request context after
// charging the rate limit and checking scope. Rate limiting comes first so a
// client hammering a route it may not use is still slowed down.
// insufficientScope is the 403 of a credential without scope, with the
// RFC 6750 §3 challenge naming it.
func insufficientScope(w http.ResponseWriter, scope valet.Scope, msg string) error {
	w.Header().Set("WWW-Authenticate", `Bearer realm="valet", error="insufficient_scope", scope="`+string(scope)+`"`)
	return &valet.Error{Code: valet.ESCOPE, Message: msg, Fields: map[string][]string{"scope": {string(scope) + " is required"}}}
}

func (s *Server) authorized(scope valet.Scope, fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := credentialFrom(r.Context())
		if cred == nil {
			// Only reachable if a route is registered without authenticate.
			s.writeError(w, r, valet.Errorf(valet.EUNAUTHORIZED, "An API key or access token is required."))
			return
		}
		lim := s.cfg.APIKeyLimit
		if cred.Kind == valet.CredentialOAuth {
			lim = s.cfg.OAuthLimit
		}
		res := s.api.limiter.take(bucketKey{account: cred.AccountID, kind: cred.Kind}, lim)
		if res.limit > 0 {
			w.Header().Set("X-Valet-Account-Api-Call-Limit", strconv.Itoa(res.used)+"/"+strconv.Itoa(res.limit))
		}
		if !res.ok {
			secs := retryAfterSeconds(res.retry)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			s.writeError(w, r, valet.Errorf(valet.ERATELIMIT,
				"Too many requests: at most %d per %s for this account; retry in %d s.", lim.Requests, lim.Per, secs))
			return
		}
		if !cred.Scopes.Has(scope) {
			s.writeError(w, r, insufficientScope(w, scope, "This credential lacks the "+string(scope)+" scope."))
			return
		}
		if err := fn(w, r, cred); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// lastUsedBatch collects API keys' last-used times in memory so that
// authenticating writes nothing; flushLastUsed stores them in one call.
type lastUsedBatch struct {
	mu    sync.Mutex
	times map[int64]time.Time
}

func (b *lastUsedBatch) record(id int64, at time.Time) {
	b.mu.Lock()
	if b.times == nil {
		b.times = make(map[int64]time.Time)
	}
	if at.After(b.times[id]) {
		b.times[id] = at
	}
	b.mu.Unlock()
}

func (b *lastUsedBatch) take() map[int64]time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.times
	b.times = nil
	return m
}

// flushLastUsed writes the collected last-used times of API keys and
// grants. On failure they go back into their batch so the next flush
// retries them.
func (s *Server) flushLastUsed(ctx context.Context) error {
	return errors.Join(
		flushBatch(ctx, &s.api.lastUsed, s.store.TouchAPIKeys),
		flushBatch(ctx, &s.api.grantsUsed, s.store.TouchGrants))
}

func flushBatch(ctx context.Context, b *lastUsedBatch, touch func(context.Context, map[int64]time.Time) error) error {
	m := b.take()
	if len(m) == 0 {
		return nil
	}
	if err := touch(ctx, m); err != nil {
		for id, at := range m {
			b.record(id, at)
		}
		return err
	}
	return nil
}

// flushLoop flushes last-used times every interval until stop is closed.
func (s *Server) flushLoop(every time.Duration) {
	defer close(s.api.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.api.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			if err := s.flushLastUsed(ctx); err != nil {
				s.log.Error("flush last-used times", "err", err)
			}
			cancel()
		}
	}
}
