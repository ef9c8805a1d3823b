package seed

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
)

// The demo account and the password every demo user signs in with. They are
// printed by `valet demo`; a demo database is not meant to hold real data.
const (
	DemoAccount     = "acme"
	DemoDisplayName = "Acme Outfitters"
	DemoPassword    = "valet-demo"
)

// Sizes of the demo helpdesk.
const (
	demoCustomers = 50
	demoTickets   = 300
	demoDays      = 90
)

// Info describes a seeded demo account: what `valet demo` prints.
type Info struct {
	Account   valet.Account `json:"account"`
	Users     []DemoUser    `json:"users"`
	Customers int           `json:"customers,omitempty"`
	Tickets   int           `json:"tickets,omitempty"`
	Messages  int           `json:"messages,omitempty"`
	// APIKey is a fresh key of the owner with every API scope. Its secret
	// exists only here; the store keeps a hash.
	APIKey *DemoAPIKey `json:"api_key,omitempty"`
}

// DemoUser is a member of the demo account with its sign-in details.
type DemoUser struct {
	ID       int64      `json:"id"`
	Email    string     `json:"email"`
	Name     string     `json:"name"`
	Role     valet.Role `json:"role"`
	Password string     `json:"password"`
}

// DemoAPIKey is an API key with its secret and the header that uses it.
type DemoAPIKey struct {
	ID     int64          `json:"id"`
	Secret string         `json:"secret"`
	Scopes valet.ScopeSet `json:"scopes"`
	// BasicAuth is "Basic base64(email:secret)", the Gorgias-style header.
	BasicAuth string `json:"basic_auth"`
}

// Owner returns the demo account's owner.
func (i *Info) Owner() DemoUser { return i.Users[0] }

// Option changes how Demo and Tickets seed.
type Option func(*options)

type options struct {
	clock     *Clock
	now       time.Time
	hash      passwd.Params
	batch     int
	progress  func(done int)
	assignees []int64
}

// WithClock lets Demo move the store's clock (see Clock) so seeded rows get
// past datetimes. The store must have been opened with the same clock.
func WithClock(c *Clock) Option { return func(o *options) { o.clock = c } }

// WithNow sets the moment the seeded history ends (default: the clock's now).
func WithNow(t time.Time) Option { return func(o *options) { o.now = t.UTC() } }

// WithPasswordParams sets argon2id's cost for the demo users (tests make it cheap).
func WithPasswordParams(p passwd.Params) Option { return func(o *options) { o.hash = p } }

// WithBatchSize sets how many tickets Tickets imports per call (default 5000).
func WithBatchSize(n int) Option { return func(o *options) { o.batch = n } }

// WithProgress is called by Tickets after each batch with the count so far.
func WithProgress(f func(done int)) Option { return func(o *options) { o.progress = f } }

// WithAssignees gives Tickets user ids to assign most tickets to.
func WithAssignees(userIDs ...int64) Option { return func(o *options) { o.assignees = userIDs } }

func newOptions(opts []Option) *options {
	o := &options{hash: passwd.Default, batch: 5000}
	for _, opt := range opts {
		opt(o)
	}
	if o.now.IsZero() {
		if o.clock != nil {
			o.now = o.clock.Now()
		} else {
			o.now = valet.SystemClock{}.Now()
		}
	}
	return o
}

// at moves the store's clock, when Demo was given one, to t.
func (o *options) at(t time.Time) {
	if o.clock != nil {
		o.clock.Set(t)
	}
}

// EnsureDemo returns the demo account, seeding it with Demo if the store
// has no account named acme. On an already seeded store it issues a fresh
// owner API key, since the earlier ones' secrets are gone. seeded tells
// which happened.
func EnsureDemo(ctx context.Context, store valet.Store, opts ...Option) (info *Info, seeded bool, err error) {
	const op = "seed.EnsureDemo"
	acct, err := store.FindAccountByName(ctx, DemoAccount)
	if valet.ErrorCode(err) == valet.ENOTFOUND {
		info, err := Demo(ctx, store, opts...)
		return info, err == nil, err
	}
	if err != nil {
		return nil, false, &valet.Error{Code: valet.ErrorCode(err), Op: op, Err: err}
	}
	info = &Info{Account: *acct}
	for _, p := range people {
		u, err := store.FindUserByEmail(ctx, p.email)
		if err != nil {
			return nil, false, &valet.Error{Code: valet.ErrorCode(err), Op: op, Message: "the demo user " + p.email + " is missing", Err: err}
		}
		info.Users = append(info.Users, DemoUser{ID: u.ID, Email: u.Email, Name: u.Name, Role: valet.Role(p.role), Password: DemoPassword})
	}
	if info.APIKey, err = createDemoKey(ctx, store, acct.ID, info.Owner()); err != nil {
		return nil, false, err
	}
	return info, false, nil
}

