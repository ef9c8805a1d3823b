package server

import (
	"net/http"
	"strconv"

	"github.com/valethq/valet"
)

// accountJSON is the account a credential belongs to.
type accountJSON struct {
	*valet.Account
	URI string `json:"uri"`
}

// userJSON is a member of the account, with the role held there.
type userJSON struct {
	*valet.User
	URI string `json:"uri"`
}

func userView(u *valet.User) userJSON {
	return userJSON{User: u, URI: "/api/users/" + strconv.FormatInt(u.ID, 10) + "/"}
}

// getAccount serves GET /api/account: the account the credential is bound to.
func (s *Server) getAccount(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	a, err := s.store.FindAccountByID(r.Context(), cred.AccountID)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, accountJSON{Account: a, URI: "/api/account/"})
	return nil
}

// listUsers serves GET /api/users: the account's members by id.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	opt, err := plainListOptions(r)
	if err != nil {
		return err
	}
	page, err := s.store.ListMembers(r.Context(), cred.AccountID, opt)
	if err != nil {
		return err
	}
	writeList(s, w, r, page, userView)
	return nil
}

// getUser serves GET /api/users/{id}; a user who is not a member of the
// credential's account is 404 even if the user exists.
func (s *Server) getUser(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	u, err := s.store.FindMember(r.Context(), cred.AccountID, id)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, userView(u))
	return nil
}
