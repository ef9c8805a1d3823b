package apiclient

import (
	"context"
	"iter"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valethq/valet"
)

// MaxEventWait is the longest long poll the API grants.
const MaxEventWait = 30 * time.Second

// EventListOptions select events of GET /api/events. The feed is read by
// position: events with an ID greater than After, in ID order.
type EventListOptions struct {
	After    int64    // 0: from the start
	Types    []string // event types (valet.EventTypes); empty: all
	PageSize int      // 1-100; 0 means 100
	// Wait makes the request a long poll: when no event is there yet, the
	// server waits up to Wait (whole seconds, at most MaxEventWait) for one.
	// The iterator waits only for its first page.
	Wait time.Duration
}

func (o EventListOptions) query(after int64, wait time.Duration) url.Values {
	q := listQuery("", o.PageSize, "")
	q.Set("after", strconv.FormatInt(after, 10))
	if len(o.Types) > 0 {
		q.Set("types", strings.Join(o.Types, ","))
	}
	if wait > 0 {
		secs := min(int((wait+time.Second-1)/time.Second), int(MaxEventWait/time.Second))
		q.Set("wait", strconv.Itoa(secs))
	}
	return q
}

// EventPage is one answer of the event feed.
type EventPage struct {
	Events []valet.Event
	// LastID is the After to send next time (the request's own After when
	// nothing came).
	LastID int64
	// More is true when the page was full, so more events may be waiting.
	More bool
}

// EventsPage reads one page of the feed (events:read). A consumer loop:
//
//	after := saved
//	for {
//		p, err := c.EventsPage(ctx, apiclient.EventListOptions{After: after, Wait: 25 * time.Second})
//		if err != nil {
//			return err
//		}
//		handle(p.Events)
//		after = p.LastID // and save it
//	}
func (c *Client) EventsPage(ctx context.Context, opts EventListOptions) (*EventPage, error) {
	return c.eventsPage(ctx, opts, opts.After, opts.Wait)
}

func (c *Client) eventsPage(ctx context.Context, opts EventListOptions, after int64, wait time.Duration) (*EventPage, error) {
	var body listBody[valet.Event]
	if err := c.get(ctx, "/api/events", opts.query(after, wait), &body); err != nil {
		return nil, err
	}
	return &EventPage{Events: body.Data, LastID: body.Meta.LastID, More: body.Meta.NextCursor != nil}, nil
}

// Events iterates the feed from opts.After to its current end
// (events:read).
func (c *Client) Events(ctx context.Context, opts EventListOptions) iter.Seq2[valet.Event, error] {
	return func(yield func(valet.Event, error) bool) {
		after, wait := opts.After, opts.Wait
		for {
			p, err := c.eventsPage(ctx, opts, after, wait)
			if err != nil {
				yield(valet.Event{}, err)
				return
			}
			for _, e := range p.Events {
				if !yield(e, nil) {
					return
				}
			}
			if !p.More || p.LastID <= after {
				return
			}
			after, wait = p.LastID, 0
		}
	}
}
