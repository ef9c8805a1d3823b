package server

import (
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/valethq/valet"
)

// CSRF protection of the pages. Every form carries a token in the field
// csrfField and every POST is refused unless it matches, compared in
// constant time:
//   - signed in, the token is the session's CSRFToken, kept by the store;
//   - on the signed-out sign-in form it is a double-submit cookie: a random
//     value set as an HttpOnly cookie and repeated in the form, which a
//     cross-site page can neither read nor set (login CSRF).
//
// SameSite=Lax cookies and the Sec-Fetch-Site check are further layers,
// not the defence.
const (
	csrfField      = "csrf"
	csrfCookieName = "valet_csrf"
)

// errCSRF is what a refused form shows: usually a page left open across a
// sign-out, or a second tab.
func errCSRF() error {
	return valet.Errorf(valet.EFORBIDDEN, "This form has expired or did not come from valet. Go back, reload the page and try again.")
}

// tokensEqual compares a token in constant time; an empty token never
// matches.
func tokensEqual(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// checkCSRF verifies the form's token against want. The form must have been
// parsed.
func checkCSRF(r *http.Request, want string) error {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errCSRF()
	}
	if !tokensEqual(want, r.PostFormValue(csrfField)) {
		return errCSRF()
	}
	return nil
}

// signinToken returns the double-submit token of the sign-in form, setting
// a fresh cookie when the browser has none (or a malformed one).
func (s *Server) signinToken(w http.ResponseWriter, r *http.Request) string {
	if tok := s.cookieValue(r, csrfCookieName); len(tok) >= 32 && len(tok) <= 64 {
		return tok
	}
	tok := valet.NewSecret("")
	s.setCookie(w, csrfCookieName, tok, int((2 * time.Hour).Seconds()), time.Time{})
	return tok
}

// checkSigninCSRF verifies the sign-in form's token against its cookie.
func (s *Server) checkSigninCSRF(r *http.Request) error {
	return checkCSRF(r, s.cookieValue(r, csrfCookieName))
}
