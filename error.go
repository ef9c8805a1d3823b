package valet

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes. Each maps to exactly one HTTP status (HTTPStatus).
const (
	ECONFLICT     = "conflict"            // 409: a unique value is taken
	EINTERNAL     = "internal_error"      // 500
	EINVALID      = "invalid"             // 400: validation failed
	ENOTFOUND     = "not_found"           // 404: absent, or in another account
	EUNAUTHORIZED = "unauthorized"        // 401: no valid credential
	EFORBIDDEN    = "forbidden"           // 403: the person or app may not do this (role, ownership, CSRF)
	ESCOPE        = "insufficient_scope"  // 403: the credential lacks a scope (RFC 6750 §3.1)
	EPRECONDITION = "precondition_failed" // 412: stale If-Match / updated_datetime
	ETOOLARGE     = "request_too_large"   // 413
	ERATELIMIT    = "rate_limited"        // 429
)

// HTTPStatus is THE table from error codes to HTTP statuses: the helpdesk's
// API and pages and the hub's pages all answer through it, so a code never
// means two statuses. Unknown codes are 500, so a forgotten mapping fails
// loudly rather than leaking as a success.
func HTTPStatus(code string) int {
	switch code {
	case EINVALID:
		return http.StatusBadRequest
	case EUNAUTHORIZED:
		return http.StatusUnauthorized
	case EFORBIDDEN, ESCOPE:
		return http.StatusForbidden
	case ENOTFOUND:
		return http.StatusNotFound
	case ECONFLICT:
		return http.StatusConflict
	case EPRECONDITION:
		return http.StatusPreconditionFailed
	case ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case ERATELIMIT:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// Error is valet's error. Message is the only text shown to a user; Op and Err
// are for logs.
type Error struct {
	Code    string
	Message string
	Op      string
	Err     error
	// Fields lists problems per input field for EINVALID.
	Fields map[string][]string
}

func (e *Error) Error() string {
	s := e.Code
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with a code and a user-facing message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an EINVALID error carrying per-field problems.
func Invalid(fields map[string][]string) *Error {
	return &Error{Code: EINVALID, Message: "Some fields are invalid.", Fields: fields}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err; internal errors get a
// generic text so nothing leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	if ErrorCode(err) == EINTERNAL {
		return "An internal error occurred."
	}
	return ""
}

// ErrorFields returns the per-field problems of an EINVALID error.
func ErrorFields(err error) map[string][]string {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// Problems collects validation problems per field.
type Problems map[string][]string

// Add records a problem with field.
func (p Problems) Add(field, problem string) { p[field] = append(p[field], problem) }

// Err returns an EINVALID error if any problem was recorded, or nil.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return Invalid(p)
}
