package seed

import (
	"sync/atomic"
	"time"

	"github.com/valethq/valet"
)

// Clock is a valet.Clock the seeder can move back in time. Give it to the
// store before seeding (the store stamps rows and events with its clock) and
// to Demo with WithClock: the seeded tickets, messages and events then carry
// datetimes spread over the last weeks instead of all being "just now".
// When not moved it is the wall clock, so the same store keeps serving with
// real times once seeding is done.
type Clock struct {
	at atomic.Pointer[time.Time]
}

var _ valet.Clock = (*Clock)(nil)

// Now returns the time set with Set, or the wall clock.
func (c *Clock) Now() time.Time {
	if t := c.at.Load(); t != nil {
		return *t
	}
	return valet.SystemClock{}.Now()
}

// Set makes Now return t until Reset.
func (c *Clock) Set(t time.Time) {
	t = t.UTC().Truncate(time.Microsecond)
	c.at.Store(&t)
}

// Reset returns the clock to wall time.
func (c *Clock) Reset() { c.at.Store(nil) }
