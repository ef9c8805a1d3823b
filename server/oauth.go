package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/webui"
)

// OAuthProvider is the authorization server as the pages need it; the
// authserver package implements it and cmd/valet wires it in.
type OAuthProvider interface {
	// Handler serves /oauth/... and /.well-known/....
	Handler() http.Handler
	// Pending returns the request behind a consent page id. Errors: ENOTFOUND.
	Pending(ctx context.Context, id string) (*valet.PendingAuthorization, error)
	// Approve records consent to a request Pending returned and says where
	// the browser goes next. remembered is the user's active grant when it
	// already holds every requested scope: there is no new consent to
	// record then.
	Approve(ctx context.Context, p *valet.PendingAuthorization, userID, accountID int64, authTime time.Time, remembered *valet.Grant) (string, error)
	// Deny records the refusal of a request Pending returned and returns
	// the app's error redirect.
	Deny(ctx context.Context, p *valet.PendingAuthorization, userID, accountID int64) (string, error)
	// Refuse returns the app's error redirect for a request Pending
	// returned with NoPrompt (prompt=none) that cannot go on without a
	// page. Errors: ENOTFOUND.
	Refuse(ctx context.Context, p *valet.PendingAuthorization, code valet.PromptError, description string) (string, error)
}

// WithOAuth mounts the authorization server and its consent page.
func WithOAuth(p OAuthProvider) Option { return func(s *Server) { s.oauth = p } }

// registerOAuth mounts the provider when one was given.
func (s *Server) registerOAuth(mux *http.ServeMux) {
	if s.oauth == nil {
		return
	}
	h := s.oauth.Handler()
	for _, method := range []string{"GET", "POST", "OPTIONS"} {
		mux.Handle(method+" /oauth/", h)
		mux.Handle(method+" /.well-known/", h)
	}
	mux.Handle("GET /oauth/consent", s.pageOr(false, s.consentPage, s.consentSignedOut))
	mux.Handle("POST /oauth/consent", s.page(false, s.postConsent))
	mux.Handle("GET /settings/apps", s.page(true, s.connectedAppsPage))
	mux.Handle("POST /settings/apps/{id}/revoke", s.page(true, s.postRevokeGrant))
	mux.Handle("GET /settings/audit", s.page(true, s.auditPage))
	mux.Handle("GET /developers", s.page(false, s.developersPage))
	mux.Handle("POST /developers/apps", s.page(false, s.postApp))
	mux.Handle("GET /developers/apps/{id}", s.page(false, s.appEditPage))
	mux.Handle("POST /developers/apps/{id}", s.page(false, s.postEditApp))
	mux.Handle("POST /developers/apps/{id}/rotate", s.page(false, s.postRotateSecret))
	mux.Handle("POST /developers/apps/{id}/delete", s.page(false, s.postDeleteApp))
}

// consentAccount picks the account a consent is for: the one named in the
// form or by the app's account= hint, else the session's, else the only one.
func consentAccount(ps *pageSession, formAccount, hint string) *valet.Account {
	for i := range ps.memberships {
		a := &ps.memberships[i].Account
		if formAccount != "" && strconv.FormatInt(a.ID, 10) == formAccount {
			return a
		}
	}
	if formAccount != "" {
		return nil
	}
	for i := range ps.memberships {
		if a := &ps.memberships[i].Account; hint != "" && a.Name == hint {
			return a
		}
	}
	if ps.account != nil {
		return ps.account
	}
	if len(ps.memberships) == 1 {
		return &ps.memberships[0].Account
	}
	return nil
}

// consentSignedOut answers a consent page asked for without a session: the
// sign-in page, or the app's login_required when it asked for no page
// (prompt=none).
func (s *Server) consentSignedOut(w http.ResponseWriter, r *http.Request) {
	pending, err := s.oauth.Pending(r.Context(), r.URL.Query().Get("id"))
	if err != nil && valet.ErrorCode(err) != valet.ENOTFOUND {
		s.pageError(w, r, nil, err)
		return
	}
	if err != nil || !pending.NoPrompt { // an unknown request says so after sign-in, as before
		s.toSignin(w, r)
		return
	}
	if err := s.refuseAuthorization(w, r, pending, valet.LoginRequired, "The user is not signed in."); err != nil {
		s.pageError(w, r, nil, err)
	}
}

