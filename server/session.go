package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/valethq/valet"
)

// Cookie names. Over https the __Host- prefix makes the browser refuse the
// cookie unless it is Secure, host-only and Path=/, so a sibling subdomain
// cannot plant or overwrite it.
const (
	sessionCookieName = "valet_session"
	flashCookieName   = "valet_flash"
)

func (s *Server) cookieName(base string) string {
	if s.secure {
		return "__Host-" + base
	}
	return base
}

// setCookie sets a cookie with the attributes every valet cookie has:
// HttpOnly, SameSite=Lax, Path=/, and Secure when served over https.
// maxAge < 0 deletes the cookie; 0 makes it last for the browser session.
func (s *Server) setCookie(w http.ResponseWriter, base, value string, maxAge int, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(base), Value: value, Path: "/",
		MaxAge: maxAge, Expires: expires,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) cookieValue(r *http.Request, base string) string {
	c, err := r.Cookie(s.cookieName(base))
	if err != nil {
		return ""
	}
	return c.Value
}

// pageSession is a signed-in browser as a page request sees it.
type pageSession struct {
	secret  string
	session *valet.Session
	// user has Role set for account; account is nil until one is chosen, or
	// when the user is no longer a member of the session's account.
	user        *valet.User
	account     *valet.Account
	memberships []valet.Membership
}

// canManage reports whether the user may change the account's settings.
func (ps *pageSession) canManage() bool { return ps.account != nil && ps.user.Role.CanManage() }

// loadSession resolves the session cookie. It returns nil (and no error)
// when the browser is not signed in: no cookie, or an unknown or expired
// session (a deleted user's sessions go with it). One read per request
// (OpenSession): the session, the user and the user's memberships, which
// give the account and the role without more queries.
func (s *Server) loadSession(ctx context.Context, r *http.Request) (*pageSession, error) {
	secret := s.cookieValue(r, sessionCookieName)
	if secret == "" || !valet.HasSecretPrefix(secret, valet.PrefixSession) || len(secret) > 200 {
		return nil, nil
	}
	in, err := s.store.OpenSession(ctx, secret)
	if err != nil {
		if valet.ErrorCode(err) == valet.EUNAUTHORIZED || valet.ErrorCode(err) == valet.ENOTFOUND {
			return nil, nil
		}
		return nil, err
	}
	ps := &pageSession{secret: secret, session: &in.Session, user: &in.User, memberships: in.Memberships}
	ps.user.Role = ""
	if in.Session.AccountID != 0 {
		ps.useAccount(in.Session.AccountID)
	}
	return ps, nil
}

// useAccount makes the session work in the account if the user is a member
// of it, and reports whether it is.
func (ps *pageSession) useAccount(accountID int64) bool {
	for i := range ps.memberships {
		if m := &ps.memberships[i]; m.Account.ID == accountID {
			ps.account = &m.Account
			ps.user.Role = m.Role
			return true
		}
	}
	return false
}

// startSession creates a session for the user and sets its cookie.
func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, userID, accountID int64) error {
	expires := s.clock.Now().Add(s.cfg.SessionTTL)
	secret, err := s.store.CreateSession(ctx, &valet.Session{UserID: userID, AccountID: accountID, ExpiresDatetime: expires})
	if err != nil {
		return err
	}
	s.setCookie(w, sessionCookieName, secret, int(s.cfg.SessionTTL/time.Second), expires)
	return nil
}

// endSession deletes the browser's session, if any, and its cookie.
func (s *Server) endSession(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	s.setCookie(w, sessionCookieName, "", -1, time.Time{})
	if secret := s.cookieValue(r, sessionCookieName); secret != "" && valet.HasSecretPrefix(secret, valet.PrefixSession) {
		return s.store.DeleteSession(ctx, secret)
	}
	return nil
}

// pageFunc is a page handler for a signed-in browser. An error it returns
// is shown as an error page with the status of StatusOf.
type pageFunc func(w http.ResponseWriter, r *http.Request, ps *pageSession) error

// maxFormBytes bounds a page form: a message body (valet.MaxBodyLen) with
// room for the other fields.
const maxFormBytes = 1 << 20

