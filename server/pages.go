package server

import (
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/webui"
)

// pageState is the web inbox's shared state.
type pageState struct {
	ui *webui.UI
	// dummyHash is verified against when a sign-in names an unknown email,
	// so that answer takes as long as a wrong password. It is computed on
	// first use: servers that never see a sign-in never pay for it.
	dummyHash func() string
}

// registerPages mounts the web inbox. It fails if a page template is
// missing or does not parse.
func (s *Server) registerPages(mux *http.ServeMux) error {
	ui, err := webui.New()
	if err != nil {
		return err
	}
	s.pages = &pageState{
		ui: ui,
		dummyHash: sync.OnceValue(func() string {
			h, _ := passwd.Hash(valet.NewSecret("dummy-"))
			return h
		}),
	}
	mux.Handle("GET "+webui.StaticPrefix, ui.Static())

	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /signin", s.signinPage)
	mux.HandleFunc("POST /signin", s.signin)
	mux.Handle("POST /signout", s.page(false, s.signout))
	mux.Handle("GET /accounts", s.page(false, s.accountsPage))
	mux.Handle("POST /accounts", s.page(false, s.switchAccount))

	mux.Handle("GET /tickets", s.page(true, s.ticketsPage))
	mux.Handle("GET /tickets/{id}", s.page(true, s.ticketPage))
	mux.Handle("POST /tickets/{id}/reply", s.page(true, s.postReply))
	mux.Handle("POST /tickets/{id}/note", s.page(true, s.postNote))
	mux.Handle("POST /tickets/{id}/status", s.page(true, s.postStatus))
	mux.Handle("POST /tickets/{id}/assign", s.page(true, s.postAssign))
	mux.Handle("POST /tickets/{id}/tags", s.page(true, s.postAddTags))
	mux.Handle("POST /tickets/{id}/tags/remove", s.page(true, s.postRemoveTag))

	mux.Handle("GET /customers", s.page(true, s.customersPage))
	mux.Handle("GET /customers/{id}", s.page(true, s.customerPage))

	mux.Handle("GET /settings", s.page(true, s.settingsPage))
	mux.Handle("POST /settings/members", s.page(true, s.postMember))
	mux.Handle("POST /settings/apikeys", s.page(true, s.postAPIKey))
	mux.Handle("POST /settings/apikeys/{id}/delete", s.page(true, s.postDeleteAPIKey))
	mux.Handle("GET /settings/integrations", s.page(true, s.integrationsPage))
	mux.Handle("POST /settings/integrations", s.page(true, s.postIntegration))
	mux.Handle("GET /settings/integrations/{id}", s.page(true, s.integrationPage))
	mux.Handle("POST /settings/integrations/{id}", s.page(true, s.postUpdateIntegration))
	mux.Handle("POST /settings/integrations/{id}/enable", s.page(true, s.setIntegrationStatus(valet.IntegrationActive, "integration-enabled")))
	mux.Handle("POST /settings/integrations/{id}/disable", s.page(true, s.setIntegrationStatus(valet.IntegrationDisabled, "integration-disabled")))
	mux.Handle("POST /settings/integrations/{id}/delete", s.page(true, s.postDeleteIntegration))

	// Any other GET is a page that does not exist: answer with a readable
	// 404 rather than the mux's plain text. (/api/ has its own JSON
	// fallback, which is more specific and wins.)
	mux.HandleFunc("GET /", s.notFoundPage)
	return nil
}

// home sends a signed-in browser to its inbox and anyone else to sign in.
func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	ps, err := s.loadSession(r.Context(), r)
	if err != nil {
		s.pageError(w, r, nil, err)
		return
	}
	if ps == nil {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/tickets", http.StatusSeeOther)
}

func (s *Server) notFoundPage(w http.ResponseWriter, r *http.Request) {
	ps, _ := s.loadSession(r.Context(), r)
	if ps != nil && ps.account == nil && len(ps.memberships) == 1 {
		ps.useAccount(ps.memberships[0].Account.ID)
	}
	s.pageError(w, r, ps, valet.Errorf(valet.ENOTFOUND, "There is no page at this address."))
}

