// Package webhook delivers the helpdesk's events to the URLs of HTTP
// integrations, and holds the signature scheme both ends share.
//
// It owns three things:
//
//   - the signature: X-Valet-Signature is "t=<unix>,v1=<hex HMAC-SHA256 of
//     "<unix>.<body>" under the integration's secret>". Sign makes it; Verify
//     checks it on the receiving side (the hub, or anyone's receiver), in
//     constant time and within a tolerance that refuses replays.
//   - the payload: one JSON object per event (Payload), carrying the event id
//     that receivers de-duplicate by.
//   - the Dispatcher: a loop over the store's outbox (valet.IntegrationService)
//     that turns new events into deliveries, claims due ones under a lease,
//     sends them and records each attempt, retrying with exponential backoff
//     and full jitter for valet.DeliveryRetryWindow. The outbox lives in the
//     database, so nothing is lost across restarts, and leases keep several
//     nodes from sending one attempt twice. Delivery is at least once (a node
//     dying between the answer and the record makes the next lease holder
//     send again): receivers de-duplicate by X-Valet-Event-Id.
//
// cmd/valet wires it: webhook.New(store, webhook.Config{Logger: ...}) and
// go d.Run(ctx).
package webhook