// refuseAuthorization answers a prompt=none request with the app's error
// redirect.
func (s *Server) refuseAuthorization(w http.ResponseWriter, r *http.Request, pending *valet.PendingAuthorization, code valet.PromptError, description string) error {
	to, err := s.oauth.Refuse(r.Context(), pending, code, description)
	if err != nil {
		return err
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// signInFirst is the sign-in page the browser must pass before the request
// can go on, coming back to back: as the user the app's id_token_hint
// names, or again for its max_age or prompt=login. Empty when the session
// serves.
func signInFirst(p *valet.PendingAuthorization, ps *pageSession, back string) string {
	switch {
	case p.OtherUser(ps.user.ID):
		return signinAsOtherURL(back)
	case p.NeedsSignIn(ps.session.CreatedDatetime):
		return signinAgainURL(back)
	}
	return ""
}

// consentPage asks for the scopes the app does not hold yet on the account,
// or hands straight back when it holds them all (remembered consent) and
// the app did not ask for the page (prompt=consent or select_account). A
// sign-in too old for the app's max_age or prompt=login is asked for again
// first. With prompt=none, whatever needs a page is answered to the app
// as an error instead.
func (s *Server) consentPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	pending, err := s.oauth.Pending(ctx, r.URL.Query().Get("id"))
	if err != nil {
		return err
	}
	if to := signInFirst(pending, ps, r.URL.RequestURI()); to != "" {
		if pending.NoPrompt {
			return s.refuseAuthorization(w, r, pending, valet.LoginRequired,
				"The request needs a sign-in this browser has not made (id_token_hint, max_age or prompt=login).")
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return nil
	}
	if len(ps.memberships) == 0 {
		if pending.NoPrompt {
			return s.refuseAuthorization(w, r, pending, valet.InteractionRequired, "The user is not a member of any helpdesk account.")
		}
		return valet.Errorf(valet.EFORBIDDEN, "You are not a member of any helpdesk account, so there is nothing to connect this app to.")
	}
	account := consentAccount(ps, "", pending.AccountHint)
	var granted valet.ScopeSet
	if account != nil {
		var g *valet.Grant
		if store, ok := s.store.(valet.OAuthService); ok {
			g, err = store.FindActiveGrant(ctx, account.ID, ps.user.ID, pending.App.ID)
			if err != nil && valet.ErrorCode(err) != valet.ENOTFOUND {
				return err
			}
			if g != nil {
				granted = g.Scopes
			}
		}
		if g != nil && granted.Contains(pending.Scopes) && !pending.AskConsent {
			to, err := s.oauth.Approve(ctx, pending, ps.user.ID, account.ID, ps.session.CreatedDatetime, g)
			if err != nil {
				return err
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return nil
		}
	}
	if pending.NoPrompt {
		if account == nil {
			return s.refuseAuthorization(w, r, pending, valet.AccountSelectionRequired, "The user belongs to several helpdesk accounts; name one with account=.")
		}
		return s.refuseAuthorization(w, r, pending, valet.ConsentRequired, "The user has not approved every requested scope.")
	}
	p := &webui.ConsentPage{Layout: s.layout(w, r, ps, "Allow "+pending.App.Name+"?", ""), ID: pending.ID,
		App: pending.App, Accounts: ps.memberships, Account: account}
	for _, info := range valet.Scopes { // in the catalog's order
		sc := info.Scope
		if !pending.Scopes.Has(sc) {
			continue
		}
		if granted.Has(sc) {
			p.Granted = append(p.Granted, info)
		} else {
			p.New = append(p.New, info)
		}
	}
	if len(p.New) == 0 { // asked again (prompt=consent): all of it is approved anew
		p.New, p.Granted = p.Granted, nil
	}
	// The form's answer redirects to the app: let the browser follow it.
	formAction := "'self'"
	for _, u := range pending.App.RedirectURIs {
		if parsed, err := url.Parse(u); err == nil {
			formAction += " " + parsed.Scheme + "://" + parsed.Host
		}
	}
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	w.Header().Set("Cache-Control", "no-store")
	return s.pages.ui.Consent(w, http.StatusOK, p)
}

// postConsent records Allow or Deny (CSRF checked by page).
func (s *Server) postConsent(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	pending, err := s.oauth.Pending(ctx, r.PostFormValue("id"))
	if err != nil {
		return err
	}
	account := consentAccount(ps, r.PostFormValue("account"), pending.AccountHint)
	var to string
	switch r.PostFormValue("action") {
	case "allow":
		if account == nil {
			return valet.Errorf(valet.EINVALID, "Choose the helpdesk account to connect the app to.")
		}
		if to := signInFirst(pending, ps, "/oauth/consent?id="+url.QueryEscape(pending.ID)); to != "" {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return nil
		}
		to, err = s.oauth.Approve(ctx, pending, ps.user.ID, account.ID, ps.session.CreatedDatetime, nil)
	case "deny":
		var accountID int64 // a refusal needs no account
		if account != nil {
			accountID = account.ID
		}
		to, err = s.oauth.Deny(ctx, pending, ps.user.ID, accountID)
	default:
		return valet.Errorf(valet.EINVALID, "Choose Allow or Deny.")
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// connectedApps returns the grants ps may see: all of the account's for
// owners and admins, the user's own for everyone else.
func (s *Server) connectedApps(ctx context.Context, ps *pageSession) ([]webui.ConnectedApp, error) {
	store, ok := s.store.(valet.OAuthService)
	if !ok {
		return nil, valet.Errorf(valet.ENOTFOUND, "There is no page at this address.")
	}
	grants, err := store.ListGrants(ctx, ps.account.ID)
	if err != nil {
		return nil, err
	}
	apps, err := store.ListApps(ctx, 0)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]valet.App, len(apps))
	for _, a := range apps {
		byID[a.ID] = a
	}
	var out []webui.ConnectedApp
	for _, g := range grants {
		if !ps.canManage() && g.UserID != ps.user.ID {
			continue
		}
		row := webui.ConnectedApp{Grant: g, App: byID[g.AppID], CanRevoke: true, ApprovedBy: "someone who left"}
		if u, err := s.store.FindUserByID(ctx, g.UserID); err == nil {
			row.ApprovedBy = u.Name
		}
		for _, info := range valet.Scopes {
			if g.Scopes.Has(info.Scope) {
				row.Scopes = append(row.Scopes, info)
			}
		}
		out = append(out, row)
	}
	return out, nil
}

func (s *Server) connectedAppsPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	apps, err := s.connectedApps(r.Context(), ps)
	if err != nil {
		return err
	}
	p := &webui.ConnectedAppsPage{Layout: s.layout(w, r, ps, "Connected apps", "settings"), CanManage: ps.canManage(), Apps: apps}
	return s.pages.ui.ConnectedApps(w, http.StatusOK, p)
}

// postRevokeGrant revokes an installed app: its tokens stop working at once.
func (s *Server) postRevokeGrant(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return valet.Errorf(valet.ENOTFOUND, "This app is not connected.")
	}
	apps, err := s.connectedApps(ctx, ps)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(apps, func(a webui.ConnectedApp) bool { return a.Grant.ID == id })
	if i < 0 {
		return valet.Errorf(valet.ENOTFOUND, "This app is not connected.")
	}
	if err := s.store.RevokeGrant(ctx, ps.account.ID, id); err != nil {
		return err
	}
	details, _ := json.Marshal(map[string]any{"grant_id": id, "by": "connected apps page"})
	if err := s.store.(valet.OAuthService).AppendAudit(ctx, &valet.AuditEntry{AccountID: ps.account.ID,
		ActorUserID: ps.user.ID, AppID: apps[i].App.ID, Action: valet.AuditGrantRevoked, Details: details}); err != nil {
		return err
	}
	s.redirectWithFlash(w, r, "/settings/apps", "app-revoked")
	return nil
}
