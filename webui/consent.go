package webui

import (
	"net/http"

	"github.com/valethq/valet"
)

// ConsentPage asks a person to let an app into a helpdesk account.
type ConsentPage struct {
	Layout
	ID  string // the pending authorization request
	App *valet.App
	// Accounts the person may choose from; Account is the one preselected.
	Accounts []valet.Membership
	Account  *valet.Account
	// New are the scopes to approve now, with their plain wording;
	// Granted those the app already holds on the account.
	New     []valet.ScopeInfo
	Granted []valet.ScopeInfo
}

// Consent renders the consent page.
func (u *UI) Consent(w http.ResponseWriter, status int, p *ConsentPage) error {
	return u.render(w, status, pageConsent, p)
}

// ConnectedAppsPage lists the apps installed on the account: all of them
// for owners and admins, the ones the person approved for everyone else.
type ConnectedAppsPage struct {
	Layout
	CanManage bool
	Apps      []ConnectedApp
}

// ConnectedApp is one grant as the page shows it.
type ConnectedApp struct {
	Grant      valet.Grant
	App        valet.App
	ApprovedBy string
	Scopes     []valet.ScopeInfo
	CanRevoke  bool
}

// ConnectedApps renders the connected apps page.
func (u *UI) ConnectedApps(w http.ResponseWriter, status int, p *ConnectedAppsPage) error {
	return u.render(w, status, pageConnectedApps, p)
}

// DevelopersPage is the partner portal: the person's apps and a form to
// register one.
type DevelopersPage struct {
	Layout
	Apps []valet.App
	New  AppForm
}

// AppForm is the registration form, shared by registering and editing:
// name, description, developer_name, homepage_url, logo_url, redirect_uris,
// id_token_signed_response_alg, refresh_reuse_leeway, public, scope:NAME.
type AppForm struct {
	Form
	Scopes []valet.ScopeInfo
	Edit   bool // whether an app is public is fixed once it is registered
}

// AppEditPage edits one of the person's apps.
type AppEditPage struct {
	Layout
	App  valet.App
	Form AppForm
}

// AppEdit renders the app edit page.
func (u *UI) AppEdit(w http.ResponseWriter, status int, p *AppEditPage) error {
	return u.render(w, status, pageAppEdit, p)
}

// AppSecretPage shows an app's client secret, the only time it exists
// outside the request that made it.
type AppSecretPage struct {
	Layout
	App    valet.App
	Secret string // empty for a public app
}

// Developers renders the partner portal.
func (u *UI) Developers(w http.ResponseWriter, status int, p *DevelopersPage) error {
	return u.render(w, status, pageDevelopers, p)
}

// AppSecret renders the page showing a new client secret once.
func (u *UI) AppSecret(w http.ResponseWriter, status int, p *AppSecretPage) error {
	return u.render(w, status, pageAppSecret, p)
}