// page wraps a handler that needs a signed-in browser: it loads the session
// (redirecting to the sign-in page when there is none), checks the CSRF
// token of every POST, chooses the account when needAccount (redirecting to
// the switcher when the user has several) and sets the actor that events
// record.
func (s *Server) page(needAccount bool, fn pageFunc) http.Handler {
	return s.pageOr(needAccount, fn, s.toSignin)
}

// toSignin sends a browser that is not signed in to the sign-in page, which
// brings it back to the page it asked for with a GET.
func (s *Server) toSignin(w http.ResponseWriter, r *http.Request) {
	to := "/signin"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		to += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// pageOr is page with signedOut answering a browser that is not signed in.
func (s *Server) pageOr(needAccount bool, fn pageFunc, signedOut http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ps, err := s.loadSession(ctx, r)
		if err != nil {
			s.pageError(w, r, nil, err)
			return
		}
		if ps == nil {
			if s.cookieValue(r, sessionCookieName) != "" {
				s.setCookie(w, sessionCookieName, "", -1, time.Time{})
			}
			signedOut(w, r)
			return
		}
		if r.Method == http.MethodPost {
			if err := s.parseForm(w, r); err != nil {
				s.pageError(w, r, ps, err)
				return
			}
			if err := checkCSRF(r, ps.session.CSRFToken); err != nil {
				s.pageError(w, r, ps, err)
				return
			}
		}
		if needAccount && ps.account == nil {
			if len(ps.memberships) != 1 {
				to := "/accounts"
				if r.Method == http.MethodGet || r.Method == http.MethodHead {
					to += "?next=" + url.QueryEscape(r.URL.RequestURI())
				}
				http.Redirect(w, r, to, http.StatusSeeOther)
				return
			}
			if err := s.store.SetSessionAccount(ctx, ps.secret, ps.memberships[0].Account.ID); err != nil {
				s.pageError(w, r, ps, err)
				return
			}
			ps.useAccount(ps.memberships[0].Account.ID)
		}
		ctx = valet.WithActor(ctx, valet.Actor{UserID: ps.user.ID})
		if err := fn(w, r.WithContext(ctx), ps); err != nil {
			s.pageError(w, r, ps, err)
		}
	})
}

// parseForm reads a bounded urlencoded body.
func (s *Server) parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return valet.Errorf(valet.ETOOLARGE, "The form is too large.")
		}
		return valet.Errorf(valet.EINVALID, "The form could not be read.")
	}
	return nil
}

// flash messages shown once after a redirect. The cookie carries only a
// key of this table, so nothing a third party puts in it reaches the page.
var flashes = map[string]string{
	"reply":        "Reply sent.",
	"reply-closed": "Reply sent and ticket closed.",
	"note":         "Internal note added.",
	"closed":       "Ticket closed.",
	"reopened":     "Ticket reopened.",
	"assigned":     "Ticket assigned to you.",
	"unassigned":   "Ticket unassigned.",
	"tags":         "Tags updated.",
	"member":       "Member added.",
	"key-deleted":  "API key deleted.",
	"switched":     "Switched account.",

	"app-revoked": "Access revoked: the app's tokens stopped working.",
	"app-saved":   "App saved.",
	"app-deleted": "App deleted; every installation of it is revoked.",

	"integration-updated":  "Webhook saved.",
	"integration-enabled":  "Webhook re-enabled: new events are delivered again.",
	"integration-disabled": "Webhook disabled: nothing is delivered until you re-enable it.",
	"integration-deleted":  "Webhook deleted.",
}

// redirectWithFlash answers 303 to a local path, with a one-time message.
func (s *Server) redirectWithFlash(w http.ResponseWriter, r *http.Request, to, flash string) {
	if flash != "" {
		s.setCookie(w, flashCookieName, flash, 60, time.Time{})
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// takeFlash returns the pending message, if any, and clears it.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) string {
	key := s.cookieValue(r, flashCookieName)
	if key == "" {
		return ""
	}
	s.setCookie(w, flashCookieName, "", -1, time.Time{})
	return flashes[key]
}
