package authserver

import (
	"context"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/valethq/valet"
)

// OpenID Connect Core §3.1.2.1's prompt and max_age. The library checks
// the parameters (prompt=none with another value is invalid_request) and
// turns prompt=login into max_age=0; the sealed request carries the rest
// to the consent page, which acts on them with the session it alone sees:
//
//   - prompt=none: no page; what would need one is answered to the app
//     with login_required, consent_required or account_selection_required
//     (valet.PromptError, Refuse);
//   - prompt=consent and select_account: the consent page even when
//     consent is remembered;
//   - max_age=N (prompt=login: 0): a sign-in older than N seconds, and not
//     made since the request, is asked for again (PendingAuthorization's
//     SignInSince); Approve refuses one regardless.

// maxAgeCap is the largest max_age that bounds anything (about 136
// years); a larger one is as good as none.
const maxAgeCap = 1 << 32

// setPrompt copies the request's prompt and max_age.
func (a *authRequest) setPrompt(req *oidc.AuthRequest, now time.Time) {
	a.NoPrompt = slices.Contains(req.Prompt, oidc.PromptNone)
	a.AskConsent = slices.Contains(req.Prompt, oidc.PromptConsent) || slices.Contains(req.Prompt, oidc.PromptSelectAccount)
	if req.MaxAge != nil && *req.MaxAge < maxAgeCap {
		seconds := int64(*req.MaxAge)
		a.MaxAge, a.Requested = &seconds, now.UnixMicro()
	}
}

// signInSince is how recent, at now, the sign-in the code vouches for
// must be: within max_age, or since the request was made. Zero without a
// max_age.
func (a *authRequest) signInSince(now time.Time) time.Time {
	if a.MaxAge == nil {
		return time.Time{}
	}
	since, requested := now.Add(-time.Duration(*a.MaxAge)*time.Second), time.UnixMicro(a.Requested)
	if requested.Before(since) {
		since = requested
	}
	return since.UTC()
}

// pendingPrompt fills p's prompt fields from a.
func (s *Server) pendingPrompt(p *valet.PendingAuthorization, a *authRequest) {
	p.NoPrompt, p.AskConsent, p.SignInSince = a.NoPrompt, a.AskConsent, a.signInSince(s.clock.Now())
}

// errOtherUser refuses to approve, for another user, a request whose
// id_token_hint names someone.
var errOtherUser = valet.Errorf(valet.EFORBIDDEN, "The app asked for another user. Please sign in as that user.")

// errSignInAgain refuses to approve a request with a sign-in too old for
// its max_age or prompt=login.
var errSignInAgain = valet.Errorf(valet.EUNAUTHORIZED, "Please sign in again to continue.")

// Refuse returns the app's redirect URI with error=code, the
// description, state and iss: the answer to a request Pending returned
// that cannot go on without a page prompt=none forbids. Nothing is
// recorded: no person decided anything. Errors: ENOTFOUND.
func (s *Server) Refuse(_ context.Context, p *valet.PendingAuthorization, code valet.PromptError, description string) (string, error) {
	a, _, err := s.pending(p)
	if err != nil {
		return "", err
	}
	return op.AuthResponseURL(a.RedirectURI, a.ResponseType, oidc.ResponseModeQuery, &authError{
		Error: string(code), Description: description, State: a.State, Issuer: s.issuer,
	}, s.Provider().Encoder())
}
