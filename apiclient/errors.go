package apiclient

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Error codes of the API's error answers (docs/api.md, Errors).
const (
	CodeInvalid            = "invalid"
	CodeUnauthorized       = "unauthorized"
	CodeInsufficientScope  = "insufficient_scope" // the credential lacks a scope (Fields["scope"] names it)
	CodeForbidden          = "forbidden"          // the person or app behind the credential may not do this
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeConflict           = "conflict"
	CodePreconditionFailed = "precondition_failed"
	CodeRequestTooLarge    = "request_too_large"
	CodeRateLimited        = "rate_limited"
	CodeInternal           = "internal_error"
)

// Error is an API answer other than 2xx, parsed from its
// {"error": {"code", "msg", "data"}} body.
type Error struct {
	StatusCode int
	Code       string              // one of the Code constants; "" when the body was not the API's (a proxy's page)
	Message    string              // meant for people
	Fields     map[string][]string // problems per input field (400), or the missing scope (403)
	// RetryAfter is the answer's Retry-After (429, sometimes 503), 0 if none.
	RetryAfter time.Duration
	// RequestID is the server's X-Request-Id, to quote to its operators.
	RequestID string

	Method, Path string // the request that failed
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("apiclient: ")
	b.WriteString(e.Method + " " + e.Path + ": ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if len(e.Fields) > 0 {
		names := make([]string, 0, len(e.Fields))
		for f := range e.Fields {
			names = append(names, f)
		}
		sort.Strings(names)
		b.WriteString(" (")
		for i, f := range names {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(f + ": " + strings.Join(e.Fields[f], ", "))
		}
		b.WriteString(")")
	}
	return b.String()
}

// parseError reads an error answer. A body that is not the API's shape
// (an HTML page of a proxy) still gives an Error with the status.
func parseError(method, path string, res *http.Response) *Error {
	e := &Error{StatusCode: res.StatusCode, Method: method, Path: path,
		RequestID: res.Header.Get("X-Request-Id"), RetryAfter: parseRetryAfter(res.Header.Get("Retry-After"))}
	var body struct {
		Error struct {
			Code string              `json:"code"`
			Msg  string              `json:"msg"`
			Data map[string][]string `json:"data"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if json.Unmarshal(raw, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message, e.Fields = body.Error.Code, body.Error.Msg, body.Error.Data
	} else {
		e.Message = http.StatusText(res.StatusCode)
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 10.2.3).
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// StatusCode returns the HTTP status of an *Error in err's chain, or 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports a 404: no such row in the credential's account (rows
// of other accounts included).
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsUnauthorized reports that the credential was refused (401) and, with a
// TokenSource, could not be renewed, or that the TokenSource failed to give
// a token at all (a *TokenError).
func IsUnauthorized(err error) bool {
	var te *TokenError
	return StatusCode(err) == http.StatusUnauthorized || errors.As(err, &te)
}

// IsForbidden reports a 403: the credential lacks a scope the request needs
// (Code CodeInsufficientScope), or the person or app behind it may not do
// this (CodeForbidden).
func IsForbidden(err error) bool { return StatusCode(err) == http.StatusForbidden }

// IsInvalid reports a 400: the request was malformed or failed validation;
// the *Error's Fields say which inputs.
func IsInvalid(err error) bool { return StatusCode(err) == http.StatusBadRequest }

// IsConflict reports a 409: a unique value taken, or a customer with tickets.
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// IsPreconditionFailed reports a 412: the row changed since the ETag given
// as IfMatch was read.
func IsPreconditionFailed(err error) bool {
	return StatusCode(err) == http.StatusPreconditionFailed
}

// IsRateLimited reports a 429 the client did not (or could no longer) wait out.
func IsRateLimited(err error) bool { return StatusCode(err) == http.StatusTooManyRequests }
