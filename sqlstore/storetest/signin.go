package storetest

import (
	"testing"
	"time"

	"github.com/valethq/valet"
)

// RunSignInLimits runs the cases of ReserveSignIn and ReleaseSignIn
// against stores made by open, which returns a fresh store whose clock is
// clock.
func RunSignInLimits(t *testing.T, open func(tb testing.TB, clock valet.Clock) valet.Store) {
	limit := valet.SignInLimit{Attempts: 3, Per: time.Minute} // drains one per 20 s
	type step struct {
		advance time.Duration
		keys    []string
		release bool
		retry   time.Duration // what ReserveSignIn answers
	}
	cases := []struct {
		name  string
		limit valet.SignInLimit
		steps []step
	}{
		{"FullBucketRefusesUntilItDrains", limit, []step{
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}}, {keys: []string{"email:a"}},
			{keys: []string{"email:a"}, retry: 20 * time.Second},
			{advance: 5 * time.Second, keys: []string{"email:a"}, retry: 15 * time.Second},
			// A refused attempt takes nothing: after 20 s in all one fits.
			{advance: 15 * time.Second, keys: []string{"email:a"}},
			{keys: []string{"email:a"}, retry: 20 * time.Second},
		}},
		{"KeysAreSeparate", limit, []step{
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}}, {keys: []string{"email:a"}},
			{keys: []string{"email:b"}},
			{keys: []string{"addr:192.0.2.1"}},
		}},
		{"AllOrNothing", limit, []step{
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}}, {keys: []string{"email:a"}},
			// The full email bucket refuses the pair, and the address's
			// bucket keeps all its room.
			{keys: []string{"addr:192.0.2.1", "email:a"}, retry: 20 * time.Second},
			{keys: []string{"addr:192.0.2.1", "email:b"}}, {keys: []string{"addr:192.0.2.1", "email:c"}},
			{keys: []string{"addr:192.0.2.1", "email:d"}},
			{keys: []string{"addr:192.0.2.1", "email:e"}, retry: 20 * time.Second},
		}},
		{"ReleaseGivesBack", limit, []step{
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}}, {keys: []string{"email:a"}},
			{keys: []string{"email:a"}, release: true},
			{keys: []string{"email:a"}},
			{keys: []string{"email:a"}, retry: 20 * time.Second},
			// Releasing more than was taken never leaves credit.
			{keys: []string{"email:b"}, release: true}, {keys: []string{"email:b"}, release: true},
			{keys: []string{"email:b"}}, {keys: []string{"email:b"}}, {keys: []string{"email:b"}},
			{keys: []string{"email:b"}, retry: 20 * time.Second},
		}},
		{"RepeatedKeyCountsOnce", limit, []step{
			{keys: []string{"email:a", "email:a"}}, {keys: []string{"email:a", "email:a"}},
			{keys: []string{"email:a", "email:a"}},
			{keys: []string{"email:a"}, retry: 20 * time.Second},
		}},
		{"EmptyAfterAPeriod", limit, []step{
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}}, {keys: []string{"email:a"}},
			// An hour later the bucket is empty.
			{advance: time.Hour, keys: []string{"email:b"}},
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}}, {keys: []string{"email:a"}},
			{keys: []string{"email:a"}, retry: 20 * time.Second},
		}},
		// Transactions that overlap (PostgreSQL's writers, several nodes)
		// commit out of the order of their clocks: a bucket touched later
		// than a sign-in's own now neither fills nor drains by the
		// difference, and its time never goes back. Before, a release
		// with an earlier now added the gap's worth of attempts (so a
		// large limit refused everyone), and a reservation that followed
		// drained them back twice.
		{"AnEarlierClockNeitherFillsNorDrains", limit, []step{
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}}, {keys: []string{"email:a"}},
			{advance: -time.Minute, keys: []string{"email:a"}, release: true},
			{advance: 30 * time.Second, keys: []string{"email:a"}},
			{keys: []string{"email:a"}, retry: 20 * time.Second},
			{advance: 30 * time.Second, keys: []string{"email:a"}, retry: 20 * time.Second},
			{advance: 20 * time.Second, keys: []string{"email:a"}},
		}},
		{"NoLimit", valet.SignInLimit{}, []step{
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}}, {keys: []string{"email:a"}},
			{keys: []string{"email:a"}}, {keys: []string{"email:a"}, release: true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock()
			s := open(t, clock)
			for i, st := range c.steps {
				clock.Advance(st.advance)
				if st.release {
					must(t, s.ReleaseSignIn(ctx, st.keys, c.limit))
					continue
				}
				retry, err := s.ReserveSignIn(ctx, st.keys, c.limit)
				must(t, err)
				if retry != st.retry {
					t.Fatalf("step %d %v: retry %v, want %v", i, st.keys, retry, st.retry)
				}
			}
		})
	}
}
