package server

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/valethq/valet"
	"github.com/valethq/valet/webui"
)

// The webhooks pages of account settings: everyone in the account sees
// them, owners and admins change them (as the other settings).

// pageDeliveryLimit is how much of the delivery log a page shows: the most
// the store answers.
const pageDeliveryLimit = valet.MaxLimit

// The flash messages of these pages. They join the table in session.go at
// start-up so this feature's wording stays with its handlers.
// integrationFields maps the store's field names onto the form's inputs.
var integrationFields = map[string]formField{
	"name":          {"name", "Name"},
	"url":           {"url", "URL"},
	"http.url":      {"url", "URL"},
	"triggers":      {"triggers", "Triggers"},
	"http.triggers": {"triggers", "Triggers"},
}

// webhooksUnavailable says why webhooks cannot be set up here, or "". The
// store keeps signing secrets sealed and so refuses to create webhooks
// without a key, which cmd/valet derives from VALET_SECRET; saying so up
// front beats a refused form.
func (s *Server) webhooksUnavailable() string {
	if sealer, ok := s.store.(secretSealer); ok && !sealer.CanSealSecrets() {
		return "Webhooks need a server secret: start valet with VALET_SECRET (or VALET_SECRET_FILE) set to add them. Until then nothing is delivered."
	}
	return ""
}

// secretSealer is the part of a store that tells whether it holds the key
// sealing webhook secrets (sqlstore.WithSealKey).
type secretSealer interface{ CanSealSecrets() bool }

// integrationRows adds to each webhook the names of the user and app that
// set it up.
func (s *Server) integrationRows(ctx context.Context, ins []valet.Integration) ([]webui.IntegrationRow, error) {
	users := map[int64]string{}
	apps := map[int64]string{}
	for _, in := range ins {
		if in.CreatedByUserID != nil {
			users[*in.CreatedByUserID] = ""
		}
		if in.AppID != nil {
			apps[*in.AppID] = ""
		}
	}
	for id := range users {
		u, err := s.store.FindUserByID(ctx, id)
		switch {
		case err == nil:
			users[id] = u.Name
		case valet.ErrorCode(err) == valet.ENOTFOUND:
			users[id] = "a former user"
		default:
			return nil, err
		}
	}
	if oauth, ok := s.store.(valet.OAuthService); ok && len(apps) > 0 {
		all, err := oauth.ListApps(ctx, 0)
		if err != nil {
			return nil, err
		}
		for _, a := range all {
			if _, ok := apps[a.ID]; ok {
				apps[a.ID] = a.Name
			}
		}
	}
	out := make([]webui.IntegrationRow, len(ins))
	for i, in := range ins {
		out[i] = webui.IntegrationRow{Integration: in}
		if in.CreatedByUserID != nil {
			out[i].CreatedBy = users[*in.CreatedByUserID]
		}
		if in.AppID != nil {
			out[i].App = apps[*in.AppID]
			if out[i].App == "" {
				out[i].App = "a deleted app"
			}
		}
	}
	return out, nil
}

// renderIntegrations shows the webhook list with the add form as given.
func (s *Server) renderIntegrations(w http.ResponseWriter, r *http.Request, ps *pageSession, status int, form webui.Form, checked []string) error {
	page, err := s.store.ListIntegrations(r.Context(), ps.account.ID,
		valet.ListOptions{Cursor: r.URL.Query().Get("cursor"), Limit: valet.MaxLimit})
	if err != nil {
		return err
	}
	rows, err := s.integrationRows(r.Context(), page.Data)
	if err != nil {
		return err
	}
	if form.Values == nil && checked == nil {
		// A new webhook usually wants to hear about new tickets.
		checked = []string{valet.EventTicketCreated}
	}
	p := &webui.IntegrationsPage{Layout: s.layout(w, r, ps, "Webhooks", "settings"), CanManage: ps.canManage(),
		Unavailable: s.webhooksUnavailable(), Integrations: rows, New: form,
		Triggers: webui.TriggerOptions(func(name string) bool { return slices.Contains(checked, name) })}
	if page.PrevCursor != "" {
		p.PrevURL = "/settings/integrations?cursor=" + url.QueryEscape(page.PrevCursor)
	}
	if page.NextCursor != "" {
		p.NextURL = "/settings/integrations?cursor=" + url.QueryEscape(page.NextCursor)
	}
	return s.pages.ui.Integrations(w, status, p)
}

func (s *Server) integrationsPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	return s.renderIntegrations(w, r, ps, http.StatusOK, webui.Form{}, nil)
}

// triggersOf reads the checked triggers of a form.
func triggersOf(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, name := range r.PostForm["triggers"] {
		out[name] = true
	}
	return out
}

