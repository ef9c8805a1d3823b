package server

import (
	"cmp"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/webui"
)

// defaultNext is where a browser goes after signing in when it asked for
// nothing else.
const defaultNext = "/tickets"

// safeNext returns next if it is a local path on this server, else "". It
// is the only gate between a ?next= parameter and a Location header, so it
// refuses anything a browser could read as another origin: absolute URLs,
// scheme-relative "//host", backslashes (which browsers treat as slashes),
// control characters, and the sign-in pages themselves.
func safeNext(next string) string {
	// 8 KiB: a consent page's next carries the sealed authorization request.
	if next == "" || len(next) > 8192 || next[0] != '/' {
		return ""
	}
	if strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') {
		return ""
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f {
			return ""
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	if u.Path == "/signin" || u.Path == "/signout" || strings.HasPrefix(u.Path, "/static/") {
		return ""
	}
	return next
}

// clientAddr is the address sign-ins are limited by: the peer's IP, or its
// /64 for IPv6 (one host usually holds a whole /64). Proxy headers are not
// trusted: a deployment behind a proxy limits per proxy, which is
// conservative.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// signinAgainURL is the sign-in form for a signed-in browser that must
// enter its password again (an app's max_age or prompt=login) before going
// on to next.
func signinAgainURL(next string) string {
	return "/signin?" + reauthField + "=1&next=" + url.QueryEscape(next)
}

// signinAsOtherURL is the sign-in form for a browser signed in as someone
// other than the user an app's id_token_hint names.
func signinAsOtherURL(next string) string {
	return "/signin?" + reauthField + "=" + reauthOtherUser + "&next=" + url.QueryEscape(next)
}

// reauthField marks a sign-in asked for again (signinAgainURL,
// signinAsOtherURL), in the URL and then in the form.
const (
	reauthField     = "reauth"
	reauthOtherUser = "user"
)

// signinPage shows the sign-in form, or sends a signed-in browser on unless
// it must sign in again (signinAgainURL).
func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	ps, err := s.loadSession(r.Context(), r)
	if err != nil {
		s.pageError(w, r, nil, err)
		return
	}
	email := ""
	if ps != nil {
		if r.URL.Query().Get(reauthField) == "" {
			http.Redirect(w, r, cmp.Or(next, defaultNext), http.StatusSeeOther)
			return
		}
		if r.URL.Query().Get(reauthField) != reauthOtherUser {
			email = ps.user.Email
		}
	}
	s.renderSignin(w, r, http.StatusOK, email, next, "")
}

// renderSignin shows the form; one asked for again (reauthField in the URL
// or the form) says why, and keeps saying it until the sign-in succeeds.
func (s *Server) renderSignin(w http.ResponseWriter, r *http.Request, status int, email, next, msg string) {
	reauth := cmp.Or(r.Form.Get(reauthField), r.URL.Query().Get(reauthField))
	p := &webui.SignInPage{Layout: s.layout(w, r, nil, "Sign in", ""), Email: email, Next: next, Error: msg,
		Again: reauth != "", OtherUser: reauth == reauthOtherUser}
	p.CSRF = s.signinToken(w, r)
	if err := s.pages.ui.SignIn(w, status, p); err != nil {
		s.pageError(w, r, nil, err)
	}
}

