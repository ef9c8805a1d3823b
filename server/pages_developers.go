package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/valethq/valet"
	"github.com/valethq/valet/webui"
)

// The partner portal: any signed-in user registers and manages OAuth apps.

func (s *Server) oauthStore() (valet.OAuthService, error) {
	store, ok := s.store.(valet.OAuthService)
	if !ok {
		return nil, valet.Errorf(valet.ENOTFOUND, "There is no page at this address.")
	}
	return store, nil
}

func (s *Server) developersPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	return s.renderDevelopers(w, r, ps, http.StatusOK, webui.Form{})
}

func (s *Server) renderDevelopers(w http.ResponseWriter, r *http.Request, ps *pageSession, status int, form webui.Form) error {
	store, err := s.oauthStore()
	if err != nil {
		return err
	}
	apps, err := store.ListApps(r.Context(), ps.user.ID)
	if err != nil {
		return err
	}
	p := &webui.DevelopersPage{Layout: s.layout(w, r, ps, "Developers", "settings"), Apps: apps,
		New: webui.AppForm{Form: form, Scopes: valet.Scopes}}
	return s.pages.ui.Developers(w, status, p)
}

// appFormFields are the registration form's fields; scopes come as
// repeated "scope" values.
var appFormFields = []string{"name", "description", "developer_name", "homepage_url", "logo_url",
	"redirect_uris", "id_token_signed_response_alg", "refresh_reuse_leeway", "public"}

// readAppForm copies the registration form into app and returns the
// submitted values, to show them again if the app does not validate.
func readAppForm(f url.Values, app *valet.App) (map[string]string, valet.Problems) {
	values := map[string]string{}
	for _, k := range appFormFields {
		values[k] = f.Get(k)
	}
	app.Name, app.Description = f.Get("name"), strings.TrimSpace(f.Get("description"))
	app.DeveloperName, app.HomepageURL = strings.TrimSpace(f.Get("developer_name")), strings.TrimSpace(f.Get("homepage_url"))
	app.LogoURL, app.RedirectURIs = strings.TrimSpace(f.Get("logo_url")), strings.Fields(f.Get("redirect_uris"))
	app.IDTokenAlg = f.Get("id_token_signed_response_alg")
	app.Scopes = nil
	for _, sc := range f["scope"] {
		app.Scopes = append(app.Scopes, valet.Scope(sc))
		values["scope:"+sc] = "1"
	}
	problems := valet.Problems{}
	app.RefreshLeeway = 0
	if v := strings.TrimSpace(f.Get("refresh_reuse_leeway")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			problems.Add("refresh_reuse_leeway", "must be a whole number of seconds, 0-60")
		}
		app.RefreshLeeway = n
	}
	return values, problems
}

// appFormValues fills the form from a registered app, for editing it.
func appFormValues(app *valet.App) map[string]string {
	values := map[string]string{"name": app.Name, "description": app.Description, "developer_name": app.DeveloperName,
		"homepage_url": app.HomepageURL, "logo_url": app.LogoURL, "redirect_uris": strings.Join(app.RedirectURIs, "\n"),
		"id_token_signed_response_alg": app.IDTokenAlg, "refresh_reuse_leeway": strconv.Itoa(app.RefreshLeeway)}
	for _, sc := range app.Scopes {
		values["scope:"+string(sc)] = "1"
	}
	return values
}

// saveApp registers or updates app unless the form already had problems;
// field problems from either come back as a map for the form.
func saveApp(problems valet.Problems, save func() error) (map[string][]string, error) {
	if err := problems.Err(); err != nil {
		return valet.ErrorFields(err), nil
	}
	err := save()
	if valet.ErrorCode(err) == valet.EINVALID {
		return valet.ErrorFields(err), nil
	}
	return nil, err
}

// postApp registers an app and shows its secret once.
func (s *Server) postApp(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	store, err := s.oauthStore()
	if err != nil {
		return err
	}
	app := &valet.App{Public: r.PostForm.Get("public") != "", OwnerUserID: ps.user.ID}
	values, problems := readAppForm(r.PostForm, app)
	var secret string
	fields, err := saveApp(problems, func() (err error) {
		secret, err = store.RegisterApp(r.Context(), app)
		return err
	})
	if err != nil {
		return err
	}
	if fields != nil {
		return s.renderDevelopers(w, r, ps, http.StatusBadRequest, webui.Form{Values: values, Errors: fields})
	}
	return s.pages.ui.AppSecret(w, http.StatusOK, &webui.AppSecretPage{Layout: s.layout(w, r, ps, app.Name, "settings"), App: *app, Secret: secret})
}

// appEditPage shows one of the person's apps in the registration form.
func (s *Server) appEditPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	_, app, err := s.ownApp(r, ps)
	if err != nil {
		return err
	}
	return s.renderAppEdit(w, r, ps, http.StatusOK, app, webui.Form{Values: appFormValues(app)})
}

func (s *Server) renderAppEdit(w http.ResponseWriter, r *http.Request, ps *pageSession, status int, app *valet.App, form webui.Form) error {
	return s.pages.ui.AppEdit(w, status, &webui.AppEditPage{Layout: s.layout(w, r, ps, app.Name, "settings"), App: *app,
		Form: webui.AppForm{Form: form, Scopes: valet.Scopes, Edit: true}})
}

// postEditApp saves the edit form. Client type, id and secret stay.
func (s *Server) postEditApp(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	store, app, err := s.ownApp(r, ps)
	if err != nil {
		return err
	}
	saved := *app
	values, problems := readAppForm(r.PostForm, app)
	fields, err := saveApp(problems, func() error { return store.UpdateApp(r.Context(), app) })
	if err != nil {
		return err
	}
	if fields != nil {
		return s.renderAppEdit(w, r, ps, http.StatusBadRequest, &saved, webui.Form{Values: values, Errors: fields})
	}
	s.redirectWithFlash(w, r, "/developers", "app-saved")
	return nil
}

// ownApp returns the user's app named in the path.
func (s *Server) ownApp(r *http.Request, ps *pageSession) (valet.OAuthService, *valet.App, error) {
	store, err := s.oauthStore()
	if err != nil {
		return nil, nil, err
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	apps, err := store.ListApps(r.Context(), ps.user.ID)
	if err != nil {
		return nil, nil, err
	}
	for i := range apps {
		if apps[i].ID == id {
			return store, &apps[i], nil
		}
	}
	return nil, nil, valet.Errorf(valet.ENOTFOUND, "You have no such app.")
}

func (s *Server) postRotateSecret(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	store, app, err := s.ownApp(r, ps)
	if err != nil {
		return err
	}
	secret, err := store.RotateAppSecret(r.Context(), app.ID)
	if err != nil {
		return err
	}
	return s.pages.ui.AppSecret(w, http.StatusOK, &webui.AppSecretPage{Layout: s.layout(w, r, ps, app.Name, "settings"), App: *app, Secret: secret})
}

func (s *Server) postDeleteApp(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	store, app, err := s.ownApp(r, ps)
	if err != nil {
		return err
	}
	if err := store.DeleteApp(r.Context(), app.ID); err != nil {
		return err
	}
	s.redirectWithFlash(w, r, "/developers", "app-deleted")
	return nil
}
