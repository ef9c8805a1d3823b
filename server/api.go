package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valethq/valet"
)

// Tunables of the API that tests have no reason to change.
const (
	// maxBodyBytes bounds request bodies; larger ones are 413.
	maxBodyBytes = 1 << 20
	// lastUsedFlushEvery is how stale an API key's last-used time may get.
	lastUsedFlushEvery = 10 * time.Second
	// eventPollEvery is how often a long-polling /api/events re-reads the store.
	eventPollEvery = 200 * time.Millisecond
	// maxEventWait bounds wait= so a long poll stays under proxies' timeouts.
	maxEventWait = 30
)

// apiState is the API's shared state (rate limiter, last-used batcher).
type apiState struct {
	limiter    *limiter
	lastUsed   lastUsedBatch // API keys
	grantsUsed lastUsedBatch // OAuth grants
	// stop ends the flush loop and wakes long polls so shutdown is not held
	// up for their full wait; done closes when the flush loop has returned.
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// apiRoute is one /api endpoint and the scope it needs (DESIGN.md §2).
type apiRoute struct {
	method string
	path   string
	scope  valet.Scope
	fn     apiFunc
}

// apiRoutes is the API's routing table: one place shows every endpoint with
// its scope, and the scope test walks it.
func (s *Server) apiRoutes() []apiRoute {
	return []apiRoute{
		{"GET", "/api/account", valet.ScopeAccountRead, s.getAccount},

		{"GET", "/api/users", valet.ScopeUsersRead, s.listUsers},
		{"GET", "/api/users/{id}", valet.ScopeUsersRead, s.getUser},

		{"GET", "/api/customers", valet.ScopeCustomersRead, s.listCustomers},
		{"POST", "/api/customers", valet.ScopeCustomersWrite, s.createCustomer},
		{"GET", "/api/customers/{id}", valet.ScopeCustomersRead, s.getCustomer},
		{"PUT", "/api/customers/{id}", valet.ScopeCustomersWrite, s.updateCustomer},
		{"DELETE", "/api/customers/{id}", valet.ScopeCustomersWrite, s.deleteCustomer},

		{"GET", "/api/tickets", valet.ScopeTicketsRead, s.listTickets},
		{"POST", "/api/tickets", valet.ScopeTicketsWrite, s.createTicket},
		{"GET", "/api/tickets/{id}", valet.ScopeTicketsRead, s.getTicket},
		{"PUT", "/api/tickets/{id}", valet.ScopeTicketsWrite, s.updateTicket},
		{"DELETE", "/api/tickets/{id}", valet.ScopeTicketsWrite, s.deleteTicket},
		{"GET", "/api/tickets/{id}/messages", valet.ScopeTicketsRead, s.listMessages},
		{"POST", "/api/tickets/{id}/messages", valet.ScopeTicketsWrite, s.createMessage},
		{"GET", "/api/tickets/{id}/tags", valet.ScopeTicketsRead, s.listTicketTags},
		{"POST", "/api/tickets/{id}/tags", valet.ScopeTicketsWrite, s.addTicketTags},
		{"PUT", "/api/tickets/{id}/tags", valet.ScopeTicketsWrite, s.replaceTicketTags},
		{"DELETE", "/api/tickets/{id}/tags", valet.ScopeTicketsWrite, s.removeTicketTags},

		{"GET", "/api/events", valet.ScopeEventsRead, s.listEvents},

		{"GET", "/api/integrations", valet.ScopeIntegrationsRead, s.listIntegrations},
		{"POST", "/api/integrations", valet.ScopeIntegrationsWrite, s.createIntegration},
		{"GET", "/api/integrations/{id}", valet.ScopeIntegrationsRead, s.getIntegration},
		{"PUT", "/api/integrations/{id}", valet.ScopeIntegrationsWrite, s.updateIntegration},
		{"DELETE", "/api/integrations/{id}", valet.ScopeIntegrationsWrite, s.deleteIntegration},
		{"GET", "/api/integrations/{id}/deliveries", valet.ScopeIntegrationsRead, s.listDeliveries},
	}
}

// apiFallbackMethods are the methods the /api/ catch-all is registered for.
// It is registered per method rather than for all methods so it cannot
// conflict with a page route such as "GET /".
func apiFallbackMethods() []string { return []string{"GET", "POST", "PUT", "PATCH", "DELETE"} }

func (s *Server) registerAPI(mux *http.ServeMux) error {
	s.api = &apiState{limiter: newLimiter(s.clock), stop: make(chan struct{}), done: make(chan struct{})}
	for _, rt := range s.apiRoutes() {
		h := s.authenticate(s.authorized(rt.scope, rt.fn))
		mux.Handle(rt.method+" "+rt.path, h)
		// Gorgias's documented URIs end in a slash; accept both spellings
		// without a redirect, which clients would have to follow with the body.
		mux.Handle(rt.method+" "+rt.path+"/{$}", h)
	}
	fallback := func(w http.ResponseWriter, r *http.Request) { s.apiFallback(mux, w, r) }
	for _, m := range apiFallbackMethods() {
		mux.HandleFunc(m+" /api/", fallback)
	}
	go s.flushLoop(lastUsedFlushEvery)
	return nil
}

// closeAPI stops the flush loop, wakes long polls and writes the last batch
// of last-used times. It is safe to call more than once.
func (s *Server) closeAPI(ctx context.Context) error {
	if s.api == nil {
		return nil
	}
	s.api.closeOnce.Do(func() { close(s.api.stop) })
	select {
	case <-s.api.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.flushLastUsed(ctx)
}

// apiFallback answers JSON for /api paths no route matched: 405 with Allow
// when the path exists for another method, else 404.
func (s *Server) apiFallback(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range apiFallbackMethods() {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != m+" /api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		s.writeError(w, r, valet.Errorf(valet.ENOTFOUND, "No API endpoint at %s.", r.URL.Path))
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	// 405 is about HTTP routing, not a domain outcome, so it has no valet
	// error code and stays out of the StatusOf table.
	s.writeJSON(w, r, http.StatusMethodNotAllowed, errorBody{Error: errorDetail{
		Code: "method_not_allowed", Msg: r.Method + " is not allowed here; use " + strings.Join(allow, ", ") + "."}})
}

// pathID parses the {id} of a route. A malformed id names nothing that
// exists, so it is 404 like any other unknown id.
func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, valet.Errorf(valet.ENOTFOUND, "Not found.")
	}
	return id, nil
}

// decodeJSON decodes one strict JSON value from body.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// A second value (or trailing garbage) means the client sent something
	// other than what it thinks; refuse rather than silently ignore it.
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooLarge()
		}
		return valet.Invalid(map[string][]string{"body": {"must hold a single JSON value"}})
	}
	return nil
}

