package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/valethq/valet"
	"github.com/valethq/valet/apiclient"
)

// The dashboard: every connection of the signed-in user with its state in
// plain words, Reconnect and Disconnect, a connection's recent tickets, and
// the live activity feed.

// connView is a connection as the pages show it.
type connView struct {
	valet.Connection
	Explanation string
}

func viewOf(c valet.Connection) connView {
	v := connView{Connection: c}
	switch c.Status {
	case valet.ConnectionActive:
		v.Explanation = "Working. The hub renews its access before it expires."
	case valet.ConnectionDegraded:
		v.Explanation = "The helpdesk could not be reached or answered with an error. The hub keeps retrying, waiting longer after each failure; nothing is needed from you unless it lasts."
	case valet.ConnectionRevoked:
		v.Explanation = "The helpdesk no longer accepts this connection: access was revoked there, or the refresh token was refused. Reconnect to restore it."
	default:
		v.Explanation = c.Status
	}
	return v
}

// activityLimit is how many activity entries the feed shows.
const activityLimit = 30

type dashboardData struct {
	layout
	Connections []connView
	Activity    []activityView
}

// home is GET /: the dashboard, or the sign-in page when signed out.
func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess, err := s.loadSession(r.Context(), r)
	if err != nil {
		s.fail(w, r, nil, err)
		return
	}
	if sess == nil {
		s.renderSignin(w, r, http.StatusOK, "")
		return
	}
	if err := s.dashboard(w, r, sess); err != nil {
		s.fail(w, r, sess, err)
	}
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request, sess *session) error {
	ctx := r.Context()
	conns, err := s.store.ListConnections(ctx, sess.user.ID)
	if err != nil {
		return fmt.Errorf("hub: list connections: %w", err)
	}
	act, err := s.activity(ctx, sess.user.ID)
	if err != nil {
		return err
	}
	d := dashboardData{layout: s.layout(w, r, sess, "Connections"), Activity: act}
	for _, c := range conns {
		d.Connections = append(d.Connections, viewOf(c))
	}
	s.render(w, r, http.StatusOK, "dashboard", d)
	return nil
}

// activityView is one activity entry for the page and its JSON feed.
type activityView struct {
	ID        int64  `json:"id"`
	Account   string `json:"account"`
	EventType string `json:"event_type"`
	Summary   string `json:"summary"`
	Via       string `json:"via"`
	Received  string `json:"received"`
}

func (s *Server) activity(ctx context.Context, userID int64) ([]activityView, error) {
	list, err := s.store.ListActivity(ctx, userID, activityLimit)
	if err != nil {
		return nil, fmt.Errorf("hub: list activity: %w", err)
	}
	out := make([]activityView, 0, len(list))
	for _, a := range list {
		out = append(out, activityView{ID: a.ID, Account: a.Account, EventType: a.EventType, Summary: a.Summary,
			Via: a.Via, Received: a.Received.UTC().Format("2 Jan 15:04:05")})
	}
	return out, nil
}

// activityJSON is GET /activity.json, which the dashboard polls.
func (s *Server) activityJSON(w http.ResponseWriter, r *http.Request, sess *session) error {
	act, err := s.activity(r.Context(), sess.user.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"activity": act})
	return nil
}

// ownConnection returns the connection named in the path if the user
// connected it; anyone else's is not found, not forbidden, so ids reveal
// nothing.
func (s *Server) ownConnection(ctx context.Context, r *http.Request, sess *session) (*valet.Connection, *valet.ConnectionSecrets, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return nil, nil, notFound()
	}
	c, sec, err := s.store.FindConnection(ctx, id)
	if valet.ErrorCode(err) == valet.ENOTFOUND || err == nil && c.ConnectedBy != sess.user.ID {
		return nil, nil, &pageErr{Status: http.StatusNotFound, Heading: "Connection not found",
			Message: "It was disconnected, or it is not yours.", Err: err}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("hub: find connection %d: %w", id, err)
	}
	return c, sec, nil
}

// ticketsShown is how many of an account's newest tickets the connection
// page lists.
const ticketsShown = 20

type connectionData struct {
	layout
	Conn         connView
	Tickets      []valet.Ticket
	TicketsError string
}

