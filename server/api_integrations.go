package server

import (
	"cmp"
	"net/http"
	"strconv"

	"github.com/valethq/valet"
)

// Webhooks (Gorgias's HTTP integrations) on the API. The store validates
// and keeps them; these handlers only map JSON to the domain and back.

// defaultDeliveryLimit is how many deliveries the log answers without
// limit=, as other lists do.
const defaultDeliveryLimit = 30

// integrationJSON is an integration as the API shows it.
type integrationJSON struct {
	*valet.Integration
	URI string `json:"uri"`
}

// integrationCreatedJSON is the creation answer: the only one that carries
// the signing secret.
type integrationCreatedJSON struct {
	integrationJSON
	Secret string `json:"secret"`
}

// managesWebhooks applies the settings pages' rule to the API: only the
// account's owners and admins set up, change or delete webhooks, whether
// through their API key or an app they installed, checked with the user's
// role now rather than when the credential was made. The scope catalog
// says so where the scope is granted (ScopeInfo.Managers).
func managesWebhooks(cred *valet.Credential) error {
	if !cred.Role.CanManage() {
		return valet.Errorf(valet.EFORBIDDEN,
			"Only the account's owners and admins can manage webhooks; this credential acts for a member with the %s role.", cred.Role)
	}
	return nil
}

func integrationURI(id int64) string { return "/api/integrations/" + strconv.FormatInt(id, 10) + "/" }

func integrationView(in *valet.Integration) integrationJSON {
	return integrationJSON{Integration: in, URI: integrationURI(in.ID)}
}

// integrationHTTPFields is the writable part of "http". method is accepted
// so a client can send back Gorgias's shape, but POST is the only one.
type integrationHTTPFields struct {
	URL      *string         `json:"url"`
	Method   *string         `json:"method"`
	Triggers map[string]bool `json:"triggers"`
}

// integrationCreate is the body of POST /api/integrations.
type integrationCreate struct {
	Type string                `json:"type"`
	Name string                `json:"name"`
	HTTP integrationHTTPFields `json:"http"`
}

// integrationUpdate is the body of PUT /api/integrations/{id}: fields left
// out stay as they are; triggers, when sent, replace the whole set.
type integrationUpdate struct {
	Name   *string               `json:"name"`
	HTTP   integrationHTTPFields `json:"http"`
	Status *string               `json:"status"`
}

// apply copies the fields sent onto in; the store validates the result
// (valet.Integration.Validate), so one set of rules serves API and pages.
func (f *integrationHTTPFields) apply(in *valet.Integration) {
	if f.URL != nil {
		in.HTTP.URL = *f.URL
	}
	if f.Method != nil {
		in.HTTP.Method = *f.Method
	}
	if f.Triggers != nil {
		in.HTTP.Triggers = f.Triggers
	}
}

// webhooksOff answers the clear error of a server that cannot seal webhook
// secrets, when it cannot: creating a webhook needs one. It
// is a server setting the client cannot fix, hence 500; unlike other
// internal errors its message is safe to show and is what an operator
// needs to read, so it is written here rather than hidden by writeError.
func (s *Server) webhooksOff(w http.ResponseWriter, r *http.Request) bool {
	msg := s.webhooksUnavailable()
	if msg == "" {
		return false
	}
	s.log.WarnContext(r.Context(), "webhooks are off", "reason", msg, "request_id", RequestID(r.Context()))
	s.writeJSON(w, r, http.StatusInternalServerError, errorBody{Error: errorDetail{Code: valet.EINTERNAL, Msg: msg}})
	return true
}

// listIntegrations serves GET /api/integrations: the account's webhooks,
// newest first, a page at a time like every list.
func (s *Server) listIntegrations(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	opt, err := plainListOptions(r)
	if err != nil {
		return err
	}
	page, err := s.store.ListIntegrations(r.Context(), cred.AccountID, opt)
	if err != nil {
		return err
	}
	writeList(s, w, r, page, integrationView)
	return nil
}

// createIntegration serves POST /api/integrations: 201 with the signing
// secret, shown this once. The creating app and user are recorded so an
// account can tell which installation set a webhook up.
func (s *Server) createIntegration(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	if err := managesWebhooks(cred); err != nil {
		return err
	}
	var body integrationCreate
	if err := s.decode(w, r, &body); err != nil {
		return err
	}
	if s.webhooksOff(w, r) {
		return nil
	}
	in := &valet.Integration{AccountID: cred.AccountID, Type: body.Type, Name: body.Name}
	body.HTTP.apply(in)
	if cred.AppID != 0 {
		in.AppID = &cred.AppID
	}
	if cred.UserID != 0 {
		in.CreatedByUserID = &cred.UserID
	}
	if err := readsTriggers(w, cred, in); err != nil {
		return err
	}
	secret, err := s.store.CreateIntegration(r.Context(), in)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "integration created", "account_id", cred.AccountID, "integration_id", in.ID,
		"app_id", cred.AppID, "user_id", cred.UserID, "request_id", RequestID(r.Context()))
	s.created(w, r, integrationURI(in.ID), integrationCreatedJSON{integrationJSON: integrationView(in), Secret: secret})
	return nil
}

