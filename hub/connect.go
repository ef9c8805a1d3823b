package hub

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/valethq/valet"
)

// Connect helpdesk: the authorization code flow with PKCE whose state is
// bound to the hub session that started it, the token answer stored as a
// connection (sealed by the vault), then the webhook registered.

// startConnect is POST /connect (also Reconnect, which names the account).
func (s *Server) startConnect(w http.ResponseWriter, r *http.Request, sess *session) error {
	account := strings.TrimSpace(r.PostFormValue("account"))
	if account != "" && !validAccount(account) {
		return &pageErr{Status: http.StatusBadRequest, Heading: "Bad request", Message: "That is not a helpdesk account name."}
	}
	p, err := s.helpdesk(r.Context())
	if err != nil {
		return err
	}
	conf, err := s.providers.OAuth2(p, s.cfg.connectScopes()...)
	if err != nil {
		return err
	}
	f := newFlow()
	f.Session = sessionHash(sess.secret)
	f.Account = account
	opts := []oauth2.AuthCodeOption{oidc.Nonce(f.Nonce)}
	if p.PKCE {
		opts = append(opts, oauth2.S256ChallengeOption(f.Verifier))
	}
	if account != "" {
		// valet preselects the account on its consent page.
		opts = append(opts, oauth2.SetAuthURLParam("account", account))
	}
	s.saveFlow(w, flowConnect, f)
	http.Redirect(w, r, conf.AuthCodeURL(f.State, opts...), http.StatusSeeOther)
	return nil
}

// connectCallback is GET /connect/callback.
func (s *Server) connectCallback(w http.ResponseWriter, r *http.Request, sess *session) error {
	ctx := r.Context()
	f, err := s.takeFlow(w, r, flowConnect)
	if err != nil {
		return &pageErr{Status: http.StatusBadRequest, Heading: "This connection attempt has expired",
			Message: "It took longer than 10 minutes, or was started in another browser. Nothing was connected; start again.", Retry: "connect", Err: err}
	}
	// The flow must belong to this session: a code obtained by someone
	// else and replayed here would attach their helpdesk to this user.
	if subtle.ConstantTimeCompare([]byte(f.Session), []byte(sessionHash(sess.secret))) != 1 {
		return &pageErr{Status: http.StatusBadRequest, Heading: "This answer does not belong to your session",
			Message: "The connection was started by another hub session. Nothing was connected; start again.", Retry: "connect"}
	}
	p, err := s.helpdesk(ctx)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := checkResponse(q, f, p); err != nil {
		return err
	}
	if err := authError(q, "connect"); err != nil {
		return err
	}
	code := q.Get("code")
	if code == "" {
		return &pageErr{Status: http.StatusBadRequest, Heading: "The helpdesk's answer is incomplete",
			Message: "It has no authorization code. Nothing was connected; start again.", Retry: "connect"}
	}
	scopes := s.cfg.connectScopes()
	conf, err := s.providers.OAuth2(p, scopes...)
	if err != nil {
		return err
	}
	started := s.clock.Now()
	var opts []oauth2.AuthCodeOption
	if p.PKCE {
		opts = append(opts, oauth2.VerifierOption(f.Verifier))
	}
	tok, err := conf.Exchange(s.clientCtx(ctx), code, opts...)
	if err != nil {
		return &pageErr{Status: http.StatusBadGateway, Heading: "The helpdesk did not complete the connection",
			Message: "Its token endpoint refused the authorization code" + oauthErrorText(err) + ". Nothing was connected; start again.", Retry: "connect", Err: err}
	}
	if err := s.checkConnectIDToken(ctx, tok, f); err != nil {
		return err
	}
	account, _ := tok.Extra("account").(string)
	if account == "" && p.Name == ProviderGorgias {
		account = f.Account // Gorgias's account is in its host, which we chose
	}
	if account == "" {
		return &pageErr{Status: http.StatusBadGateway, Heading: "The helpdesk did not say which account it connected",
			Message: "Its token answer names no account. Nothing was connected."}
	}
	if f.Account != "" && account != f.Account && p.Name != ProviderGorgias {
		s.dropGrant(ctx, p, tok, account)
		return &pageErr{Status: http.StatusConflict, Heading: "Another account was approved",
			Message: "You asked to connect " + f.Account + " but approved " + account + " on the helpdesk. Nothing was connected; start again and choose " + f.Account + "."}
	}
	if granted, _ := tok.Extra("scope").(string); granted != "" {
		scopes = strings.Fields(granted)
	}
	expires := tok.Expiry
	if expires.IsZero() {
		expires = started.Add(p.DefaultTTL)
	}
	conn := &valet.Connection{Provider: p.Name, BaseURL: p.BaseURL, Account: account, Scopes: scopes,
		ConnectedBy: sess.user.ID, AccessExpires: expires, NextRefresh: s.tokens.nextRefresh(started, expires)}
	if err := s.store.SaveConnection(ctx, conn, s.vault.Seal(Secrets{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken})); err != nil {
		if valet.ErrorCode(err) == valet.ECONFLICT {
			s.dropGrant(ctx, p, tok, account)
			return &pageErr{Status: http.StatusConflict, Heading: account + " is already connected",
				Message: "Another hub user connected this helpdesk account. Nothing was changed: ask them to disconnect it first, or use their connection."}
		}
		return fmt.Errorf("hub: store the connection to %s: %w", account, err)
	}
	// The new token replaces whatever an earlier connection left in memory.
	s.tokens.remember(conn, tok.AccessToken)
	s.log.Info("connected", "connection", conn.ID, "account", account, "user", sess.user.ID, "scopes", strings.Join(scopes, " "),
		"refresh_token", tok.RefreshToken != "")
	flash := "Connected to " + account + "."
	if s.events != nil {
		if err := s.events.Register(ctx, conn); err != nil {
			s.log.Warn("register the webhook", "connection", conn.ID, "account", account, "err", err)
			flash += " Live updates could not be set up (" + truncate(valet.ErrorMessage(err), 200) + "); the hub polls for changes instead."
		}
	}
	s.setFlash(w, flash)
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// dropGrant revokes at the helpdesk (RFC 7009) the grant a connect made and
// the hub does not keep, rather than leave it live with nobody holding it.
func (s *Server) dropGrant(ctx context.Context, p *Provider, tok *oauth2.Token, account string) {
	token, hint := tok.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = tok.AccessToken, "access_token"
	}
	if err := s.providers.Revoke(ctx, p, token, hint); err != nil {
		s.log.Warn("revoke a connection that was not kept", "account", account, "err", err)
	}
}

// checkConnectIDToken verifies the ID token of a connect answer, if the
// connect scopes asked for one (openid): its nonce must be ours.
func (s *Server) checkConnectIDToken(ctx context.Context, tok *oauth2.Token, f *flow) error {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil
	}
	verifier, err := s.idVerifier(ctx)
	if err == nil {
		var idt *oidc.IDToken
		if idt, err = verifier.Verify(s.clientCtx(ctx), raw); err == nil &&
			subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
			err = errors.New("hub: the ID token's nonce is not the one sent")
		}
	}
	if err != nil {
		return &pageErr{Status: http.StatusBadGateway, Heading: "The connection could not be verified",
			Message: "The helpdesk's ID token failed verification. Nothing was connected; start again.", Retry: "connect", Err: err}
	}
	return nil
}
