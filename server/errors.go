package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/valethq/valet"
)

// StatusOf returns the HTTP status for err (valet.HTTPStatus of its code):
// nil is 200; an error without a valet code is 500.
func StatusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	return valet.HTTPStatus(valet.ErrorCode(err))
}

// defaultMessage is the text shown when an error carries none of its own.
func defaultMessage(code string) string {
	switch code {
	case valet.EINVALID:
		return "The request is invalid."
	case valet.EUNAUTHORIZED:
		return "A valid API key or access token is required."
	case valet.EFORBIDDEN:
		return "You may not do this."
	case valet.ESCOPE:
		return "The credential lacks the scope this needs."
	case valet.ENOTFOUND:
		return "Not found."
	case valet.ECONFLICT:
		return "The request conflicts with existing data."
	case valet.EPRECONDITION:
		return "The resource was changed since it was read."
	case valet.ETOOLARGE:
		return "The request body is too large."
	case valet.ERATELIMIT:
		return "Too many requests."
	default:
		return "An internal error occurred."
	}
}

// errorBody is the JSON error shape of DESIGN.md §2, as Gorgias's.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code string              `json:"code"`
	Msg  string              `json:"msg"`
	Data map[string][]string `json:"data,omitempty"`
}

// describeError turns err into what a client may see and logs what it may
// not: an internal error's cause goes to the log with the request id and the
// client gets only the id to quote.
func (s *Server) describeError(ctx context.Context, err error) (int, errorDetail) {
	code := valet.ErrorCode(err)
	status := valet.HTTPStatus(code)
	d := errorDetail{Code: code, Msg: valet.ErrorMessage(err), Data: valet.ErrorFields(err)}
	if status == http.StatusInternalServerError {
		id := RequestID(ctx)
		s.log.ErrorContext(ctx, "internal error", "err", err, "request_id", id)
		d = errorDetail{Code: valet.EINTERNAL, Msg: "An internal error occurred (request " + id + ")."}
	} else if d.Msg == "" {
		d.Msg = defaultMessage(code)
	}
	return status, d
}

// writeError is the API's one error path.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, d := s.describeError(r.Context(), err)
	if status < 500 {
		s.log.DebugContext(r.Context(), "api error", "status", status, "err", err, "request_id", RequestID(r.Context()))
	}
	s.writeJSON(w, r, status, errorBody{Error: d})
}

// writeJSON encodes v with status. Encoding into memory first means a value
// that fails to encode becomes a clean 500 instead of half a body. HTML is
// not escaped: answers are application/json with nosniff, and body_html
// should read as HTML to API clients, not as \u003cp\u003e.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		s.log.ErrorContext(r.Context(), "encode response", "err", err, "request_id", RequestID(r.Context()))
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal_error","msg":"An internal error occurred."}}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
