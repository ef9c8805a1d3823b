// Package server is valet's HTTP side: the /api REST handlers with their
// credential, scope and rate-limit middleware, the web inbox pages with
// sessions and CSRF, and the operations endpoints (/healthz, /readyz,
// /metrics). errors.go holds the one table from valet error codes to HTTP
// statuses.
package server
