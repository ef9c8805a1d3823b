// Package hub is the integration hub (valet hub): a third-party app of the
// helpdesk that connects helpdesk accounts in one click and keeps those
// connections alive, safe and honest about their state.
//
// It owns the vault that seals tokens at rest (Vault), the provider
// templates that describe a helpdesk's OAuth endpoints and quirks
// (Provider), and the token keeper that renews tokens exactly once per
// connection across goroutines and processes (Tokens); the web app
// (Server: "Sign in with valet", Connect helpdesk, the dashboard and its
// activity feed); and the webhook receiver with its polling fallback
// (Events). Its storage is valet.HubStore, implemented by sqlstore.OpenHub.
package hub
