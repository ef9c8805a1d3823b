package authserver

import (
	"encoding/json"
	"mime"
	"net/http"
	"regexp"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// The library takes its endpoints' parameters from anywhere: any method,
// the query string merged into the form. What the specifications require
// of a request is checked here, before it reaches the library.

// refusal is an error answered in JSON before the library sees the request.
type refusal struct {
	status      int
	code        string
	description string
	bearer      bool // the endpoint takes access tokens (RFC 6750 §3)
}

var (
	// RFC 7636 §4.1 and §4.2: a verifier is 43-128 unreserved characters;
	// an S256 challenge the unpadded base64url of a SHA-256 (43).
	verifierPattern  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
	challengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// checkClientEndpoint checks a request to the token, revocation or
// introspection endpoint: a POST of a form body with no parameters in the
// URL, where secrets would be logged (RFC 6749 §3.2, RFC 7009 §2.1,
// RFC 7662 §2.1), that authenticates a client (RFC 6749 §2.3).
func checkClientEndpoint(r *http.Request) *refusal {
	if r.Method != http.MethodPost {
		return refuse(http.StatusMethodNotAllowed, string(oidc.InvalidRequest), "use POST")
	}
	if r.URL.RawQuery != "" {
		return refuse(http.StatusBadRequest, string(oidc.InvalidRequest), "send the parameters in the request body, not in the URL")
	}
	if media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || media != "application/x-www-form-urlencoded" {
		return refuse(http.StatusBadRequest, string(oidc.InvalidRequest), "the request body must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		return refuse(http.StatusBadRequest, string(oidc.InvalidRequest), "the request body is not a valid form")
	}
	if r.Header.Get("Authorization") != "" {
		if _, _, ok := r.BasicAuth(); !ok {
			return refuse(http.StatusUnauthorized, string(oidc.InvalidClient), "the Authorization header must carry HTTP Basic client credentials")
		}
	} else if r.PostForm.Get("client_id") == "" {
		return refuse(http.StatusUnauthorized, string(oidc.InvalidClient), "client authentication is required: HTTP Basic, or client_id and client_secret in the body")
	}
	if r.URL.Path != TokenPath {
		return nil
	}
	switch oidc.GrantType(r.PostForm.Get("grant_type")) {
	case "":
		return refuse(http.StatusBadRequest, string(oidc.InvalidRequest), "grant_type is missing")
	case oidc.GrantTypeCode:
		if v := r.PostForm.Get("code_verifier"); v != "" && !verifierPattern.MatchString(v) {
			return refuse(http.StatusBadRequest, string(oidc.InvalidRequest), "code_verifier must be 43-128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636)")
		}
	case oidc.GrantTypeRefreshToken:
	default:
		return refuse(http.StatusBadRequest, string(oidc.UnsupportedGrantType), "this server supports the authorization_code and refresh_token grants only")
	}
	return nil
}

// checkUserinfo refuses an access token in the URL: RFC 6750 §2.3 allows
// it, but its §5.3 advises against it, as the URL ends up in logs and
// browser history.
func checkUserinfo(r *http.Request) *refusal {
	if r.URL.Query().Has("access_token") {
		return &refusal{status: http.StatusBadRequest, code: string(oidc.InvalidRequest), bearer: true,
			description: "send the access token in the Authorization header, not in the URL"}
	}
	return nil
}

func refuse(status int, code, description string) *refusal {
	return &refusal{status: status, code: code, description: description}
}

func (f *refusal) write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch {
	case f.status == http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodPost)
	case f.status == http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="valet"`)
	case f.bearer:
		h.Set("WWW-Authenticate", `Bearer realm="valet", error="`+f.code+`"`)
	}
	w.WriteHeader(f.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": f.code, "error_description": f.description})
}
