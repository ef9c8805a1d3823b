package seed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/valethq/valet"
)

// TicketImporter bulk-loads tickets without events or messages; the
// sqlstore.Store has it. A small interface here keeps seed free of database
// packages.
type TicketImporter interface {
	ImportTickets(ctx context.Context, accountID int64, tickets []*valet.Ticket) error
}

// bulkDays is the history bulk tickets are spread over.
const bulkDays = 365

// Tickets bulk-loads n tickets into the account for benchmarks: subjects,
// excerpts, tags, statuses (a quarter open), priorities, channels and
// datetimes as Demo's, spread evenly over the year before now and oldest
// first, so ids follow created_datetime as they would in a real helpdesk.
// Customers are drawn from customerIDs (which must exist in the account);
// tickets are assigned to WithAssignees users when given. The tickets have
// an excerpt but no messages and no events: they exist to be listed.
// Batches of WithBatchSize tickets go to dst, one ImportTickets call each.
// Errors: EINVALID (no customers, n < 0), or dst's.
func Tickets(ctx context.Context, dst TicketImporter, accountID int64, customerIDs []int64, n int, opts ...Option) error {
	const op = "seed.Tickets"
	if len(customerIDs) == 0 || n < 0 {
		return &valet.Error{Code: valet.EINVALID, Op: op, Message: "Tickets needs customers and n >= 0."}
	}
	o := newOptions(opts)
	rng := rand.New(rand.NewPCG(1000000, 2026))
	start := o.now.Add(-bulkDays * 24 * time.Hour)
	step := time.Duration(0)
	if n > 0 {
		step = bulkDays * 24 * time.Hour / time.Duration(n)
	}
	batch := make([]*valet.Ticket, 0, o.batch)
	for i := range n {
		created := start.Add(time.Duration(i) * step).Truncate(time.Microsecond)
		batch = append(batch, bulkTicket(rng, accountID, customerIDs, o.assignees, created, o.now))
		if len(batch) == o.batch || i == n-1 {
			if err := dst.ImportTickets(ctx, accountID, batch); err != nil {
				return &valet.Error{Code: valet.ErrorCode(err), Op: op, Message: fmt.Sprintf("importing tickets %d-%d failed", i+1-len(batch), i), Err: err}
			}
			if o.progress != nil {
				o.progress(i + 1)
			}
			batch = batch[:0]
		}
	}
	return nil
}

func bulkTicket(rng *rand.Rand, accountID int64, customerIDs, assignees []int64, created, now time.Time) *valet.Ticket {
	sc := &scenarios[rng.IntN(len(scenarios))]
	f := bulkFiller(rng)
	updated := created.Add(time.Duration(rng.Int64N(int64(72 * time.Hour))))
	if updated.After(now) {
		updated = now
	}
	channel := ticketChannels[weighted(rng, channelWeights)]
	t := &valet.Ticket{
		AccountID:       accountID,
		Subject:         f.fill(pick(rng, sc.subjects)),
		Status:          valet.StatusOpen,
		Priority:        valet.Priorities[weighted(rng, priorityMix)],
		Channel:         channel,
		Via:             channel,
		Customer:        valet.PersonRef{ID: customerIDs[rng.IntN(len(customerIDs))]},
		Excerpt:         valet.Excerpt(f.fill(pick(rng, sc.opening))),
		Tags:            []valet.Tag{{Name: sc.tags[0]}},
		CreatedDatetime: created,
		UpdatedDatetime: updated,
		OpenedDatetime:  &created,
	}
	if rng.IntN(4) > 0 {
		t.Status = valet.StatusClosed
		closed := updated
		t.ClosedDatetime = &closed
	}
	if len(assignees) > 0 && rng.IntN(10) > 0 {
		t.AssigneeUser = &valet.PersonRef{ID: assignees[rng.IntN(len(assignees))]}
	}
	return t
}

// bulkFiller fills placeholders with a made-up first name: Tickets is given
// customer ids only, and nobody reads a benchmark ticket's greeting.
func bulkFiller(rng *rand.Rand) filler {
	return newFiller(rng, demoCustomer{first: pick(rng, firstNames), currency: "USD"},
		DemoUser{Name: people[1+rng.IntN(2)].name}, time.Unix(1_790_000_000+rng.Int64N(30_000_000), 0).UTC())
}