func tooLarge() error {
	return valet.Errorf(valet.ETOOLARGE, "The request body is larger than %d bytes.", maxBodyBytes)
}

// decodeError turns encoding/json's errors into EINVALID naming the field.
func decodeError(err error) error {
	var (
		tooBig    *http.MaxBytesError
		syntax    *json.SyntaxError
		typ       *json.UnmarshalTypeError
		valetErr  *valet.Error
		malformed = func(detail string) error {
			return valet.Invalid(map[string][]string{"body": {"is not valid JSON: " + detail}})
		}
	)
	switch {
	case errors.As(err, &tooBig):
		return tooLarge()
	case errors.As(err, &valetErr):
		return valetErr
	case errors.Is(err, io.EOF):
		return valet.Invalid(map[string][]string{"body": {"is required"}})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("unexpected end")
	case errors.As(err, &syntax):
		return malformed(syntax.Error() + " at offset " + strconv.FormatInt(syntax.Offset, 10))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return valet.Invalid(map[string][]string{field: {"must be " + jsonKind(typ.Type)}})
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if unq, err := strconv.Unquote(name); err == nil {
			name = unq
		}
		return valet.Invalid(map[string][]string{name: {"is not a known field"}})
	}
	return malformed(err.Error())
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t {
	case reflect.TypeFor[time.Time]():
		return "an RFC 3339 date-time string"
	case reflect.TypeFor[json.RawMessage]():
		return "a JSON value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another type"
}

// rejectNUL refuses a body holding an escaped NUL: PostgreSQL cannot store
// it in text, so letting it through would turn a client error into a 500.
// (Raw control characters cannot occur inside JSON strings.)
func rejectNUL(body []byte) error {
	if bytes.Contains(body, []byte(`\u0000`)) {
		return valet.Invalid(map[string][]string{"body": {"must not contain NUL characters"}})
	}
	return nil
}

// decode reads a JSON request body into v strictly: JSON content type (or
// none), at most maxBodyBytes, no escaped NULs, no unknown fields, exactly one
// value. Every failure is a client error naming what was wrong. The body is
// buffered (it is bounded) so the NUL check sees all of it.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return valet.Invalid(map[string][]string{"Content-Type": {"must be application/json"}})
		}
	}
	if r.ContentLength > maxBodyBytes {
		return tooLarge()
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooLarge()
		}
		return valet.Invalid(map[string][]string{"body": {"could not be read"}})
	}
	return decodeBytes(raw, v)
}

// decodeBytes decodes a whole body held in memory.
func decodeBytes(raw []byte, v any) error {
	if err := rejectNUL(raw); err != nil {
		return err
	}
	return decodeJSON(bytes.NewReader(raw), v)
}

// listMeta holds the cursors of a list's neighbouring pages (null at an end).
type listMeta struct {
	PrevCursor *string `json:"prev_cursor"`
	NextCursor *string `json:"next_cursor"`
}

