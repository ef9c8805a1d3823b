package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdmin runs admin commands in order against one database and checks
// their JSON output and exit status. Each case may depend on the ones
// before it (the account exists, the agent exists, ...).
func TestAdmin(t *testing.T) {
	db := tempDB(t)
	secretFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(secretFile, []byte("from a file 123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type out struct {
		Account *struct {
			ID          int64  `json:"id"`
			Name        string `json:"name"`
			DisplayName string `json:"display_name"`
		} `json:"account"`
		User *struct {
			ID    int64  `json:"id"`
			Email string `json:"email"`
			Name  string `json:"name"`
			Role  string `json:"role"`
		} `json:"user"`
		UserCreated *bool `json:"user_created"`
		Secret      string
		BasicAuth   string `json:"basic_auth"`
		APIKey      *struct {
			Name   string   `json:"name"`
			Scopes []string `json:"scopes"`
			Hint   string   `json:"hint"`
		} `json:"api_key"`
		Error *struct {
			Code string              `json:"code"`
			Msg  string              `json:"msg"`
			Data map[string][]string `json:"data"`
		} `json:"error"`
	}
	tests := []struct {
		name string
		env  map[string]string
		args string
		code int
		// check inspects the decoded output; errCode and errField check an
		// error object.
		check    func(t *testing.T, o out)
		errCode  string
		errField string
	}{
		{name: "account create", args: "admin account create --name acme --display-name 'Acme Outfitters' --owner-email Owner@Acme.example --owner-password 'correct horse'",
			check: func(t *testing.T, o out) {
				if o.Account.Name != "acme" || o.Account.DisplayName != "Acme Outfitters" || o.Account.ID == 0 {
					t.Errorf("account %+v", o.Account)
				}
				if o.User.Email != "owner@acme.example" || o.User.Role != "owner" || o.User.Name != "Owner" || !*o.UserCreated {
					t.Errorf("user %+v created %v", o.User, *o.UserCreated)
				}
			}},
		{name: "account taken", args: "admin account create --name acme --owner-email x@acme.example --owner-password 'correct horse'",
			code: 1, errCode: "conflict"},
		{name: "account bad name", args: "admin account create --name 'Not OK' --owner-email x@acme.example --owner-password 'correct horse'",
			code: 1, errCode: "invalid", errField: "name"},
		{name: "account short password", args: "admin account create --name beta --owner-email new@beta.example --owner-password short",
			code: 1, errCode: "invalid", errField: "owner-password"},
		{name: "account bad email", args: "admin account create --name beta --owner-email not-an-email --owner-password 'correct horse'",
			code: 1, errCode: "invalid", errField: "email"},
		{name: "account missing flags", args: "admin account create --name beta", code: 2, errCode: "usage"},
		{name: "account existing owner keeps password", args: "admin account create --name beta --owner-email owner@acme.example",
			check: func(t *testing.T, o out) {
				if o.Account.Name != "beta" || o.User.Role != "owner" || *o.UserCreated {
					t.Errorf("%+v %+v created %v", o.Account, o.User, *o.UserCreated)
				}
			}},
		{name: "user add new", args: "admin user add --account acme --email marcus@acme.example --name 'Marcus Reed' --password 'correct horse'",
			check: func(t *testing.T, o out) {
				if o.User.Email != "marcus@acme.example" || o.User.Role != "agent" || !*o.UserCreated || o.Account.Name != "acme" {
					t.Errorf("%+v created %v", o.User, *o.UserCreated)
				}
			}},
		{name: "user add password from VALET_PASSWORD_FILE", env: map[string]string{"VALET_PASSWORD_FILE": secretFile},
			args: "admin user add --account acme --email priya@acme.example --name 'Priya Shah' --role admin",
			check: func(t *testing.T, o out) {
				if o.User.Role != "admin" || !*o.UserCreated {
					t.Errorf("%+v", o.User)
				}
			}},
		{name: "user add existing to another account", args: "admin user add --account beta --email marcus@acme.example",
			check: func(t *testing.T, o out) {
				if o.Account.Name != "beta" || *o.UserCreated {
					t.Errorf("%+v created %v", o.Account, *o.UserCreated)
				}
			}},
		{name: "user add twice", args: "admin user add --account acme --email marcus@acme.example", code: 1, errCode: "conflict"},
		{name: "user add new without password", args: "admin user add --account acme --email nobody@acme.example --name Nobody",
			code: 1, errCode: "invalid", errField: "password"},
		{name: "user add unknown account", args: "admin user add --account nope --email marcus@acme.example", code: 1, errCode: "not_found"},
		{name: "user add bad role", args: "admin user add --account acme --email marcus@acme.example --role boss", code: 2, errCode: "usage"},
		{name: "apikey create", args: "admin apikey create --account acme --user MARCUS@acme.example --name zapier --scopes 'tickets:read tickets:write'",
			check: func(t *testing.T, o out) {
				if !strings.HasPrefix(o.Secret, "vak_") || !strings.HasPrefix(o.BasicAuth, "Basic ") {
					t.Errorf("secret %q basic %q", o.Secret, o.BasicAuth)
				}
				if o.APIKey.Name != "zapier" || strings.Join(o.APIKey.Scopes, " ") != "tickets:read tickets:write" || !strings.HasSuffix(o.Secret, strings.TrimPrefix(o.APIKey.Hint, "…")) {
					t.Errorf("key %+v", o.APIKey)
				}
			}},
		{name: "apikey default scopes", args: "admin apikey create --account acme --user owner@acme.example",
			check: func(t *testing.T, o out) {
				if len(o.APIKey.Scopes) < 9 {
					t.Errorf("scopes %v, want every API scope", o.APIKey.Scopes)
				}
			}},
		{name: "apikey unknown scope", args: "admin apikey create --account acme --user owner@acme.example --scopes 'tickets:read tickets:delete'",
			code: 1, errCode: "invalid", errField: "scopes"},
		{name: "apikey identity scope", args: "admin apikey create --account acme --user owner@acme.example --scopes openid",
			code: 1, errCode: "invalid", errField: "scopes"},
		{name: "apikey not a member", args: "admin apikey create --account beta --user priya@acme.example", code: 1, errCode: "not_found"},
		{name: "apikey unknown user", args: "admin apikey create --account acme --user ghost@acme.example", code: 1, errCode: "not_found"},
		{name: "apikey missing user", args: "admin apikey create --account acme", code: 2, errCode: "usage"},
		{name: "admin without command", args: "admin", code: 2},
		{name: "admin unknown command", args: "admin account delete --name acme", code: 2},
		{name: "unexpected argument", args: "admin user add --account acme --email a@b.example extra", code: 2, errCode: "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"VALET_DB": db}
			for k, v := range tt.env {
				env[k] = v
			}
			r := runCLI(t, env, shellSplit(tt.args)...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			if tt.code != 0 && r.stdout != "" {
				t.Errorf("a failure printed to stdout: %s", r.stdout)
			}
			if tt.code != 0 && tt.errCode == "" {
				return // only the status matters
			}
			var o out
			r.decode(t, &o)
			if tt.errCode != "" {
				if o.Error == nil || o.Error.Code != tt.errCode || o.Error.Msg == "" {
					t.Fatalf("error %+v, want code %s with a message", o.Error, tt.errCode)
				}
				if tt.errField != "" && len(o.Error.Data[tt.errField]) == 0 {
					t.Errorf("error data %v, want a problem with %s", o.Error.Data, tt.errField)
				}
				return
			}
			tt.check(t, o)
		})
	}
}

// TestCLIErrors checks exit statuses and where messages go for commands
// that are not admin commands.
func TestCLIErrors(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdoutHas  string
		stderrHas  string
		stderrJSON bool
	}{
		{name: "no command", args: nil, code: 2, stderrHas: "Commands:"},
		{name: "help", args: []string{"help"}, code: 0, stdoutHas: "admin apikey create"},
		{name: "help serve", args: []string{"help", "serve"}, code: 0, stdoutHas: "-api-key-rate-limit"},
		{name: "serve -h", args: []string{"serve", "-h"}, code: 0, stdoutHas: "-addr"},
		{name: "help unknown", args: []string{"help", "frobnicate"}, code: 2, stderrHas: "unknown command"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderrHas: `unknown command "frobnicate"`},
		{name: "bad flag", args: []string{"serve", "--port", "80"}, code: 2, stderrHas: "flag provided but not defined"},
		{name: "bad addr", args: []string{"serve", "--addr", "nonsense"}, code: 2, stderrHas: "--addr"},
		{name: "bad rate limit", args: []string{"serve", "--api-key-rate-limit", "forty"}, code: 2, stderrHas: "N/duration"},
		{name: "bad issuer", args: []string{"serve", "--issuer", "ftp://x"}, code: 2, stderrHas: "--issuer"},
		{name: "bad issuer json", args: []string{"serve", "--issuer", "ftp://x", "--json"}, code: 2, stderrJSON: true, stderrHas: `"code": "usage"`},
		{name: "unreachable database", args: []string{"migrate", "--db", filepath.Join(t.TempDir(), "missing", "dir", "x.db")}, code: 1, stderrHas: "valet: open database"},
		{name: "unreachable database json", args: []string{"migrate", "--json", "--db", filepath.Join(t.TempDir(), "missing", "dir", "x.db")}, code: 1, stderrJSON: true, stderrHas: `"code": "internal_error"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.stdoutHas) || !strings.Contains(r.stderr, tt.stderrHas) {
				t.Errorf("stdout %q\nstderr %q\nwant stdout with %q, stderr with %q", r.stdout, r.stderr, tt.stdoutHas, tt.stderrHas)
			}
			if tt.stderrJSON {
				var e cliError
				r.decode(t, &e)
			}
		})
	}
}

// shellSplit splits a command line on spaces, keeping 'quoted words' whole.
func shellSplit(s string) []string {
	var args []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted = !quoted
			inWord = true
		case r == ' ' && !quoted:
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args
}