// postIntegration adds a webhook and shows its signing secret, once.
func (s *Server) postIntegration(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	if !ps.canManage() {
		return errNotManager()
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	url := strings.TrimSpace(r.PostFormValue("url"))
	checked := r.PostForm["triggers"]
	refuse := func(errs map[string][]string) error {
		return s.renderIntegrations(w, r, ps, http.StatusBadRequest,
			webui.Form{Values: map[string]string{"name": name, "url": url}, Errors: errs}, checked)
	}
	if msg := s.webhooksUnavailable(); msg != "" {
		return refuse(map[string][]string{"form": {msg}})
	}
	in := &valet.Integration{AccountID: ps.account.ID, Type: valet.IntegrationTypeHTTP, Name: name,
		HTTP:            valet.IntegrationHTTP{URL: url, Method: http.MethodPost, Triggers: triggersOf(r)},
		CreatedByUserID: &ps.user.ID}
	secret, err := s.store.CreateIntegration(ctx, in)
	if err != nil {
		if errs, ok := fieldErrors(err, integrationFields); ok {
			return refuse(errs)
		}
		return err
	}
	s.log.InfoContext(ctx, "integration created", "account_id", ps.account.ID, "integration_id", in.ID,
		"user_id", ps.user.ID, "request_id", RequestID(ctx))
	rows, err := s.integrationRows(ctx, []valet.Integration{*in})
	if err != nil {
		return err
	}
	p := &webui.WebhookSecretPage{Layout: s.layout(w, r, ps, "New webhook", "settings"), Integration: rows[0], Secret: secret}
	return s.pages.ui.WebhookSecret(w, http.StatusOK, p)
}

// pageIntegration returns the account's webhook named in the path; another
// account's is not found.
func (s *Server) pageIntegration(r *http.Request, ps *pageSession) (*valet.Integration, error) {
	id, err := pagePathID(r)
	if err != nil {
		return nil, err
	}
	return s.store.FindIntegration(r.Context(), ps.account.ID, id)
}

// renderIntegration shows one webhook, its edit form as given (its stored
// values when form is empty) and its delivery log.
func (s *Server) renderIntegration(w http.ResponseWriter, r *http.Request, ps *pageSession, in *valet.Integration, status int, form webui.Form, triggers map[string]bool) error {
	ctx := r.Context()
	rows, err := s.integrationRows(ctx, []valet.Integration{*in})
	if err != nil {
		return err
	}
	deliveries, err := s.store.ListDeliveries(ctx, ps.account.ID, in.ID, pageDeliveryLimit)
	if err != nil {
		return err
	}
	if form.Values == nil {
		form.Values = map[string]string{"name": in.Name, "url": in.HTTP.URL}
		triggers = in.HTTP.Triggers
	}
	p := &webui.IntegrationPage{Layout: s.layout(w, r, ps, in.Name, "settings"), CanManage: ps.canManage(),
		Integration: rows[0], Edit: form, Deliveries: deliveries,
		Triggers: webui.TriggerOptions(func(name string) bool { return triggers[name] })}
	return s.pages.ui.Integration(w, status, p)
}

func (s *Server) integrationPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	in, err := s.pageIntegration(r, ps)
	if err != nil {
		return err
	}
	return s.renderIntegration(w, r, ps, in, http.StatusOK, webui.Form{}, nil)
}

// postUpdateIntegration saves a webhook's name, URL and triggers.
func (s *Server) postUpdateIntegration(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	if !ps.canManage() {
		return errNotManager()
	}
	in, err := s.pageIntegration(r, ps)
	if err != nil {
		return err
	}
	stored := *in
	in.Name = strings.TrimSpace(r.PostFormValue("name"))
	in.HTTP.URL = strings.TrimSpace(r.PostFormValue("url"))
	in.HTTP.Triggers = triggersOf(r)
	if err := s.store.UpdateIntegration(ctx, in); err != nil {
		if errs, ok := fieldErrors(err, integrationFields); ok {
			return s.renderIntegration(w, r, ps, &stored, http.StatusBadRequest,
				webui.Form{Values: map[string]string{"name": in.Name, "url": in.HTTP.URL}, Errors: errs}, in.HTTP.Triggers)
		}
		return err
	}
	s.log.InfoContext(ctx, "integration updated", "account_id", ps.account.ID, "integration_id", in.ID,
		"user_id", ps.user.ID, "request_id", RequestID(ctx))
	s.redirectWithFlash(w, r, integrationPagePath(in.ID), "integration-updated")
	return nil
}

// setIntegrationStatus is the Disable and Re-enable buttons. Re-enabling
// resets the failure count (the store does), so an integration disabled
// after failures gets a fresh run of MaxConsecutiveFailures attempts.
func (s *Server) setIntegrationStatus(status, flash string) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
		ctx := r.Context()
		if !ps.canManage() {
			return errNotManager()
		}
		in, err := s.pageIntegration(r, ps)
		if err != nil {
			return err
		}
		in.Status = status
		if err := s.store.UpdateIntegration(ctx, in); err != nil {
			return err
		}
		s.log.InfoContext(ctx, "integration "+status, "account_id", ps.account.ID, "integration_id", in.ID,
			"user_id", ps.user.ID, "request_id", RequestID(ctx))
		s.redirectWithFlash(w, r, integrationPagePath(in.ID), flash)
		return nil
	}
}

// postDeleteIntegration deletes a webhook with its pending deliveries.
func (s *Server) postDeleteIntegration(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	if !ps.canManage() {
		return errNotManager()
	}
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteIntegration(ctx, ps.account.ID, id); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "integration deleted", "account_id", ps.account.ID, "integration_id", id,
		"user_id", ps.user.ID, "request_id", RequestID(ctx))
	s.redirectWithFlash(w, r, "/settings/integrations", "integration-deleted")
	return nil
}

func integrationPagePath(id int64) string {
	return "/settings/integrations/" + strconv.FormatInt(id, 10)
}
