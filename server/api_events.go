package server

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valethq/valet"
)

// eventsMeta is the meta of GET /api/events. The feed is read by position,
// not by page: last_id is the after= to pass next time (the request's own
// after when nothing came), and next_cursor is set, to the same id, only
// when the page was full so more may be waiting — a client following
// next_cursor until null stops at the end like on any other list.
type eventsMeta struct {
	PrevCursor *string `json:"prev_cursor"`
	NextCursor *string `json:"next_cursor"`
	LastID     int64   `json:"last_id"`
}

type eventsBody struct {
	Data   []valet.Event `json:"data"`
	Object string        `json:"object"`
	URI    string        `json:"uri"`
	Meta   eventsMeta    `json:"meta"`
}

// eventQuery is a validated GET /api/events request.
type eventQuery struct {
	filter valet.EventFilter
	wait   time.Duration
}

// parseEventQuery reads after (or cursor, its alias from next_cursor), types
// (comma-separated), limit and wait (seconds, at most maxEventWait).
func parseEventQuery(q url.Values) (eventQuery, error) {
	p := valet.Problems{}
	var eq eventQuery
	field, after := "after", q.Get("after")
	switch cursor := q.Get("cursor"); {
	case cursor != "" && after != "":
		p.Add("cursor", "is the same as after: send one of them")
	case cursor != "":
		field, after = "cursor", cursor
	}
	if after != "" {
		n, err := strconv.ParseInt(after, 10, 64)
		if err != nil || n < 0 {
			p.Add(field, "must be an event id (a non-negative integer)")
		}
		eq.filter.After = n
	}
	if types := q.Get("types"); types != "" {
		for t := range strings.SplitSeq(types, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !slices.Contains(valet.EventTypes, t) {
				p.Add("types", "unknown event type "+strconv.Quote(t)+"; known: "+strings.Join(valet.EventTypes, ", "))
				continue
			}
			eq.filter.Types = append(eq.filter.Types, t)
		}
	}
	// The feed has one order, oldest first by id; another is refused, not
	// ignored, so a client never reads the feed backwards unawares.
	if v := q.Get("order_by"); v != "" && v != "id" && v != "id:asc" {
		p.Add("order_by", "events come oldest first by id: order_by may only be id or id:asc")
	}
	eq.filter.Limit = valet.DefaultLimit
	if n := queryLimit(q, p); n > 0 {
		eq.filter.Limit = n
	}
	if v := q.Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxEventWait {
			p.Add("wait", "must be a number of seconds between 0 and "+strconv.Itoa(maxEventWait))
		}
		eq.wait = time.Duration(n) * time.Second
	}
	return eq, p.Err()
}

// listEvents serves GET /api/events. With wait=N it long-polls: when no
// event is there yet it re-reads the store every eventPollEvery until one
// arrives, the wait ends, the client leaves or the server shuts down. Polling
// the store (rather than a notifier fed by this node's writes) also sees
// events written by other nodes and by the CLI.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	eq, err := parseEventQuery(q)
	if err != nil {
		return err
	}
	ctx := r.Context()
	deadline := time.Now().Add(eq.wait)
	var events []valet.Event
	for {
		events, err = s.store.ListEvents(ctx, cred.AccountID, eq.filter)
		if err != nil {
			if ctx.Err() != nil {
				return nil // the client left; there is no one to answer
			}
			return err
		}
		left := time.Until(deadline)
		if len(events) > 0 || left <= 0 {
			break
		}
		t := time.NewTimer(min(eventPollEvery, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.api.stop:
			t.Stop()
			deadline = time.Now() // answer what we have so shutdown is not held up
		case <-t.C:
		}
	}
	if events == nil {
		events = []valet.Event{}
	}
	for i := range events {
		if !cred.Scopes.Has(valet.EventReadScope(events[i].Type)) {
			events[i].Data = nil // the object is for the scope that reads it
		}
	}
	meta := eventsMeta{LastID: eq.filter.After}
	if n := len(events); n > 0 {
		meta.LastID = events[n-1].ID
		if n >= eq.filter.Limit {
			meta.NextCursor = optString(strconv.FormatInt(meta.LastID, 10))
		}
	}
	s.writeJSON(w, r, http.StatusOK, eventsBody{Data: events, Object: "list", URI: r.URL.RequestURI(), Meta: meta})
	return nil
}