// Demo seeds the demo helpdesk: the account acme ("Acme Outfitters"), its
// owner and two agents (password DemoPassword), 50 customers and 300 tickets
// with conversations of one to six messages spread over the last 90 days,
// and an owner API key. The content is the same on every run; only the
// datetimes follow the clock (and messages that would lie in the future are
// left out). Each store call is its own transaction, as
// everywhere, so a failure part-way leaves a partial account.
// Errors: ECONFLICT (the account or a demo user exists), or the store's.
func Demo(ctx context.Context, store valet.Store, opts ...Option) (*Info, error) {
	const op = "seed.Demo"
	o := newOptions(opts)
	if o.clock != nil {
		defer o.clock.Reset()
	}
	rng := rand.New(rand.NewPCG(2026, 1128))
	start := o.now.Add(-demoDays * 24 * time.Hour)
	wrap := func(err error) error {
		return &valet.Error{Code: valet.ErrorCode(err), Message: valet.ErrorMessage(err), Op: op, Err: err}
	}

	// The team exists for a while before the first ticket in the window.
	o.at(start.Add(-400 * 24 * time.Hour))
	acct := &valet.Account{Name: DemoAccount, DisplayName: DemoDisplayName}
	if err := store.CreateAccount(ctx, acct); err != nil {
		return nil, wrap(err)
	}
	info := &Info{Account: *acct}
	for _, p := range people {
		hash, err := o.hash.Hash(DemoPassword)
		if err != nil {
			return nil, wrap(err)
		}
		u := &valet.User{Email: p.email, Name: p.name, PasswordHash: hash}
		if err := store.CreateUser(ctx, u); err != nil {
			return nil, wrap(err)
		}
		if err := store.AddMember(ctx, acct.ID, u.ID, valet.Role(p.role)); err != nil {
			return nil, wrap(err)
		}
		info.Users = append(info.Users, DemoUser{ID: u.ID, Email: u.Email, Name: u.Name, Role: valet.Role(p.role), Password: DemoPassword})
	}

	customers, err := seedCustomers(ctx, store, acct.ID, rng, start, o)
	if err != nil {
		return nil, wrap(err)
	}
	info.Customers = len(customers)

	plans := planTickets(rng, customers, info.Users, start, o.now)
	for _, p := range plans {
		n, err := p.create(ctx, store, acct.ID, o)
		if err != nil {
			return nil, wrap(err)
		}
		info.Tickets++
		info.Messages += n
	}

	if o.clock != nil {
		o.clock.Reset()
	}
	if info.APIKey, err = createDemoKey(ctx, store, acct.ID, info.Owner()); err != nil {
		return nil, err
	}
	return info, nil
}

func createDemoKey(ctx context.Context, store valet.Store, accountID int64, owner DemoUser) (*DemoAPIKey, error) {
	k := &valet.APIKey{AccountID: accountID, UserID: owner.ID, Name: "Demo key (valet demo)", Scopes: valet.APIScopes()}
	secret, err := store.CreateAPIKey(ctx, k)
	if err != nil {
		return nil, &valet.Error{Code: valet.ErrorCode(err), Op: "seed.createDemoKey", Err: err}
	}
	basic := base64.StdEncoding.EncodeToString([]byte(owner.Email + ":" + secret))
	return &DemoAPIKey{ID: k.ID, Secret: secret, Scopes: k.Scopes, BasicAuth: "Basic " + basic}, nil
}

// demoCustomer is a seeded customer with what conversations need of it.
type demoCustomer struct {
	ref      valet.PersonRef
	first    string
	currency string
	vip      bool
	weight   int // how often this customer writes in
}

