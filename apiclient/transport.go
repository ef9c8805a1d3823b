package apiclient

import (
	"context"
	"errors"
	"io"
	"net/http"

	"golang.org/x/oauth2"
)

// TokenSource gives the Bearer token of a connection and renews it when the
// API refuses it. Implementations must be safe for concurrent use.
type TokenSource interface {
	// Token returns the token to send (an OAuth access token vat_…, or an
	// API key vak_…).
	Token(ctx context.Context) (string, error)
	// Renew is called after the API answered 401 to stale. It returns the
	// token to retry with: a fresh one, renewing only if stale is still the
	// current token (so that many callers refused together renew once), or
	// an error when the connection cannot be renewed (the grant was
	// revoked, the refresh token was refused).
	Renew(ctx context.Context, stale string) (string, error)
}

// ErrCannotRenew is what StaticToken's and FromOAuth2's Renew return when
// they have no other token to offer.
var ErrCannotRenew = errors.New("apiclient: the token was refused and cannot be renewed")

// TokenError is a TokenSource's failure, as the client's calls return it:
// Op is "token" (Token failed) or "renew" (the API answered 401 and Renew
// failed). Err is the source's error, so errors.Is finds its sentinels.
type TokenError struct {
	Op  string
	Err error
}

func (e *TokenError) Error() string { return "apiclient: " + e.Op + ": " + e.Err.Error() }
func (e *TokenError) Unwrap() error { return e.Err }

// Transport is an http.RoundTripper that sends Source's token as
// "Authorization: Bearer" on every request and, when the answer is 401,
// calls Source.Renew once and repeats the request once with the renewed
// token. A request with a body is repeated only if its GetBody can replay
// the body (http.NewRequest sets it for bytes, strings and bytes.Buffer
// readers); otherwise the 401 is returned as is.
type Transport struct {
	Base   http.RoundTripper // nil: http.DefaultTransport
	Source TokenSource
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport sending through base (nil:
// http.DefaultTransport) with src's tokens, for an http.Client of one's own.
func NewTransport(base http.RoundTripper, src TokenSource) http.RoundTripper {
	return &Transport{Base: base, Source: src}
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// RoundTrip implements http.RoundTripper. It does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	tok, err := t.Source.Token(ctx)
	if err != nil {
		closeBody(req) // RoundTrip must close the body, even on errors
		return nil, &TokenError{Op: "token", Err: err}
	}
	res, err := t.base().RoundTrip(withToken(req, tok))
	if err != nil || res.StatusCode != http.StatusUnauthorized {
		return res, err
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.GetBody == nil {
		return res, nil
	}
	fresh, err := t.Source.Renew(ctx, tok)
	if err != nil {
		discard(res)
		return nil, &TokenError{Op: "renew", Err: err}
	}
	if fresh == tok {
		return res, nil // repeating the same request could only earn the same 401
	}
	retry := withToken(req, fresh)
	if hasBody {
		body, err := req.GetBody()
		if err != nil {
			discard(res)
			return nil, err
		}
		retry.Body = body
	}
	discard(res)
	return t.base().RoundTrip(retry)
}

// CloseIdleConnections closes the base transport's idle connections, so
// http.Client.CloseIdleConnections reaches them through a Transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base().(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// withToken returns a copy of req carrying tok (RoundTrippers must not
// change the request they are given).
func withToken(req *http.Request, tok string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// discard drains a little of an answer that will not be read and closes it,
// so its connection can carry the retry.
func discard(res *http.Response) {
	_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
	res.Body.Close()
}

// StaticToken is a TokenSource of one token that is never renewed: an API
// key sent as Bearer, or an access token a short script was given.
func StaticToken(tok string) TokenSource { return staticToken(tok) }

type staticToken string

func (s staticToken) Token(context.Context) (string, error) { return string(s), nil }

func (s staticToken) Renew(context.Context, string) (string, error) { return "", ErrCannotRenew }

// FromOAuth2 adapts a golang.org/x/oauth2 TokenSource, such as
// oauth2.Config.TokenSource (which refreshes the token before it expires),
// for simple apps. An oauth2.TokenSource cannot be told that a token was
// refused, so Renew asks it for a token again and fails with
// ErrCannotRenew when it offers the refused one: a token revoked before its
// expiry ends the connection, and the app should send its user through the
// authorization flow again.
func FromOAuth2(ts oauth2.TokenSource) TokenSource { return oauth2Source{ts} }

type oauth2Source struct{ ts oauth2.TokenSource }

func (s oauth2Source) Token(context.Context) (string, error) {
	t, err := s.ts.Token()
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

func (s oauth2Source) Renew(ctx context.Context, stale string) (string, error) {
	tok, err := s.Token(ctx)
	if err != nil {
		return "", err
	}
	if tok == stale {
		return "", ErrCannotRenew
	}
	return tok, nil
}