// layout is the frame of a page for ps (nil when signed out).
func (s *Server) layout(w http.ResponseWriter, r *http.Request, ps *pageSession, title, section string) webui.Layout {
	l := webui.Layout{Title: title, Section: section, Now: s.clock.Now(), RequestID: RequestID(r.Context())}
	if ps != nil {
		l.User = ps.user
		l.Account = ps.account
		l.Memberships = ps.memberships
		l.CSRF = ps.session.CSRFToken
		if r.Method == http.MethodGet {
			l.Flash = s.takeFlash(w, r)
		}
	}
	return l
}

// errorHeadings are the titles of error pages by status.
var errorHeadings = map[int]string{
	http.StatusBadRequest:            "That did not work",
	http.StatusUnauthorized:          "Please sign in",
	http.StatusForbidden:             "Not allowed",
	http.StatusNotFound:              "Page not found",
	http.StatusConflict:              "That conflicts with existing data",
	http.StatusPreconditionFailed:    "Someone changed this meanwhile",
	http.StatusRequestEntityTooLarge: "That is too large",
	http.StatusTooManyRequests:       "Slow down",
}

// pageError renders err as an error page with its status (StatusOf). A
// not-found error never says whether the row exists in another account.
// Internal errors are logged with the request id, which the page shows.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, ps *pageSession, err error) {
	status := StatusOf(err)
	msg := valet.ErrorMessage(err)
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "page error", "err", err, "path", r.URL.Path, "request_id", RequestID(r.Context()))
		status = http.StatusInternalServerError
		msg = "Something went wrong on our side. Please try again; if it keeps happening, tell your administrator the request id below."
	} else {
		s.log.DebugContext(r.Context(), "page error", "status", status, "err", err, "request_id", RequestID(r.Context()))
	}
	if status == http.StatusNotFound {
		msg = "This page does not exist, or you do not have access to it."
	}
	if msg == "" {
		msg = http.StatusText(status) + "."
	}
	heading := errorHeadings[status]
	if heading == "" {
		heading = "Something went wrong"
	}
	p := &webui.ErrorPage{Layout: s.layout(w, r, ps, heading, ""), Status: status, Heading: heading, Message: msg}
	if status < 500 {
		p.RequestID = "" // only worth quoting when something broke on our side
	}
	if err := s.pages.ui.Error(w, status, p); err != nil {
		s.log.ErrorContext(r.Context(), "render error page", "err", err, "request_id", RequestID(r.Context()))
		http.Error(w, http.StatusText(status)+" (request "+RequestID(r.Context())+")", status)
	}
}

// pagePathID parses the {id} of a page route; a malformed id names nothing,
// so it is not found.
func pagePathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, valet.Errorf(valet.ENOTFOUND, "Not found.")
	}
	return id, nil
}

// formField names the form input a store field is shown on, and how the
// message calls it.
type formField struct{ name, label string }

// fieldErrors maps a store's EINVALID problems onto form fields, as
// sentences ("Email must be a valid email address"). ok is false for
// other errors.
func fieldErrors(err error, fields map[string]formField) (map[string][]string, bool) {
	if valet.ErrorCode(err) != valet.EINVALID {
		return nil, false
	}
	out := map[string][]string{}
	for field, problems := range valet.ErrorFields(err) {
		f, ok := fields[field]
		if !ok {
			f = formField{name: field, label: upperFirst(strings.ReplaceAll(field, "_", " "))}
		}
		for _, p := range problems {
			if strings.HasPrefix(p, "is ") || strings.HasPrefix(p, "must ") {
				p = f.label + " " + p
			}
			out[f.name] = append(out[f.name], upperFirst(p)+".")
		}
	}
	if len(out) == 0 {
		out["form"] = []string{valet.ErrorMessage(err)}
	}
	return out, true
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
