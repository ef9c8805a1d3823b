package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones can be checked on a machine without a zoneinfo database

	"golang.org/x/text/language"

	"github.com/valethq/valet"
)

// customerJSON is a customer as the API shows it.
type customerJSON struct {
	*valet.Customer
	URI string `json:"uri"`
}

func customerURI(id int64) string { return "/api/customers/" + strconv.FormatInt(id, 10) + "/" }

func customerView(c *valet.Customer) customerJSON {
	return customerJSON{Customer: c, URI: customerURI(c.ID)}
}

// customerFields are the writable fields of a customer. Pointers tell an
// absent field (unchanged on PUT) from an empty one.
type customerFields struct {
	Email      *string `json:"email"`
	Name       *string `json:"name"`
	Firstname  *string `json:"firstname"`
	Lastname   *string `json:"lastname"`
	ExternalID *string `json:"external_id"`
	Language   *string `json:"language"`
	Timezone   *string `json:"timezone"`
	Note       *string `json:"note"`
	// Data is nil when absent and "null" when sent as null (which clears it).
	Data json.RawMessage `json:"data"`
}

// customerUpdate is the body of PUT /api/customers/{id}.
type customerUpdate struct {
	customerFields
	// UpdatedDatetime, when sent, must be the stored one (else 412).
	UpdatedDatetime *apiTime `json:"updated_datetime"`
}

// check refuses a language or timezone that names none, which would
// otherwise be stored and shown as if it meant something. Only what the
// request sends is checked: an update that leaves a field out never fails
// on a value stored before these checks.
func (f *customerFields) check() error {
	p := valet.Problems{}
	if f.Language != nil && *f.Language != "" {
		// Parse also reads en_US; a tag is stored as sent, so it must be
		// one already.
		tag, err := language.Parse(*f.Language)
		switch {
		case err != nil || len(*f.Language) > 35:
			p.Add("language", "must be a language tag, such as en or pt-BR")
		case !strings.EqualFold(tag.String(), *f.Language):
			p.Add("language", "must be a language tag: "+tag.String()+", not "+*f.Language)
		}
	}
	if f.Timezone != nil && *f.Timezone != "" {
		// "Local" would be whatever zone the server runs in.
		if _, err := time.LoadLocation(*f.Timezone); err != nil || *f.Timezone == "Local" {
			p.Add("timezone", "must be an IANA time zone, such as Europe/Paris or UTC")
		}
	}
	return p.Err()
}

func (f *customerFields) apply(c *valet.Customer) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&c.Email, f.Email)
	set(&c.Name, f.Name)
	set(&c.Firstname, f.Firstname)
	set(&c.Lastname, f.Lastname)
	set(&c.ExternalID, f.ExternalID)
	set(&c.Language, f.Language)
	set(&c.Timezone, f.Timezone)
	set(&c.Note, f.Note)
	if f.Data != nil {
		c.Data = f.Data
	}
}

// listCustomers serves GET /api/customers with filters email and external_id.
func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	p := valet.Problems{}
	f := valet.CustomerFilter{ListOptions: listOptions(q, p), Email: valet.NormalizeEmail(q.Get("email")), ExternalID: q.Get("external_id")}
	if err := p.Err(); err != nil {
		return err
	}
	page, err := s.store.ListCustomers(r.Context(), cred.AccountID, f)
	if err != nil {
		return err
	}
	writeList(s, w, r, page, customerView)
	return nil
}

// createCustomer serves POST /api/customers. A duplicate email is 409.
func (s *Server) createCustomer(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	var body customerFields
	if err := s.decode(w, r, &body); err != nil {
		return err
	}
	if err := body.check(); err != nil {
		return err
	}
	c := &valet.Customer{AccountID: cred.AccountID}
	body.apply(c)
	if err := c.Validate(); err != nil {
		return err
	}
	if err := s.store.CreateCustomer(r.Context(), c); err != nil {
		return err
	}
	w.Header().Set("ETag", etag(c.UpdatedDatetime))
	s.created(w, r, customerURI(c.ID), customerView(c))
	return nil
}

// getCustomer serves GET /api/customers/{id} with an ETag for If-Match.
func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	c, err := s.store.FindCustomer(r.Context(), cred.AccountID, id)
	if err != nil {
		return err
	}
	tag := etag(c.UpdatedDatetime)
	if notModified(w, r, tag) {
		return nil
	}
	w.Header().Set("ETag", tag)
	s.writeJSON(w, r, http.StatusOK, customerView(c))
	return nil
}

// updateCustomer serves PUT /api/customers/{id}: the fields sent replace the
// stored ones; a stale If-Match or updated_datetime is 412.
func (s *Server) updateCustomer(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var body customerUpdate
	if err := s.decode(w, r, &body); err != nil {
		return err
	}
	if err := body.check(); err != nil {
		return err
	}
	ifMatch := r.Header.Get("If-Match")
	c, err := s.store.UpdateCustomer(r.Context(), cred.AccountID, id, func(c *valet.Customer) error {
		if err := checkPrecondition(ifMatch, body.UpdatedDatetime, c.UpdatedDatetime); err != nil {
			return err
		}
		body.apply(c)
		return nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(c.UpdatedDatetime))
	s.writeJSON(w, r, http.StatusOK, customerView(c))
	return nil
}

// deleteCustomer serves DELETE /api/customers/{id}; a customer with tickets
// is 409.
func (s *Server) deleteCustomer(w http.ResponseWriter, r *http.Request, cred *valet.Credential) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteCustomer(r.Context(), cred.AccountID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
