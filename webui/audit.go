package webui

import (
	"net/http"

	"github.com/valethq/valet"
)

// AuditPage is the account's security audit log, newest first.
type AuditPage struct {
	Layout
	Entries []AuditRow
}

// AuditRow is one entry as the page shows it: the action in plain words,
// who did it and to which app, and the entry's details.
type AuditRow struct {
	Entry   valet.AuditEntry
	What    string
	Who     string // "" when no person acted (an app, or valet itself)
	App     string
	Details []AuditDetail
}

// AuditDetail is one field of an entry's details.
type AuditDetail struct{ Name, Value string }

// auditWords are the actions in the words the page uses.
var auditWords = map[string]string{
	valet.AuditConsentGiven:     "Approved an app",
	valet.AuditConsentDenied:    "Denied an app",
	valet.AuditCodeReplay:       "An authorization code was used twice: its tokens were revoked",
	valet.AuditRefreshReuse:     "A refresh token was used twice: the app's access was revoked",
	valet.AuditGrantRevoked:     "Revoked an app's access",
	valet.AuditTokenRevoked:     "The app revoked one of its tokens",
	valet.AuditSecretRotated:    "Rotated the app's client secret",
	valet.AuditAppUpdated:       "Changed the app's registration",
	valet.AuditAppDeleted:       "Deleted the app: every installation was revoked",
	valet.AuditClientAuthFailed: "The app failed to authenticate",
}

// AuditWords returns action in plain words (the action itself when it has
// none).
func AuditWords(action string) string {
	if w, ok := auditWords[action]; ok {
		return w
	}
	return action
}

// Audit renders the audit log.
func (u *UI) Audit(w http.ResponseWriter, status int, p *AuditPage) error {
	return u.render(w, status, pageAudit, p)
}