func seedCustomers(ctx context.Context, store valet.Store, accountID int64, rng *rand.Rand, start time.Time, o *options) ([]demoCustomer, error) {
	var out []demoCustomer
	lastOrder := 10000
	for i := range demoCustomers {
		first := firstNames[i%len(firstNames)]
		last := lastNames[(i*7+3)%len(lastNames)]
		loc := locales[weighted(rng, []int{55, 15, 12, 10, 8})]
		tz := loc.timezones[rng.IntN(len(loc.timezones))]
		orders := 1 + rng.IntN(6)
		if rng.IntN(8) == 0 {
			orders += 8 + rng.IntN(20) // a few loyal customers
		}
		vip := orders >= 10
		currency := "USD"
		if strings.HasPrefix(tz, "Europe/") && tz != "Europe/London" {
			currency = "EUR"
		} else if tz == "Europe/London" {
			currency = "GBP"
		}
		lastOrder += 1 + rng.IntN(400)
		spent := float64(orders) * (40 + float64(rng.IntN(16000))/100)
		data, _ := json.Marshal(map[string]any{
			"orders_count":        orders,
			"total_spent":         fmt.Sprintf("%.2f", spent),
			"currency":            currency,
			"vip":                 vip,
			"last_order":          fmt.Sprintf("#%d", lastOrder),
			"accepts_marketing":   rng.IntN(3) > 0,
			"shopify_customer_id": 6100000000 + int64(i)*7919,
		})
		c := &valet.Customer{
			AccountID:  accountID,
			Email:      fmt.Sprintf("%s.%s@%s", asciiLower(first), asciiLower(last), emailDomains[i%len(emailDomains)]),
			Firstname:  first,
			Lastname:   last,
			ExternalID: fmt.Sprintf("shopify-%d", 6100000000+int64(i)*7919),
			Language:   loc.language,
			Timezone:   tz,
			Note:       customerNotes[rng.IntN(len(customerNotes))],
			Data:       data,
		}
		if vip {
			c.Note = strings.TrimSpace(fmt.Sprintf("VIP: %d orders. %s", orders, c.Note))
		}
		// Customers sign up before the window, spread over the previous year.
		o.at(start.Add(-time.Duration(365-i*7) * 24 * time.Hour))
		if err := store.CreateCustomer(ctx, c); err != nil {
			return nil, err
		}
		weight := 1 + rng.IntN(4)
		if vip {
			weight += 4
		}
		out = append(out, demoCustomer{ref: c.Ref(), first: first, currency: currency, vip: vip, weight: weight})
	}
	return out, nil
}

// plannedMessage is one message of a planned conversation.
type plannedMessage struct {
	at       time.Time
	public   bool
	agent    int64 // the agent user id, 0 for the customer
	body     string
	channel  string
	via      string
	subject  string
	htmlBody bool
}

// ticketPlan is a ticket decided in full before anything is written, so
// tickets can be created in time order (ids then follow time, as in a real
// helpdesk).
type ticketPlan struct {
	created  time.Time
	subject  string
	priority string
	channel  string
	customer valet.PersonRef
	assignee int64
	tags     []string
	messages []plannedMessage
	closeAt  time.Time // zero: stays open
}

var (
	channelWeights = []int{55, 20, 12, 5, 4, 4}
	ticketChannels = []string{"email", "chat", "contact_form", "sms", "facebook", "instagram"}
	priorityMix    = []int{15, 60, 20, 5} // low, normal, high, urgent
)

