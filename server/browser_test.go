package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/valethq/valet"
	"github.com/valethq/valet/internal/browsertest"
)

// seedScreens fills acme with a small, believable inbox, so the screenshots
// show what a support team would see.
func seedScreens(t *testing.T, e *inboxEnv) {
	t.Helper()
	ctx := valet.WithActor(context.Background(), valet.Actor{UserID: e.owner.ID})
	// The plans below happen over the three days before the test's ticket
	// was created; then the clock returns to just after it.
	now := e.clock.Now()
	e.clock.Advance(-72 * time.Hour)
	at := func(d time.Duration) { e.clock.Advance(now.Add(d).Sub(e.clock.Now())) }

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	type msg struct {
		agent *valet.User // nil: the customer
		note  bool
		body  string
	}
	type plan struct {
		name, email, subject, channel, priority string
		tags                                    []string
		assignee                                *valet.User
		closed                                  bool
		msgs                                    []msg
	}
	plans := []plan{
		{"Priya Raman", "priya@example.com", "Wrong size delivered, need a swap", "email", "high", []string{"exchange", "sizing"}, e.agent, false, []msg{
			{nil, false, "Hi! I ordered the Alpine fleece in M but received an XL. Can you swap it? Order #10511."},
			{e.agent, false, "So sorry about that, Priya. I've created a free exchange; the return label is in your inbox."},
			{nil, false, "Got the label, thanks. How long will the new one take?"},
		}},
		{"Jonas Becker", "jonas.becker@example.de", "Refund for order #10482", "email", "normal", []string{"refund"}, nil, false, []msg{
			{nil, false, "Hello, I returned the hiking boots two weeks ago and have not seen a refund yet."},
			{e.owner, true, "Warehouse confirmed the return on the 12th. Refund stuck in the payment queue; escalated to finance."},
		}},
		{"Mei Chen", "mei.chen@example.com", "Discount code SAVE20 not working", "chat", "normal", []string{"promo"}, nil, false, []msg{
			{nil, false, "The code SAVE20 says it expired but the newsletter says it's valid until Sunday?"},
		}},
		{"Tomás Ortega", "tomas@example.es", "Can I change my delivery address?", "email", "urgent", []string{"shipping"}, nil, false, []msg{
			{nil, false, "I moved last week and the parcel is going to my old flat. It ships today! Can you change it to Calle Mayor 12, Madrid?"},
		}},
		{"Sofia Rossi", "sofia.rossi@example.it", "Jacket zipper broke after a week", "email", "high", []string{"warranty", "defect"}, e.owner, false, []msg{
			{nil, false, "The main zipper of my Storm jacket came off after one week. Photos attached."},
			{e.owner, false, "That should not happen. I'm sending a replacement today under warranty, no need to return the old one."},
		}},
		{"Liam O'Brien", "liam@example.ie", "Thank you!", "email", "low", nil, e.agent, true, []msg{
			{nil, false, "Just wanted to say the tent arrived a day early. Great service!"},
			{e.agent, false, "Thanks so much, Liam! Enjoy your trip."},
		}},
		{"Mei Chen", "mei.chen@example.com", "Do you ship to Canada?", "chat", "normal", []string{"shipping"}, e.agent, true, []msg{
			{nil, false, "Do you ship to Vancouver?"},
			{e.agent, false, "We do! Delivery takes 5-7 business days."},
		}},
	}
	customers := map[string]*valet.Customer{}
	for _, p := range plans {
		c := customers[p.email]
		if c == nil {
			c = &valet.Customer{AccountID: e.acme.ID, Email: p.email, Name: p.name, Language: "en"}
			must(e.store.CreateCustomer(ctx, c))
			customers[p.email] = c
		}
		e.clock.Advance(7 * time.Hour)
		tk := &valet.Ticket{AccountID: e.acme.ID, Subject: p.subject, Channel: p.channel, Via: p.channel, Priority: p.priority, Customer: c.Ref()}
		first := p.msgs[0]
		must(e.store.CreateTicket(ctx, tk, []*valet.Message{{Public: true, Channel: p.channel, Via: p.channel, BodyText: first.body}}))
		for _, m := range p.msgs[1:] {
			e.clock.Advance(40 * time.Minute)
			msg := &valet.Message{AccountID: e.acme.ID, TicketID: tk.ID, Public: !m.note, BodyText: m.body, Via: "helpdesk"}
			if m.agent != nil {
				msg.FromAgent = true
				msg.Sender = valet.PersonRef{ID: m.agent.ID}
			}
			if m.note {
				msg.Channel = "internal-note"
			} else {
				msg.Channel = p.channel
			}
			must(e.store.CreateMessage(ctx, msg))
		}
		if len(p.tags) > 0 {
			_, err := e.store.SetTicketTags(ctx, e.acme.ID, tk.ID, valet.TagsAdd, p.tags)
			must(err)
		}
		if p.assignee != nil || p.closed {
			_, err := e.store.UpdateTicket(ctx, e.acme.ID, tk.ID, func(t *valet.Ticket) error {
				if p.assignee != nil {
					t.AssigneeUser = &valet.PersonRef{ID: p.assignee.ID}
				}
				if p.closed {
					t.Status = valet.StatusClosed
				}
				return nil
			})
			must(err)
		}
	}
	// The ticket the test works on gets a longer conversation.
	at(time.Minute)
	if _, err := e.store.UpdateCustomer(ctx, e.acme.ID, e.carla.ID, func(c *valet.Customer) error {
		c.ExternalID, c.Language, c.Timezone = "shop-10482", "en", "Europe/Dublin"
		c.Note = "Loyal customer since 2021. Prefers email."
		c.Data = []byte(`{"orders": 14, "lifetime_value": "1,240.00 EUR", "plan": "gold"}`)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	at(35 * time.Minute)
	must(e.store.CreateMessage(ctx, &valet.Message{AccountID: e.acme.ID, TicketID: e.ticket.ID, Public: false, FromAgent: true,
		Sender: valet.PersonRef{ID: e.agent.ID}, Channel: "internal-note", Via: "helpdesk",
		BodyText: "Tracking shows it stuck at the Dublin depot since Monday. @Olivia can we reship?"}))
	_, err := e.store.SetTicketTags(ctx, e.acme.ID, e.ticket.ID, valet.TagsAdd, []string{"shipping", "vip"})
	must(err)
	at(2 * time.Hour)
	must(e.store.CreateMessage(ctx, &valet.Message{AccountID: e.acme.ID, TicketID: e.ticket.ID, Public: true,
		Channel: "email", Via: "email", BodyText: "Any news? It was a birthday present and the party is on Saturday."}))
	at(2*time.Hour + 25*time.Minute)
}

// TestBrowserInbox drives the inbox in headless Chromium: sign in, open a
// ticket, reply, add a note, close it; then checks the database and writes
// screenshots of every page to the artifacts folder.
func TestBrowserInbox(t *testing.T) {
	t.Parallel()
	e := newInboxEnv(t)
	seedScreens(t, e)
	out := browsertest.ArtifactsDir(t)

	ctx := browsertest.Start(t, 1366, 900)

	// Every console error (a CSP violation, a failed asset, a script error)
	// fails the test.
	console := browsertest.WatchConsole(ctx)

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// submit clicks a button that posts a form and waits for the page that
	// answers (after the redirect), failing on an error status.
	submit := func(what string, sel chromedp.CSS) {
		t.Helper()
		res, err := chromedp.RunResponse(ctx, chromedp.Click(sel, chromedp.NodeVisible))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Status >= 400 {
			t.Fatalf("%s: status %d", what, res.Status)
		}
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimPrefix(loc, e.ts.URL)
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel, chromedp.NodeVisible))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		// From the top, so the sticky bars sit where a person sees them.
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)); err != nil {
			t.Fatal(err)
		}
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(out, name+".png")
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}

	// A signed-out browser asking for the inbox lands on the sign-in page.
	do("open inbox", chromedp.Navigate(e.ts.URL+"/tickets"), chromedp.WaitVisible(chromedp.ID("email")))
	if loc := location(); loc != "/signin?next=%2Ftickets" {
		t.Fatalf("signed out: at %q", loc)
	}
	shot("01-signin")

	// A wrong password keeps the email and says so.
	do("type wrong password", chromedp.SendKeys(chromedp.ID("email"), e.owner.Email), chromedp.SendKeys(chromedp.ID("password"), "not my password"))
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[type="submit"]`))); err != nil {
		t.Fatal(err)
	}
	if msg := text(".alert-error"); !strings.Contains(msg, "Wrong email or password") {
		t.Fatalf("wrong password says %q", msg)
	}
	shot("02-signin-error")

	do("type password", chromedp.SendKeys(chromedp.ID("password"), inboxPassword))
	submit("sign in", `button[type="submit"]`)
	if loc := location(); loc != "/tickets" {
		t.Fatalf("after sign-in: at %q", loc)
	}
	do("inbox", chromedp.WaitVisible(chromedp.CSS(".ticket-list")))
	if s := text(".topbar .account-name"); s != "Acme Outfitters" {
		t.Errorf("top bar account = %q", s)
	}
	shot("03-tickets")

	// Open the ticket from the list.
	path := "/tickets/" + inboxID(e.ticket.ID)
	submit("open ticket", chromedp.CSS(`a.ticket-link[href="`+path+`"]`))
	if loc := location(); loc != path {
		t.Fatalf("ticket link went to %q", loc)
	}
	do("ticket page", chromedp.WaitVisible(chromedp.ID("reply-body")))
	shot("04-ticket")

	// Reply.
	reply := "Hi Carla, so sorry! A new parcel goes out today by express and will arrive before Saturday."
	do("write reply", chromedp.SendKeys(chromedp.ID("reply-body"), reply))
	submit("send reply", chromedp.CSS("#send-reply"))
	if s := text(".flash"); s != "Reply sent." {
		t.Fatalf("flash after reply = %q", s)
	}
	if s := text(".msg-agent:last-of-type .msg-body"); s != reply {
		t.Fatalf("last message = %q", s)
	}

	// An internal note, through the composer's tab.
	note := "Reshipped with express, order #10482-B. Refund the first shipping fee if it turns up."
	do("note tab", chromedp.Click(chromedp.CSS(`label[for="tab-note"]`)), chromedp.WaitVisible(chromedp.ID("note-body")))
	do("write note", chromedp.SendKeys(chromedp.ID("note-body"), note))
	shot("05-ticket-note-composer")
	submit("add note", chromedp.CSS("#add-note"))
	if s := text(".flash"); s != "Internal note added." {
		t.Fatalf("flash after note = %q", s)
	}

	// Close it.
	submit("close ticket", chromedp.CSS("#close-ticket"))
	if s := text(".flash"); s != "Ticket closed." {
		t.Fatalf("flash after close = %q", s)
	}
	do("reopen button", chromedp.WaitVisible(chromedp.ID("reopen-ticket")))
	shot("06-ticket-closed")

	// The database has it all, recorded as the owner's doing.
	bg := context.Background()
	tk, err := e.store.FindTicket(bg, e.acme.ID, e.ticket.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Status != valet.StatusClosed || tk.ClosedDatetime == nil {
		t.Fatalf("ticket after close: %+v", tk)
	}
	msgs, err := e.store.ListMessages(bg, e.acme.ID, e.ticket.ID, valet.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := len(msgs.Data)
	if n < 2 {
		t.Fatalf("%d messages", n)
	}
	got, gotNote := msgs.Data[n-2], msgs.Data[n-1]
	if !got.Public || !got.FromAgent || got.Sender.ID != e.owner.ID || got.BodyText != reply {
		t.Fatalf("reply in the store: %+v", got)
	}
	if gotNote.Public || gotNote.Sender.ID != e.owner.ID || gotNote.BodyText != note {
		t.Fatalf("note in the store: %+v", gotNote)
	}
	events, err := e.store.ListEvents(bg, e.acme.ID, valet.EventFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if last.Type != valet.EventTicketUpdated || last.ObjectID != e.ticket.ID || last.UserID == nil || *last.UserID != e.owner.ID {
		t.Fatalf("last event = %+v", last)
	}

	// The other pages, for the record.
	do("customer", chromedp.Navigate(e.ts.URL+"/customers/"+inboxID(e.carla.ID)), chromedp.WaitVisible(chromedp.CSS(".profile-head")))
	shot("07-customer")
	do("customers", chromedp.Navigate(e.ts.URL+"/customers"), chromedp.WaitVisible(chromedp.CSS(".table")))
	shot("08-customers")
	do("settings", chromedp.Navigate(e.ts.URL+"/settings"), chromedp.WaitVisible(chromedp.ID("keys-title")))
	do("open key form", chromedp.Click(chromedp.CSS(`#keys-title ~ details > summary`)), chromedp.WaitVisible(chromedp.ID("k-name")))
	shot("09-settings")
	do("name key", chromedp.SendKeys(chromedp.ID("k-name"), "Order sync"),
		chromedp.Click(chromedp.CSS(`input[value="tickets:read"]`)), chromedp.Click(chromedp.CSS(`input[value="customers:read"]`)))
	submit("create key", chromedp.CSS(`form[action="/settings/apikeys"] button[type="submit"]`))
	secret, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("secret")))
	if err != nil {
		t.Fatal(err)
	}
	if cred, err := e.store.Authenticate(bg, secret); err != nil || cred.Scopes.String() != "customers:read tickets:read" {
		t.Fatalf("key created in the browser: %v %v", cred, err)
	}
	shot("10-apikey-created")
	do("not found", chromedp.Navigate(e.ts.URL+"/tickets/"+inboxID(e.globexTicket.ID)), chromedp.WaitVisible(chromedp.CSS(".error-card")))
	shot("11-not-found")

	// A phone.
	do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.Navigate(e.ts.URL+"/tickets?status=all"), chromedp.WaitVisible(chromedp.CSS(".ticket-list")))
	shot("12-phone-tickets")
	do("phone ticket", chromedp.Navigate(e.ts.URL+path), chromedp.WaitVisible(chromedp.ID("reopen-ticket")))
	shot("13-phone-ticket")
	width, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if width > 390 {
		t.Errorf("the ticket page scrolls sideways on a phone: %d px wide", width)
	}
	do("phone menu", chromedp.Click(chromedp.CSS(".user-menu > summary")), chromedp.WaitVisible(chromedp.CSS(".user-menu .menu-panel")))
	shot("14-phone-menu")

	// Sign out from the user menu.
	submit("sign out", chromedp.CSS(`.user-menu form[action="/signout"] button`))
	if loc := location(); loc != "/signin" {
		t.Fatalf("after sign-out: at %q", loc)
	}

	// A member of two accounts chooses one, and can switch from the top bar.
	do("desktop", chromedp.EmulateViewport(1366, 900))
	do("sign in as mia", chromedp.SendKeys(chromedp.ID("email"), e.mia.Email), chromedp.SendKeys(chromedp.ID("password"), inboxPassword))
	submit("sign in as mia", `button[type="submit"]`)
	if loc := location(); loc != "/accounts" {
		t.Fatalf("multi-account sign-in: at %q", loc)
	}
	shot("15-accounts")
	submit("choose globex", chromedp.CSS(`form input[value="`+inboxID(e.globex.ID)+`"] ~ button`))
	if s := text(".topbar .account-name"); s != "Globex" {
		t.Fatalf("after choosing globex the top bar says %q", s)
	}
	do("account menu", chromedp.Click(chromedp.CSS(".account-menu > summary")), chromedp.WaitVisible(chromedp.CSS(".account-menu .menu-panel")))
	do("user menu", chromedp.Click(chromedp.CSS(".user-menu > summary")), chromedp.WaitVisible(chromedp.CSS(".user-menu .menu-panel")))
	do("account menu again", chromedp.Click(chromedp.CSS(".account-menu > summary")), chromedp.WaitVisible(chromedp.CSS(".account-menu .menu-panel")))
	shot("16-account-switcher")
	submit("switch to acme", chromedp.CSS(`.account-menu button.menu-item`))
	if s := text(".topbar .account-name"); s != "Acme Outfitters" {
		t.Fatalf("after switching the top bar says %q", s)
	}

	for _, m := range console.Errors() {
		// The 404 page and the wrong password answer 404 and 401 on
		// purpose; Chrome logs those statuses as errors.
		if strings.Contains(m, "status of 404") || strings.Contains(m, "status of 401") {
			continue
		}
		t.Errorf("browser console: %s", m)
	}
}
