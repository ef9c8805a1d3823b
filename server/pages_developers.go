package server

import (
	"net/http"
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
	p := &webui.DevelopersPage{Layout: s.layout(w, r, ps, "Developers", "settings"), Apps: apps, Scopes: valet.Scopes, New: form}
	return s.pages.ui.Developers(w, status, p)
}

// postApp registers an app and shows its secret once.
func (s *Server) postApp(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	store, err := s.oauthStore()
	if err != nil {
		return err
	}
	f := r.PostForm
	app := &valet.App{Name: f.Get("name"), Description: strings.TrimSpace(f.Get("description")),
		DeveloperName: strings.TrimSpace(f.Get("developer_name")), HomepageURL: strings.TrimSpace(f.Get("homepage_url")),
		LogoURL: strings.TrimSpace(f.Get("logo_url")), RedirectURIs: strings.Fields(f.Get("redirect_uris")),
		Public: f.Get("public") != "", OwnerUserID: ps.user.ID}
	values := map[string]string{}
	for _, k := range []string{"name", "description", "developer_name", "homepage_url", "logo_url", "redirect_uris", "public"} {
		values[k] = f.Get(k)
	}
	for _, sc := range f["scope"] {
		app.Scopes = append(app.Scopes, valet.Scope(sc))
		values["scope:"+sc] = "1"
	}
	secret, err := store.RegisterApp(r.Context(), app)
	if valet.ErrorCode(err) == valet.EINVALID {
		return s.renderDevelopers(w, r, ps, http.StatusBadRequest, webui.Form{Values: values, Errors: valet.ErrorFields(err)})
	}
	if err != nil {
		return err
	}
	return s.pages.ui.AppSecret(w, http.StatusOK, &webui.AppSecretPage{Layout: s.layout(w, r, ps, app.Name, "settings"), App: *app, Secret: secret})
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
	s.redirectWithFlash(w, r, "/developers", app.Name+" is deleted; every installation of it is revoked.")
	return nil
}
