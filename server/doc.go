// Package server is valet's HTTP side: the /api REST handlers with their
// credential, scope and rate-limit middleware, the web inbox pages with
// sessions and CSRF, and the operations endpoints (/healthz, /readyz,
// /metrics). errors.go answers errors in one shape, with the status that
// valet.HTTPStatus gives their code.
package server