// webhookToChange is the webhook of the request's {id} if cred may change
// or delete it: 404 when the account has none (as for reading it), then
// the role and app checks.
func (s *Server) webhookToChange(r *http.Request, cred *valet.Credential) (*valet.Integration, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	in, err := s.store.FindIntegration(r.Context(), cred.AccountID, id)
	if err != nil {
		return nil, err
	}
	if err := managesWebhooks(cred); err != nil {
		return nil, err
	}
	return in, setUpBy(cred, in)
}

// setUpBy lets an app change or delete only the webhooks it set up. One
// the account's people or another app made is not the app's to re-point:
// it would keep delivering to the app after the app's access ends, since a
// webhook stops with the access of the app that set it up.
func setUpBy(cred *valet.Credential, in *valet.Integration) error {
	if cred.Kind != valet.CredentialOAuth || (in.AppID != nil && *in.AppID == cred.AppID) {
		return nil
	}
	by := "in the account's settings or with an API key"
	if in.AppID != nil {
		by = "by another app"
	}
	return valet.Errorf(valet.EFORBIDDEN, "An app may change or delete only the webhooks it set up; this one was set up %s.", by)
}

// readsTriggers checks that cred may read what in's triggers deliver: a
// delivery carries the event's object, so a webhook would otherwise let
// an app with integrations:write read tickets it was never granted.
func readsTriggers(w http.ResponseWriter, cred *valet.Credential, in *valet.Integration) error {
	for _, trigger := range valet.WebhookTriggers {
		if scope := valet.EventReadScope(trigger); in.HTTP.Triggers[trigger] && !cred.Scopes.Has(scope) {
			return insufficientScope(w, scope, "A webhook delivers each event's object: to have "+trigger+
				" delivered this credential needs the "+string(scope)+" scope.")
		}
	}
	return nil
}

// getIntegration serves GET /api/integrations/{id}; another account's is 404.
func (s *Server) getIntegration(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	in, err := s.store.FindIntegration(r.Context(), cred.AccountID, id)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, integrationView(in))
	return nil
}

// updateIntegration serves PUT /api/integrations/{id}: name, http.url,
// http.triggers and status. Setting status "active" re-enables an
// integration disabled after failures and resets its failure count.
func (s *Server) updateIntegration(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	var body integrationUpdate
	if err := s.decode(w, r, &body); err != nil {
		return err
	}
	in, err := s.webhookToChange(r, cred)
	if err != nil {
		return err
	}
	if body.Name != nil {
		in.Name = *body.Name
	}
	body.HTTP.apply(in)
	if body.Status != nil {
		in.Status = *body.Status
	}
	if err := readsTriggers(w, cred, in); err != nil {
		return err
	}
	// On success in holds what is stored: the store moves updated_datetime,
	// the failure count and disabled_datetime.
	if err := s.store.UpdateIntegration(r.Context(), in); err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, integrationView(in))
	return nil
}

// deleteIntegration serves DELETE /api/integrations/{id}: 204; its pending
// deliveries go with it.
func (s *Server) deleteIntegration(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	in, err := s.webhookToChange(r, cred)
	if err != nil {
		return err
	}
	if err := s.store.DeleteIntegration(r.Context(), cred.AccountID, in.ID); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "integration deleted", "account_id", cred.AccountID, "integration_id", in.ID,
		"app_id", cred.AppID, "user_id", cred.UserID, "request_id", RequestID(r.Context()))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listDeliveries serves GET /api/integrations/{id}/deliveries: the delivery
// log, newest first, limit 1-100. It is a log to look at, not to page
// through, so it has no cursors: a cursor or another order is refused, so
// that a client following next_cursor as on other lists does not read
// the same page again unawares.
func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	q, err := query(r)
	if err != nil {
		return err
	}
	p := valet.Problems{}
	if q.Has("cursor") {
		p.Add("cursor", "the delivery log has no pages: it answers the newest deliveries, up to limit")
	}
	if v := q.Get("order_by"); v != "" && v != "id" && v != "id:desc" {
		p.Add("order_by", "the delivery log comes newest first: order_by may only be id or id:desc")
	}
	limit := cmp.Or(queryLimit(q, p), defaultDeliveryLimit)
	if err := p.Err(); err != nil {
		return err
	}
	ds, err := s.store.ListDeliveries(r.Context(), cred.AccountID, id, limit)
	if err != nil {
		return err
	}
	writeList(s, w, r, &valet.Page[valet.Delivery]{Data: ds}, func(d *valet.Delivery) *valet.Delivery { return d })
	return nil
}
