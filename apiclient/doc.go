// Package apiclient is the Go client of valet's REST API (/api/), for
// anyone writing a valet app: the integration hub uses it, and so can a
// private integration with an API key or a third-party app with an OAuth
// access token. It depends only on the standard library, the valet
// package's types and golang.org/x/oauth2 (for FromOAuth2).
//
// What it owns:
//   - one method per route, context first: Account, Users/User,
//     Tickets/Ticket/CreateTicket/UpdateTicket/DeleteTicket and their tags,
//     Messages/CreateMessage, Customers/Customer/CreateCustomer/
//     UpdateCustomer/DeleteCustomer, Events/EventsPage, Integrations/
//     Integration/CreateIntegration/UpdateIntegration/DeleteIntegration/
//     Deliveries;
//   - lists as Go iterators (iter.Seq2[T, error]) that follow meta.next_cursor
//     page by page and stop fetching when the loop breaks;
//   - error answers as *Error (status, code, message, per-field problems,
//     Retry-After), with IsNotFound, IsUnauthorized and friends;
//   - retries: 429 after its Retry-After; 5xx and network errors with
//     exponential backoff and jitter for idempotent requests only (a POST is
//     repeated only when it provably never reached the server, so a DELETE
//     whose answer was lost may report 404 on its retry); a short pause
//     before the next call when the X-Valet-Account-Api-Call-Limit header
//     says the bucket is full, rather than earning a 429 (see
//     DefaultCallLimitPause for why);
//   - authentication: an API key (WithAPIKey: Basic, as Gorgias) or a
//     TokenSource (WithTokenSource) whose token a Transport injects and, on a
//     401, renews once and retries with. Transport is an ordinary
//     http.RoundTripper for use with one's own http.Client.
//
// A private integration:
//
//	c, err := apiclient.New("https://help.example.com",
//		apiclient.WithAPIKey("olivia@acme.example", os.Getenv("VALET_API_KEY")))
//	if err != nil {
//		return err
//	}
//	for t, err := range c.Tickets(ctx, apiclient.TicketListOptions{Status: valet.StatusOpen}) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(t.ID, t.Subject)
//	}
//
// Updates take pointers for the fields to change, set with new(value):
//
//	t, err := c.UpdateTicket(ctx, id, apiclient.TicketUpdate{
//		Status:  new(valet.StatusClosed),
//		IfMatch: apiclient.ETag(read.UpdatedDatetime), // 412 if it changed since read
//	})
package apiclient
