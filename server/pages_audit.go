package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/valethq/valet"
	"github.com/valethq/valet/webui"
)

// auditLimit is how many entries the audit page shows; valet admin audit
// list reads further back.
const auditLimit = 200

// auditPage shows the account's security audit log to owners and admins.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, ps *pageSession) error {
	ctx := r.Context()
	store, ok := s.store.(valet.OAuthService)
	if !ok {
		return valet.Errorf(valet.ENOTFOUND, "There is no page at this address.")
	}
	if !ps.canManage() {
		return valet.Errorf(valet.EFORBIDDEN, "Only the account's owners and admins can read its audit log.")
	}
	entries, err := s.accountAudit(ctx, store, ps.account.ID)
	if err != nil {
		return err
	}
	apps, err := store.ListApps(ctx, 0)
	if err != nil {
		return err
	}
	appNames := make(map[int64]string, len(apps))
	for _, a := range apps {
		appNames[a.ID] = a.Name
	}
	people := map[int64]string{}
	rows := make([]webui.AuditRow, 0, len(entries))
	for _, e := range entries {
		row := webui.AuditRow{Entry: e, What: webui.AuditWords(e.Action), Details: auditDetails(e.Details)}
		if e.AppID != 0 {
			row.App = appNames[e.AppID]
			if row.App == "" {
				row.App = "a deleted app"
			}
		}
		if id := e.ActorUserID; id != 0 {
			if _, seen := people[id]; !seen {
				people[id] = "someone who left"
				if u, err := s.store.FindUserByID(ctx, id); err == nil {
					people[id] = u.Name
				}
			}
			row.Who = people[id]
		}
		rows = append(rows, row)
	}
	p := &webui.AuditPage{Layout: s.layout(w, r, ps, "Audit log", "settings"), Entries: rows}
	return s.pages.ui.Audit(w, http.StatusOK, p)
}

// accountAudit is the account's entries and, merged in, the entries of no
// account about the apps installed on it (their secret rotations and failed
// client authentication), newest first.
func (s *Server) accountAudit(ctx context.Context, store valet.OAuthService, accountID int64) ([]valet.AuditEntry, error) {
	entries, err := store.ListAudit(ctx, accountID, auditLimit)
	if err != nil {
		return nil, err
	}
	grants, err := store.ListGrants(ctx, accountID)
	if err != nil {
		return nil, err
	}
	installed := map[int64]bool{}
	for _, g := range grants {
		installed[g.AppID] = true
	}
	if len(installed) == 0 {
		return entries, nil
	}
	apps, err := store.ListAudit(ctx, 0, auditLimit)
	if err != nil {
		return nil, err
	}
	for _, e := range apps {
		if installed[e.AppID] {
			entries = append(entries, e)
		}
	}
	slices.SortFunc(entries, func(a, b valet.AuditEntry) int { return cmp.Compare(b.ID, a.ID) })
	return entries[:min(len(entries), auditLimit)], nil
}

// auditDetails lists an entry's JSON details by name. Ids of users and
// apps are left out: the page names them in their own columns.
func auditDetails(raw json.RawMessage) []webui.AuditDetail {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var out []webui.AuditDetail
	for name, v := range m {
		if name == "user_id" {
			continue
		}
		value := fmt.Sprint(v)
		if f, ok := v.(float64); ok && f == float64(int64(f)) {
			value = fmt.Sprint(int64(f))
		}
		out = append(out, webui.AuditDetail{Name: name, Value: value})
	}
	slices.SortFunc(out, func(a, b webui.AuditDetail) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
