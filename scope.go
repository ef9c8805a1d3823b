package valet

import (
	"slices"
	"strings"
)

// Scope is one permission an app or API key can hold.
type Scope string

// The scope catalog of DESIGN.md §2. Names follow Gorgias's.
const (
	ScopeOpenID            Scope = "openid"
	ScopeEmail             Scope = "email"
	ScopeProfile           Scope = "profile"
	ScopeOffline           Scope = "offline"
	ScopeAccountRead       Scope = "account:read"
	ScopeUsersRead         Scope = "users:read"
	ScopeTicketsRead       Scope = "tickets:read"
	ScopeTicketsWrite      Scope = "tickets:write"
	ScopeCustomersRead     Scope = "customers:read"
	ScopeCustomersWrite    Scope = "customers:write"
	ScopeEventsRead        Scope = "events:read"
	ScopeIntegrationsRead  Scope = "integrations:read"
	ScopeIntegrationsWrite Scope = "integrations:write"
)

// ScopeInfo describes a scope for the consent page, discovery and the API.
type ScopeInfo struct {
	Scope Scope
	// Consent is the plain-language wording shown to the person approving.
	Consent string
	// API is true for scopes that guard /api routes (and so can be given to
	// API keys); identity scopes only shape ID tokens and userinfo.
	API bool
	// Managers is true for scopes whose writes work only while the person
	// who approved them is an owner or admin of the account: a credential
	// acts with its user's role of the moment.
	Managers bool
}

// Scopes is the catalog, in the order pages list them. It is the one source
// for consent wording, discovery metadata and API checks.
var Scopes = []ScopeInfo{
	{ScopeOpenID, "Confirm your identity", false, false},
	{ScopeEmail, "See your email address", false, false},
	{ScopeProfile, "See your name and profile picture", false, false},
	{ScopeOffline, "Stay connected when you are away", false, false},
	{ScopeAccountRead, "See this helpdesk account's name and settings", true, false},
	{ScopeUsersRead, "See the agents on your team", true, false},
	{ScopeTicketsRead, "Read tickets, their messages and content", true, false},
	{ScopeTicketsWrite, "Create, update and close tickets, and reply to customers", true, false},
	{ScopeCustomersRead, "See customer profiles and their data", true, false},
	{ScopeCustomersWrite, "Create and edit customer profiles", true, false},
	{ScopeEventsRead, "See the activity feed of changes", true, false},
	{ScopeIntegrationsRead, "See the webhooks set up for this account", true, false},
	{ScopeIntegrationsWrite, "Set up webhooks that notify the app of changes", true, true},
}

// LookupScope returns the catalog entry of s.
func LookupScope(s Scope) (ScopeInfo, bool) {
	for _, info := range Scopes {
		if info.Scope == s {
			return info, true
		}
	}
	return ScopeInfo{}, false
}

// APIScopes returns every scope that guards an /api route.
func APIScopes() ScopeSet {
	var set ScopeSet
	for _, info := range Scopes {
		if info.API {
			set = append(set, info.Scope)
		}
	}
	return set
}

// ScopeSet is a sorted, duplicate-free list of scopes.
type ScopeSet []Scope

// ParseScopes parses a space-separated scope string. Unknown scopes are an
// EINVALID error naming them; duplicates collapse.
func ParseScopes(s string) (ScopeSet, error) {
	var set ScopeSet
	var unknown []string
	for _, f := range strings.Fields(s) {
		if _, ok := LookupScope(Scope(f)); !ok {
			unknown = append(unknown, f)
			continue
		}
		set = append(set, Scope(f))
	}
	if len(unknown) > 0 {
		return nil, Invalid(map[string][]string{"scopes": {"unknown scope: " + strings.Join(unknown, ", ")}})
	}
	return set.normalize(), nil
}

func (s ScopeSet) normalize() ScopeSet {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// Has reports whether the set holds scope.
func (s ScopeSet) Has(scope Scope) bool { return slices.Contains(s, scope) }

// Contains reports whether every scope of other is in s.
func (s ScopeSet) Contains(other ScopeSet) bool {
	for _, o := range other {
		if !s.Has(o) {
			return false
		}
	}
	return true
}

// Intersect returns the scopes of s that are also in other.
func (s ScopeSet) Intersect(other ScopeSet) ScopeSet {
	out := ScopeSet{}
	for _, sc := range s {
		if other.Has(sc) {
			out = append(out, sc)
		}
	}
	return out
}

// String joins the set with spaces, as OAuth carries it.
func (s ScopeSet) String() string {
	parts := make([]string, len(s))
	for i, sc := range s {
		parts[i] = string(sc)
	}
	return strings.Join(parts, " ")
}