// planTickets decides every ticket before anything is written. It draws the
// same random numbers whatever now is, so the content is the same on every
// run; only the datetimes move with now, and messages that would lie in the
// future are left out.
func planTickets(rng *rand.Rand, customers []demoCustomer, users []DemoUser, start, now time.Time) []ticketPlan {
	weights := make([]int, len(customers))
	for i, c := range customers {
		weights[i] = c.weight
	}
	window := now.Sub(start)
	latest := now.Add(-5 * time.Minute)
	plans := make([]ticketPlan, 0, demoTickets)
	for range demoTickets {
		cust := customers[weighted(rng, weights)]
		sc := scenarios[rng.IntN(len(scenarios))]
		// More tickets are recent, as a growing shop sees.
		frac := 1 - rng.Float64()*rng.Float64()
		created := workingHours(rng, start.Add(time.Duration(frac*float64(window))).Truncate(time.Second))
		if backoff := time.Duration(1+rng.IntN(120)) * time.Minute; created.After(latest) {
			created = latest.Add(-backoff)
		}
		channel := ticketChannels[weighted(rng, channelWeights)]
		agentIdx := 1 + rng.IntN(2) // the two agents answer most tickets
		if rng.IntN(7) == 0 {
			agentIdx = 0 // the owner jumps in now and then
		}
		agent := users[agentIdx]
		f := newFiller(rng, cust, agent, created)

		p := ticketPlan{
			created:  created,
			subject:  f.fill(pick(rng, sc.subjects)),
			priority: valet.Priorities[weighted(rng, priorityMix)],
			channel:  channel,
			customer: cust.ref,
			assignee: agent.ID,
			tags:     slices.Clone(sc.tags[:1+rng.IntN(len(sc.tags))]),
		}
		if sc.priority != "" && rng.IntN(3) > 0 {
			p.priority = sc.priority
		}
		if cust.vip {
			p.tags = append(p.tags, "vip")
			if p.priority == "low" || p.priority == "normal" {
				p.priority = "high"
			}
		}
		if channel == "chat" || channel == "sms" {
			p.subject = "" // chats have no subject line; the list shows the excerpt
		}

		wantLen := 1 + weighted(rng, []int{12, 30, 22, 16, 12, 8})
		at := created
		add := func(public bool, agentID int64, body string) {
			m := plannedMessage{at: at, public: public, agent: agentID, body: body, channel: channel, via: channel}
			if agentID != 0 {
				m.via = "helpdesk"
			}
			if !public {
				m.channel, m.via = "internal-note", "helpdesk"
			}
			if channel == "email" && public {
				m.subject, m.htmlBody = p.subject, true
				if len(p.messages) > 0 {
					m.subject = "Re: " + p.subject
				}
			}
			p.messages = append(p.messages, m)
		}
		add(true, 0, f.customerBody(channel, pick(rng, sc.opening)))
		for len(p.messages) < wantLen {
			customerSpokeLast := p.messages[len(p.messages)-1].agent == 0
			switch {
			case customerSpokeLast && len(sc.notes) > 0 && rng.IntN(5) == 0:
				// An agent leaves a note for the team, then answers.
				at = at.Add(time.Duration(2+rng.IntN(40)) * time.Minute)
				add(false, agent.ID, f.fill(pick(rng, sc.notes)))
				if len(p.messages) < wantLen {
					at = at.Add(time.Duration(5+rng.IntN(90)) * time.Minute)
					add(true, agent.ID, f.agentBody(channel, pick(rng, sc.replies)))
				}
			case customerSpokeLast:
				at = at.Add(responseDelay(rng, channel))
				add(true, agent.ID, f.agentBody(channel, pick(rng, sc.replies)))
			default:
				at = at.Add(time.Duration(30+rng.IntN(36*60)) * time.Minute)
				body := pick(rng, sc.followups)
				if len(p.messages) >= wantLen-1 || rng.IntN(3) == 0 {
					body = pick(rng, sc.thanks)
				}
				add(true, 0, f.customerBody(channel, body))
			}
		}
		closeDraw, closeAfter, leaveUnassigned := rng.IntN(10), time.Duration(5+rng.IntN(180))*time.Minute, rng.IntN(2) == 0

		// What has not happened yet is left out.
		for len(p.messages) > 1 && p.messages[len(p.messages)-1].at.After(latest) {
			p.messages = p.messages[:len(p.messages)-1]
		}
		last := p.messages[len(p.messages)-1]
		settled := last.agent != 0 || strings.Contains(strings.ToLower(last.body), "thank")
		if closeAt := last.at.Add(closeAfter); settled && now.Sub(last.at) > 6*time.Hour && closeDraw < 8 && !closeAt.After(latest) {
			p.closeAt = closeAt
		}
		// Fresh tickets nobody answered yet often wait in the unassigned queue.
		if len(p.messages) == 1 && leaveUnassigned {
			p.assignee = 0
		}
		plans = append(plans, p)
	}
	slices.SortStableFunc(plans, func(a, b ticketPlan) int { return a.created.Compare(b.created) })
	return plans
}

// create writes the plan, moving the clock to each step's time, and returns
// how many messages it wrote.
func (p *ticketPlan) create(ctx context.Context, store valet.Store, accountID int64, o *options) (int, error) {
	first := p.messages[0]
	t := &valet.Ticket{
		AccountID: accountID,
		Subject:   p.subject,
		Priority:  p.priority,
		Channel:   p.channel,
		Via:       first.via,
		Customer:  valet.PersonRef{ID: p.customer.ID},
	}
	if p.assignee != 0 {
		t.AssigneeUser = &valet.PersonRef{ID: p.assignee}
	}
	o.at(first.at)
	if err := store.CreateTicket(ctx, t, []*valet.Message{first.message(accountID, 0)}); err != nil {
		return 0, err
	}
	o.at(first.at.Add(time.Duration(len(p.tags)) * time.Second))
	agentCtx := valet.WithActor(ctx, valet.Actor{UserID: p.assignee})
	if _, err := store.SetTicketTags(agentCtx, accountID, t.ID, valet.TagsReplace, p.tags); err != nil {
		return 0, err
	}
	for _, pm := range p.messages[1:] {
		o.at(pm.at)
		mctx := ctx
		if pm.agent != 0 {
			mctx = valet.WithActor(ctx, valet.Actor{UserID: pm.agent})
		}
		if err := store.CreateMessage(mctx, pm.message(accountID, t.ID)); err != nil {
			return 0, err
		}
	}
	if !p.closeAt.IsZero() {
		o.at(p.closeAt)
		if _, err := store.UpdateTicket(agentCtx, accountID, t.ID, func(t *valet.Ticket) error {
			t.Status = valet.StatusClosed
			return nil
		}); err != nil {
			return 0, err
		}
	}
	return len(p.messages), nil
}

