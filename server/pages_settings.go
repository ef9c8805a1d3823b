package server

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/webui"
)

// maxMemberPages bounds the members list to 1,000 people.
const maxMemberPages = 10

// grantableRoles are the roles a user may give a new member: owners any,
// admins admin or agent, agents none.
func grantableRoles(r valet.Role) []valet.Role {
	switch r {
	case valet.RoleOwner:
		return []valet.Role{valet.RoleAgent, valet.RoleAdmin, valet.RoleOwner}
	case valet.RoleAdmin:
		return []valet.Role{valet.RoleAgent, valet.RoleAdmin}
	}
	return nil
}

func errNotManager() error {
	return valet.Errorf(valet.EFORBIDDEN, "Only owners and admins can change this account's settings.")
}

// loadSettingsPage reads the members and API keys of the account.
func (s *Server) loadSettingsPage(w http.ResponseWriter, r *http.Request, ps *pageSession) (*webui.SettingsPage, error) {
	ctx := r.Context()
	p := &webui.SettingsPage{Layout: s.layout(w, r, ps, "Settings", "settings"), CanManage: ps.canManage(),
		Roles: grantableRoles(ps.user.Role)}
	opt := valet.ListOptions{Limit: valet.MaxLimit}
	for range maxMemberPages {
		page, err := s.store.ListMembers(ctx, ps.account.ID, opt)
		if err != nil {
			return nil, err
		}
		p.Members = append(p.Members, page.Data...)
		if page.NextCursor == "" {
			break
		}
		opt.Cursor = page.NextCursor
	}
	names := make(map[int64]string, len(p.Members))
	for _, m := range p.Members {
		names[m.ID] = m.Name
	}
	keys, err := s.store.ListAPIKeys(ctx, ps.account.ID)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		owner := names[k.UserID]
		if owner == "" {
			owner = "a former member"
		}
		p.APIKeys = append(p.APIKeys, webui.APIKeyRow{APIKey: k, Owner: owner})
	}
	for _, info := range valet.Scopes {
		if info.API {
			p.Scopes = append(p.Scopes, webui.ScopeOption{ScopeInfo: info})
		}
	}
	p.Member.Values = map[string]string{"role": string(valet.RoleAgent)}
	return p, nil
}

// settingsPage shows the account's settings; read-only for agents.
func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	p, err := s.loadSettingsPage(w, r, ps)
	if err != nil {
		return err
	}
	return s.pages.ui.Settings(w, http.StatusOK, p)
}

// settingsFormError shows the settings again with a refused form (400).
func (s *Server) settingsFormError(w http.ResponseWriter, r *http.Request, ps *pageSession, set func(*webui.SettingsPage)) error {
	p, err := s.loadSettingsPage(w, r, ps)
	if err != nil {
		return err
	}
	set(p)
	return s.pages.ui.Settings(w, http.StatusBadRequest, p)
}

var memberFields = map[string]formField{
	"email": {"email", "Email"},
	"name":  {"name", "Name"},
	"role":  {"role", "Role"},
}