// listBody is the list envelope of DESIGN.md §2, as Gorgias's.
type listBody[T any] struct {
	Data   []T      `json:"data"`
	Object string   `json:"object"`
	URI    string   `json:"uri"`
	Meta   listMeta `json:"meta"`
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// writeList answers one page of a list, mapping each row with view.
func writeList[T, V any](s *Server, w http.ResponseWriter, r *http.Request, page *valet.Page[T], view func(*T) V) {
	out := listBody[V]{Data: make([]V, len(page.Data)), Object: "list", URI: r.URL.RequestURI(),
		Meta: listMeta{PrevCursor: optString(page.PrevCursor), NextCursor: optString(page.NextCursor)}}
	for i := range page.Data {
		out.Data[i] = view(&page.Data[i])
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// query parses the query string strictly: url.Values would silently drop
// a malformed pair such as "cursor=%zz", and a client should learn its
// filter was not applied rather than get unfiltered rows.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, valet.Invalid(map[string][]string{"query": {"is not a valid query string"}})
	}
	// Every parameter takes one value (a list, like types, is one
	// comma-separated value): a repeated one is refused rather than
	// answered with its first value, which may not be the one meant.
	p := valet.Problems{}
	for name, vs := range q {
		if len(vs) > 1 {
			p.Add(name, "is given more than once; send it once")
		}
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return q, nil
}

// apiTime is a time.Time whose parse errors name the field: encoding/json
// reports time.Time's own errors without the field they came from.
type apiTime struct{ time.Time }

func (t *apiTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if err := t.Time.UnmarshalJSON(b); err != nil {
		return &json.UnmarshalTypeError{Value: "string", Type: reflect.TypeFor[time.Time]()}
	}
	return nil
}

// listOptions reads cursor, limit and order_by. The store validates the
// cursor against the order and the fields it can sort by; limit is checked
// here because "limit=abc" never reaches it as a number.
func listOptions(q url.Values, p valet.Problems) valet.ListOptions {
	opt := valet.ListOptions{Cursor: q.Get("cursor"), OrderBy: q.Get("order_by"), Limit: queryLimit(q, p)}
	if opt.Cursor != "" {
		if _, err := valet.ParseCursor(opt.Cursor); err != nil {
			p.Add("cursor", "is not a valid cursor")
		}
	}
	return opt
}

// queryLimit reads an optional limit, 1 to valet.MaxLimit; 0 when it is
// absent or wrong (a problem in p then).
func queryLimit(q url.Values, p valet.Problems) int {
	v := q.Get("limit")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > valet.MaxLimit {
		p.Add("limit", "must be an integer between 1 and "+strconv.Itoa(valet.MaxLimit))
		return 0
	}
	return n
}

// plainListOptions reads the cursor, limit and order_by of a list that
// has no filters of its own.
func plainListOptions(r *http.Request) (valet.ListOptions, error) {
	q, err := query(r)
	if err != nil {
		return valet.ListOptions{}, err
	}
	p := valet.Problems{}
	opt := listOptions(q, p)
	return opt, p.Err()
}

// queryID reads an optional positive id filter.
func queryID(q url.Values, name string, p valet.Problems) int64 {
	v := q.Get(name)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		p.Add(name, "must be a positive integer")
		return 0
	}
	return n
}

// etag is a resource version for If-Match: its update time, which every
// change moves forward (to the microsecond the stores keep).
func etag(updated time.Time) string {
	return `W/"` + strconv.FormatInt(updated.UnixMicro(), 10) + `"`
}

// checkPrecondition refuses an update whose If-Match or body
// updated_datetime names another version than the stored one. Called inside
// the store's update closure, so the check and the write are one transaction.
func checkPrecondition(ifMatch string, bodyUpdated *apiTime, current time.Time) error {
	stale := valet.Errorf(valet.EPRECONDITION, "The resource was changed since you read it; fetch it again and retry.")
	if ifMatch = strings.TrimSpace(ifMatch); ifMatch != "" && ifMatch != "*" {
		want := strings.TrimPrefix(etag(current), "W/")
		match := false
		for tag := range strings.SplitSeq(ifMatch, ",") {
			// Weak comparison: the W/ prefix does not matter (RFC 9110 8.8.3.2).
			if strings.TrimPrefix(strings.TrimSpace(tag), "W/") == want {
				match = true
				break
			}
		}
		if !match {
			return stale
		}
	}
	if bodyUpdated != nil && !bodyUpdated.Equal(current) {
		return stale
	}
	return nil
}

// notModified answers 304 when If-None-Match names the current version,
// so pollers of one object cost a header exchange.
func notModified(w http.ResponseWriter, r *http.Request, tag string) bool {
	inm := r.Header.Get("If-None-Match")
	if inm == "" {
		return false
	}
	want := strings.TrimPrefix(tag, "W/")
	for t := range strings.SplitSeq(inm, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			w.Header().Set("ETag", tag)
			w.WriteHeader(http.StatusNotModified)
			return true
		}
	}
	return false
}

// created answers 201 with the new object and its Location.
func (s *Server) created(w http.ResponseWriter, r *http.Request, uri string, v any) {
	if uri != "" {
		w.Header().Set("Location", uri)
	}
	s.writeJSON(w, r, http.StatusCreated, v)
}