// signin checks an email and password and starts a session. Every failure
// says the same thing, and an unknown email costs the same argon2id work as
// a wrong password, so the form does not tell which emails have accounts.
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.parseForm(w, r); err != nil {
		s.pageError(w, r, nil, err)
		return
	}
	typed := strings.TrimSpace(r.PostFormValue("email"))
	email := valet.NormalizeEmail(typed)
	password := r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"))
	if err := s.checkSigninCSRF(r); err != nil {
		s.renderSignin(w, r, http.StatusForbidden, typed, next, "The sign-in form expired. Please enter your password again.")
		return
	}
	if email == "" || password == "" {
		s.renderSignin(w, r, http.StatusBadRequest, typed, next, "Enter your email and your password.")
		return
	}
	// No real address is longer than 254 bytes; a longer one is only
	// limited by address, so junk cannot grow the limiter's keys.
	keys := []string{"addr:" + clientAddr(r)}
	if len(email) <= 254 {
		keys = append(keys, "email:"+email)
	}
	limit := valet.SignInLimit{Attempts: s.cfg.SignInLimit.Requests, Per: s.cfg.SignInLimit.Per}
	retry, err := s.store.ReserveSignIn(ctx, keys, limit)
	if err != nil {
		s.pageError(w, r, nil, err)
		return
	}
	if retry > 0 {
		secs := max(1, int(math.Ceil(retry.Seconds())))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		wait := "a minute"
		if secs > 90 {
			wait = strconv.Itoa((secs+59)/60) + " minutes"
		} else if secs > 1 {
			wait = strconv.Itoa(secs) + " seconds"
		}
		s.renderSignin(w, r, http.StatusTooManyRequests, typed, next, "Too many failed sign-ins. Please wait "+wait+" and try again.")
		return
	}
	user, err := s.store.FindUserByEmail(ctx, email)
	if err != nil && valet.ErrorCode(err) != valet.ENOTFOUND {
		s.pageError(w, r, nil, err)
		return
	}
	ok := false
	if user != nil && user.PasswordHash != "" && len(password) <= passwd.MaxLength {
		ok, _ = passwd.Verify(user.PasswordHash, password)
	} else {
		_, _ = passwd.Verify(s.pages.dummyHash(), password)
	}
	if !ok {
		s.log.InfoContext(ctx, "sign-in failed", "addr", clientAddr(r), "request_id", RequestID(ctx))
		s.renderSignin(w, r, http.StatusUnauthorized, typed, next, "Wrong email or password.")
		return
	}
	if err := s.store.ReleaseSignIn(ctx, keys, limit); err != nil {
		s.pageError(w, r, nil, err)
		return
	}

	ms, err := s.store.ListMemberships(ctx, user.ID)
	if err != nil {
		s.pageError(w, r, nil, err)
		return
	}
	var accountID int64
	if len(ms) == 1 {
		accountID = ms[0].Account.ID
	} else if old, err := s.loadSession(ctx, r); err == nil && old != nil && old.user.ID == user.ID && old.account != nil {
		// Signing in again (an app's max_age or prompt=login) keeps the
		// account the browser was working in.
		accountID = old.account.ID
	}
	// A new secret on every sign-in: a session id planted before signing in
	// (session fixation) is never promoted.
	if err := s.endSession(ctx, w, r); err != nil {
		s.pageError(w, r, nil, err)
		return
	}
	if err := s.startSession(ctx, w, user.ID, accountID); err != nil {
		s.pageError(w, r, nil, err)
		return
	}
	s.setCookie(w, csrfCookieName, "", -1, time.Time{})
	s.log.InfoContext(ctx, "signed in", "user_id", user.ID, "request_id", RequestID(ctx))
	to := cmp.Or(next, defaultNext)
	// The consent page has its own account picker.
	if accountID == 0 && !strings.HasPrefix(next, "/oauth/consent?") {
		to = "/accounts"
		if next != "" {
			to += "?next=" + url.QueryEscape(next)
		}
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// signout ends the session (its CSRF token was checked by page).
func (s *Server) signout(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	if err := s.store.DeleteSession(r.Context(), ps.secret); err != nil {
		return err
	}
	s.setCookie(w, sessionCookieName, "", -1, time.Time{})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}

// accountsPage lets a member of several accounts choose one.
func (s *Server) accountsPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	p := &webui.AccountsPage{Layout: s.layout(w, r, ps, "Choose a helpdesk", ""), Next: safeNext(r.URL.Query().Get("next"))}
	// The switcher is a signed-out style page: no account frame around it.
	p.Account = nil
	return s.pages.ui.Accounts(w, http.StatusOK, p)
}

// switchAccount makes the session work in another account of the user's.
func (s *Server) switchAccount(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	id, err := strconv.ParseInt(r.PostFormValue("account_id"), 10, 64)
	if err != nil || !ps.useAccount(id) {
		// Not one of the user's accounts: as if it did not exist.
		return valet.Errorf(valet.ENOTFOUND, "Not found.")
	}
	if err := s.store.SetSessionAccount(r.Context(), ps.secret, id); err != nil {
		return err
	}
	s.redirectWithFlash(w, r, cmp.Or(safeNext(r.PostFormValue("next")), defaultNext), "switched")
	return nil
}
