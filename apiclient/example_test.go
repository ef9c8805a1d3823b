package apiclient_test

import (
	"context"
	"fmt"
	"log"

	"github.com/valethq/valet"
	"github.com/valethq/valet/apiclient"
)

// A private integration closes the open tickets of one customer.
func Example() {
	ctx := context.Background()
	c, err := apiclient.New("https://help.example.com",
		apiclient.WithAPIKey("olivia@acme.example", "vak_..."))
	if err != nil {
		log.Fatal(err)
	}
	for t, err := range c.Tickets(ctx, apiclient.TicketListOptions{Status: valet.StatusOpen, CustomerID: 51}) {
		if err != nil {
			log.Fatal(err)
		}
		_, err := c.UpdateTicket(ctx, t.ID, apiclient.TicketUpdate{
			Status:  new(valet.StatusClosed),
			IfMatch: apiclient.ETag(t.UpdatedDatetime), // unless someone changed it meanwhile
		})
		switch {
		case apiclient.IsPreconditionFailed(err):
			fmt.Println("ticket", t.ID, "changed; left open")
		case err != nil:
			log.Fatal(err)
		}
	}
}

// An app authenticates with its connection's token; the Transport renews
// it through the TokenSource when the API answers 401.
func ExampleWithTokenSource() {
	var src apiclient.TokenSource = apiclient.StaticToken("vat_...") // the hub supplies its vault here
	c, err := apiclient.New("https://help.example.com", apiclient.WithTokenSource(src))
	if err != nil {
		log.Fatal(err)
	}
	after := int64(0)
	for {
		p, err := c.EventsPage(context.Background(), apiclient.EventListOptions{After: after, Wait: apiclient.MaxEventWait})
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range p.Events {
			fmt.Println(e.ID, e.Type, e.ObjectID)
		}
		after = p.LastID
	}
}