func (pm plannedMessage) message(accountID, ticketID int64) *valet.Message {
	m := &valet.Message{
		AccountID: accountID,
		TicketID:  ticketID,
		Public:    pm.public,
		Channel:   pm.channel,
		Via:       pm.via,
		FromAgent: pm.agent != 0,
		Sender:    valet.PersonRef{ID: pm.agent},
		Subject:   pm.subject,
		BodyText:  pm.body,
	}
	if pm.htmlBody {
		m.BodyHTML = toHTML(pm.body)
	}
	return m
}

// filler fills a scenario's placeholders with one ticket's details.
type filler struct {
	r *strings.Replacer
}

func newFiller(rng *rand.Rand, c demoCustomer, agent DemoUser, created time.Time) filler {
	symbol := map[string]string{"USD": "$", "EUR": "€", "GBP": "£"}[c.currency]
	placed := created.Add(-time.Duration(2+rng.IntN(12)) * 24 * time.Hour)
	agentFirst, _, _ := strings.Cut(agent.Name, " ")
	return filler{strings.NewReplacer(
		"{first}", c.first,
		"{agent}", agentFirst,
		"{order}", fmt.Sprintf("#%d", 10000+rng.IntN(9000)),
		"{item}", pick(rng, products),
		"{size}", pick(rng, sizes),
		"{carrier}", pick(rng, carriers),
		"{tracking}", fmt.Sprintf("1Z%03dX%010d", rng.IntN(1000), rng.Int64N(1e10)),
		"{code}", pick(rng, discountCodes),
		"{amount}", fmt.Sprintf("%s%d.%02d", symbol, 19+rng.IntN(300), 5*rng.IntN(20)),
		"{rma}", fmt.Sprintf("%05d", rng.IntN(100000)),
		"{days}", fmt.Sprintf("%d", 3+rng.IntN(9)),
		"{placed}", placed.Format("Jan 2"),
	)}
}

func (f filler) fill(s string) string { return f.r.Replace(s) }

func (f filler) customerBody(channel, s string) string {
	s = f.fill(s)
	if channel == "email" || channel == "contact_form" {
		s += "\n\n" + f.fill("{first}")
	}
	return s
}

func (f filler) agentBody(channel, s string) string {
	s = f.fill(s)
	if channel == "email" || channel == "contact_form" {
		s += "\n\n" + f.fill("{agent}") + "\nAcme Outfitters support"
	}
	return s
}

func toHTML(text string) string {
	var b strings.Builder
	for _, para := range strings.Split(text, "\n\n") {
		b.WriteString("<p>")
		b.WriteString(strings.ReplaceAll(html.EscapeString(para), "\n", "<br>"))
		b.WriteString("</p>")
	}
	return b.String()
}

// responseDelay is how long an agent takes to answer: minutes on chat,
// hours on email.
func responseDelay(rng *rand.Rand, channel string) time.Duration {
	if channel == "chat" || channel == "sms" {
		return time.Duration(1+rng.IntN(15)) * time.Minute
	}
	return time.Duration(20+rng.IntN(20*60)) * time.Minute
}

// workingHours nudges t into 7:00-22:00 UTC, when most customers write. It
// draws a number whether or not it needs one, so the draws do not depend on t.
func workingHours(rng *rand.Rand, t time.Time) time.Time {
	minute := rng.IntN(15 * 60)
	if h := t.Hour(); h < 7 || h >= 22 {
		return t.Truncate(24 * time.Hour).Add(time.Duration(7*60+minute) * time.Minute)
	}
	return t
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// weighted returns an index into weights, drawn in proportion to them.
func weighted(rng *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := rng.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

var asciiFold = strings.NewReplacer("é", "e", "è", "e", "ü", "u", "ö", "o", "ä", "a", "í", "i", "ó", "o", "á", "a", "ñ", "n", "ç", "c")

func asciiLower(s string) string { return asciiFold.Replace(strings.ToLower(s)) }
