package valet_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/valethq/valet"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		v        interface{ Validate() error }
		badField string // "" means valid
	}{
		{"account ok", &valet.Account{Name: "acme"}, ""},
		{"account upper", &valet.Account{Name: "Acme"}, "name"},
		{"account short", &valet.Account{Name: "a"}, "name"},
		{"user ok", &valet.User{Email: " Ann@Example.COM ", Name: "Ann"}, ""},
		{"user bad email", &valet.User{Email: "ann", Name: "Ann"}, "email"},
		{"user display-name email", &valet.User{Email: "Ann <ann@example.com>", Name: "Ann"}, "email"},
		{"user no name", &valet.User{Email: "ann@example.com"}, "name"},
		{"customer email only", &valet.Customer{Email: "c@example.com"}, ""},
		{"customer neither", &valet.Customer{}, "name"},
		{"customer data array", &valet.Customer{Name: "C", Data: json.RawMessage(`[1]`)}, "data"},
		{"customer data object", &valet.Customer{Name: "C", Data: json.RawMessage(`{"orders":3}`)}, ""},
		{"ticket ok", &valet.Ticket{Customer: valet.PersonRef{Email: "c@example.com"}}, ""},
		{"ticket no customer", &valet.Ticket{}, "customer"},
		{"ticket bad status", &valet.Ticket{Status: "pending", Customer: valet.PersonRef{ID: 1}}, "status"},
		{"ticket bad priority", &valet.Ticket{Priority: "p0", Customer: valet.PersonRef{ID: 1}}, "priority"},
		{"message ok", &valet.Message{BodyText: "hi"}, ""},
		{"message empty", &valet.Message{BodyText: "  "}, "body_text"},
		{"message huge", &valet.Message{BodyText: strings.Repeat("x", valet.MaxBodyLen+1)}, "body_text"},
		{"api key wrong scope", &valet.APIKey{Scopes: valet.ScopeSet{valet.ScopeOpenID}}, "scopes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.Validate()
			if tt.badField == "" {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				return
			}
			if valet.ErrorCode(err) != valet.EINVALID || len(valet.ErrorFields(err)[tt.badField]) == 0 {
				t.Fatalf("err = %v, want EINVALID on %s", err, tt.badField)
			}
		})
	}
}

func TestValidateDefaults(t *testing.T) {
	tk := &valet.Ticket{Customer: valet.PersonRef{ID: 1}}
	if err := tk.Validate(); err != nil {
		t.Fatal(err)
	}
	if tk.Status != valet.StatusOpen || tk.Priority != "normal" || tk.Channel != "api" {
		t.Fatalf("defaults: %+v", tk)
	}
	note := &valet.Message{BodyText: "internal"}
	_ = note.Validate()
	if note.Channel != "internal-note" {
		t.Fatalf("note channel %q", note.Channel)
	}
	u := &valet.User{Email: " Ann@Example.COM ", Name: "Ann"}
	_ = u.Validate()
	if u.Email != "ann@example.com" {
		t.Fatalf("email not normalised: %q", u.Email)
	}
}

func TestExcerpt(t *testing.T) {
	if got := valet.Excerpt("  hello \n  world "); got != "hello world" {
		t.Fatalf("%q", got)
	}
	long := strings.Repeat("é", 200)
	if got := []rune(valet.Excerpt(long)); len(got) != 140 {
		t.Fatalf("len %d", len(got))
	}
}

func TestErrorHelpers(t *testing.T) {
	err := valet.Errorf(valet.ENOTFOUND, "Ticket not found.")
	wrapped := &valet.Error{Code: valet.EINTERNAL, Op: "x", Err: err}
	if valet.ErrorCode(err) != valet.ENOTFOUND || valet.ErrorMessage(err) != "Ticket not found." {
		t.Fatal(err)
	}
	if valet.ErrorCode(wrapped) != valet.EINTERNAL || valet.ErrorMessage(wrapped) != "An internal error occurred." {
		t.Fatalf("%q %q", valet.ErrorCode(wrapped), valet.ErrorMessage(wrapped))
	}
	if valet.ErrorCode(nil) != "" {
		t.Fatal("nil has a code")
	}
}
