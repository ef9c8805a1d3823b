package valet_test

import (
	"testing"

	"github.com/valethq/valet"
)

func TestParseScopes(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "", false},
		{"tickets:read", "tickets:read", false},
		{"tickets:write tickets:read  tickets:read", "tickets:read tickets:write", false},
		{"openid email offline", "email offline openid", false},
		{"tickets:admin", "", true},
		{"tickets:read TICKETS:READ", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := valet.ParseScopes(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if valet.ErrorCode(err) != valet.EINVALID {
					t.Fatalf("code = %q", valet.ErrorCode(err))
				}
				return
			}
			if got.String() != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestScopeSetContains(t *testing.T) {
	s, _ := valet.ParseScopes("tickets:read customers:read")
	if !s.Contains(valet.ScopeSet{valet.ScopeTicketsRead}) {
		t.Fatal("read not contained")
	}
	// write does not imply read, nor read write.
	if s.Has(valet.ScopeTicketsWrite) {
		t.Fatal("read implies write")
	}
	w, _ := valet.ParseScopes("tickets:write")
	if w.Has(valet.ScopeTicketsRead) {
		t.Fatal("write implies read")
	}
}

func TestCatalogIsComplete(t *testing.T) {
	for _, info := range valet.Scopes {
		if info.Consent == "" {
			t.Errorf("%s has no consent wording", info.Scope)
		}
	}
	if len(valet.APIScopes()) != 9 {
		t.Fatalf("APIScopes = %v", valet.APIScopes())
	}
}

// The outbox withholds an app's deliveries by tickets:read alone
// (sqlstore's appMayRead): every trigger must be read with it.
func TestWebhookTriggersReadWithTicketsRead(t *testing.T) {
	for _, trigger := range valet.WebhookTriggers {
		if got := valet.EventReadScope(trigger); got != valet.ScopeTicketsRead {
			t.Errorf("trigger %s is read with %s: sqlstore's appMayRead checks tickets:read only", trigger, got)
		}
	}
}