// postMember adds a member: an existing valet user by email (who keeps
// their password), or a new user created with the name and password given.
func (s *Server) postMember(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	if !ps.canManage() {
		return errNotManager()
	}
	email := strings.TrimSpace(r.PostFormValue("email"))
	name := strings.TrimSpace(r.PostFormValue("name"))
	password := r.PostFormValue("password")
	role := valet.Role(r.PostFormValue("role"))
	values := map[string]string{"email": email, "name": name, "role": string(role)}
	refuse := func(errs map[string][]string) error {
		return s.settingsFormError(w, r, ps, func(p *webui.SettingsPage) {
			p.Member = webui.Form{Values: values, Errors: errs}
		})
	}
	problems := valet.Problems{}
	grantable := grantableRoles(ps.user.Role)
	if !role.Valid() {
		problems.Add("role", "Choose a role.")
	} else if !slices.Contains(grantable, role) {
		problems.Add("role", "You cannot make someone "+string(role)+".")
	}
	probe := valet.User{Email: email, Name: "x"}
	if probe.Validate() != nil {
		problems.Add("email", "Enter a valid email address.")
	}
	if len(problems) > 0 {
		return refuse(problems)
	}
	user, err := s.store.FindUserByEmail(ctx, email)
	if valet.ErrorCode(err) == valet.ENOTFOUND {
		if name == "" {
			problems.Add("name", "Nobody uses valet with this email yet: enter their name to create them.")
		}
		if len(password) < passwd.MinLength || len(password) > passwd.MaxLength {
			problems.Add("password", "Choose a password of "+strconv.Itoa(passwd.MinLength)+" to "+strconv.Itoa(passwd.MaxLength)+" characters for the new user.")
		}
		if len(problems) > 0 {
			return refuse(problems)
		}
		hash, herr := passwd.Hash(password)
		if herr != nil {
			return herr
		}
		user = &valet.User{Email: email, Name: name, PasswordHash: hash}
		err = s.store.CreateUser(ctx, user)
		if valet.ErrorCode(err) == valet.ECONFLICT {
			// Created meanwhile by someone else: add that user.
			user, err = s.store.FindUserByEmail(ctx, email)
		}
	}
	if err != nil {
		if errs, ok := fieldErrors(err, memberFields); ok {
			return refuse(errs)
		}
		return err
	}
	if err := s.store.AddMember(ctx, ps.account.ID, user.ID, role); err != nil {
		if valet.ErrorCode(err) == valet.ECONFLICT {
			return refuse(map[string][]string{"email": {user.Name + " is already a member of this account."}})
		}
		if errs, ok := fieldErrors(err, memberFields); ok {
			return refuse(errs)
		}
		return err
	}
	s.log.InfoContext(ctx, "member added", "account_id", ps.account.ID, "user_id", user.ID, "role", role,
		"by_user_id", ps.user.ID, "request_id", RequestID(ctx))
	s.redirectWithFlash(w, r, "/settings", "member")
	return nil
}

// postAPIKey creates an API key acting as the signed-in user and shows its
// secret, once, in the answer. The answer is not cached (no-store) and the
// secret is nowhere else.
func (s *Server) postAPIKey(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	if !ps.canManage() {
		return errNotManager()
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	chosen := r.PostForm["scopes"]
	refuse := func(errs map[string][]string) error {
		return s.settingsFormError(w, r, ps, func(p *webui.SettingsPage) {
			p.Key = webui.Form{Values: map[string]string{"name": name}, Errors: errs}
			for i := range p.Scopes {
				p.Scopes[i].Checked = slices.Contains(chosen, string(p.Scopes[i].Scope))
			}
		})
	}
	problems := valet.Problems{}
	if name == "" {
		problems.Add("name", "Name the key after what will use it, so you can tell keys apart.")
	}
	scopes, err := valet.ParseScopes(strings.Join(chosen, " "))
	if err != nil || !valet.APIScopes().Contains(scopes) {
		problems.Add("scopes", "Choose scopes from the list.")
	} else if len(scopes) == 0 {
		problems.Add("scopes", "Choose at least one thing this key may do.")
	}
	if len(problems) > 0 {
		return refuse(problems)
	}
	k := &valet.APIKey{AccountID: ps.account.ID, UserID: ps.user.ID, Name: name, Scopes: scopes}
	secret, err := s.store.CreateAPIKey(ctx, k)
	if err != nil {
		if errs, ok := fieldErrors(err, map[string]formField{"name": {"name", "Name"}, "scopes": {"scopes", "Scopes"}}); ok {
			return refuse(errs)
		}
		return err
	}
	s.log.InfoContext(ctx, "api key created", "account_id", ps.account.ID, "key_id", k.ID, "user_id", ps.user.ID,
		"request_id", RequestID(ctx))
	p := &webui.APIKeyCreatedPage{Layout: s.layout(w, r, ps, "New API key", "settings"), Key: *k, Secret: secret,
		Email: ps.user.Email, BaseURL: strings.TrimSuffix(s.cfg.Issuer, "/")}
	return s.pages.ui.APIKeyCreated(w, http.StatusOK, p)
}

// postDeleteAPIKey deletes an API key of the account; it stops working at
// once.
func (s *Server) postDeleteAPIKey(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	if !ps.canManage() {
		return errNotManager()
	}
	id, err := pagePathID(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteAPIKey(ctx, ps.account.ID, id); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "api key deleted", "account_id", ps.account.ID, "key_id", id, "user_id", ps.user.ID,
		"request_id", RequestID(ctx))
	s.redirectWithFlash(w, r, "/settings", "key-deleted")
	return nil
}
