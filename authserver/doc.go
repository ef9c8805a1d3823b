// Package authserver is valet's OAuth 2.0 and OpenID Connect provider. It
// owns the protocol through github.com/zitadel/oidc/v3/pkg/op (embedding its
// LegacyServer) and adds valet's rules around it: opaque vat_/vrt_ tokens
// stored hashed, single-use codes whose replay revokes what they issued,
// refresh rotation with reuse detection, PKCE S256 (required for public
// apps, and whenever a code carried a challenge), ID tokens only with
// openid, RFC 9207 iss, the account in the token answer, no-store token
// answers and explicit CORS. The sign-in and consent pages are the server
// package's; they hand back through Pending, Approve, Deny and Refuse
// (prompt and max_age: prompt.go).
package authserver