// connectionPage is GET /connections/{id}: the connection and its
// account's newest tickets, read through the connection's own token. A
// refusal that means revocation shows the connection revoked at once.
func (s *Server) connectionPage(w http.ResponseWriter, r *http.Request, sess *session) error {
	ctx := r.Context()
	c, _, err := s.ownConnection(ctx, r, sess)
	if err != nil {
		return err
	}
	d := connectionData{}
	if c.Status != valet.ConnectionRevoked {
		d.Tickets, err = s.recentTickets(ctx, c)
		switch {
		case errors.Is(err, ErrRevoked):
			// Tokens has marked it; show what is stored now.
			if latest, _, ferr := s.store.FindConnection(ctx, c.ID); ferr == nil {
				c = latest
			} else {
				c.Status = valet.ConnectionRevoked
			}
		case err != nil:
			s.log.Warn("list tickets", "connection", c.ID, "account", c.Account, "err", err, "request_id", requestID(ctx))
			d.TicketsError = ticketsErrorText(err)
		}
	}
	d.layout = s.layout(w, r, sess, c.Account)
	d.Conn = viewOf(*c)
	s.render(w, r, http.StatusOK, "connection", d)
	return nil
}

func (s *Server) recentTickets(ctx context.Context, c *valet.Connection) ([]valet.Ticket, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	client, err := s.tokens.APIClient(ctx, c, apiclient.WithRetries(1))
	if err != nil {
		return nil, err
	}
	page, err := client.TicketsPage(ctx, apiclient.TicketListOptions{PageSize: ticketsShown})
	if err != nil {
		return nil, err
	}
	return page.Data, nil
}

// ticketsErrorText says why tickets could not be listed, in words that
// hold nothing secret.
func ticketsErrorText(err error) string {
	switch {
	case apiclient.IsForbidden(err):
		return "This connection was not granted tickets:read. Reconnect to grant it."
	case errors.Is(err, ErrUnsealable):
		return "The hub cannot decrypt this connection's tokens: its key changed. Reconnect, or restart the hub with the old key in VALET_HUB_OLD_KEYS."
	case apiclient.IsRateLimited(err):
		return "The helpdesk's rate limit is reached; try again in a few seconds."
	case apiclient.StatusCode(err) != 0:
		return fmt.Sprintf("The helpdesk answered HTTP %d; try again in a moment.", apiclient.StatusCode(err))
	}
	return "The helpdesk could not be reached; the hub keeps trying."
}

// disconnect is POST /connections/{id}/disconnect: the webhook is removed
// (best effort: a revoked connection cannot call the helpdesk), the refresh token revoked at the helpdesk (RFC 7009,
// which ends the whole grant), then the tokens deleted here.
func (s *Server) disconnect(w http.ResponseWriter, r *http.Request, sess *session) error {
	ctx := r.Context()
	c, sealed, err := s.ownConnection(ctx, r, sess)
	if err != nil {
		return err
	}
	if s.events != nil {
		if err := s.events.Unregister(ctx, c); err != nil {
			s.log.Warn("remove the webhook", "connection", c.ID, "account", c.Account, "err", err)
		}
	}
	revokeErr := s.revoke(ctx, c, sealed)
	if revokeErr != nil {
		s.log.Warn("revoke at the helpdesk", "connection", c.ID, "account", c.Account, "err", revokeErr)
	}
	if err := s.store.DeleteConnection(ctx, c.ID); err != nil && valet.ErrorCode(err) != valet.ENOTFOUND {
		return fmt.Errorf("hub: delete connection %d: %w", c.ID, err)
	}
	s.tokens.forget(c.ID)
	s.log.Info("disconnected", "connection", c.ID, "account", c.Account, "user", sess.user.ID)
	msg := "Disconnected from " + c.Account + ". The hub's tokens were revoked and deleted."
	if revokeErr != nil {
		msg = "Disconnected from " + c.Account + " and deleted its tokens, but the helpdesk could not be told: " +
			"remove the hub under Settings → Connected apps there."
	}
	s.setFlash(w, msg)
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// revoke revokes the connection's refresh token (or, without one, its
// access token) at the helpdesk.
func (s *Server) revoke(ctx context.Context, c *valet.Connection, sealed *valet.ConnectionSecrets) error {
	sec, err := s.vault.Open(*sealed)
	if err != nil {
		return err
	}
	p, err := s.providers.Resolve(ctx, c.Provider, c.BaseURL, c.Account)
	if err != nil {
		return err
	}
	token, hint := sec.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = sec.AccessToken, "access_token"
	}
	return s.providers.Revoke(ctx, p, token, hint)
}
