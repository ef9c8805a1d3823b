package main

import (
	"context"
	"encoding/base64"
	"strings"

	"github.com/valethq/valet"
	"github.com/valethq/valet/passwd"
	"github.com/valethq/valet/sqlstore"
)

// The admin commands act directly on the database, so they work before the
// first user exists and while a server runs on the same database. They
// always print JSON: they are meant for scripts as much as for people.

// memberOutput is a user as the admin commands print it: with the role in
// the account and whether the command created the user.
type memberOutput struct {
	Account     *valet.Account `json:"account"`
	User        *valet.User    `json:"user"`
	UserCreated bool           `json:"user_created"`
}

func (m *Main) runAccountCreate(ctx context.Context) error {
	const op = "admin.account.create"
	in := m.Admin
	acct := &valet.Account{Name: strings.TrimSpace(in.Account), DisplayName: in.DisplayName}
	if err := acct.Validate(); err != nil {
		return err
	}
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := store.FindAccountByName(ctx, acct.Name); err == nil {
		return &valet.Error{Code: valet.ECONFLICT, Op: op, Message: "An account named " + acct.Name + " already exists."}
	}
	name := in.Name
	if name == "" {
		name = nameFromEmail(in.Email)
	}
	// Everything about the owner is checked before the account is written,
	// so a bad email or password does not leave an account without owner.
	user, isNew, err := prepareUser(ctx, store, in.Email, name, in.Password, "owner-password")
	if err != nil {
		return err
	}
	if err := store.CreateAccount(ctx, acct); err != nil {
		return err
	}
	if isNew {
		if err := store.CreateUser(ctx, user); err != nil {
			return err
		}
	}
	if err := store.AddMember(ctx, acct.ID, user.ID, valet.RoleOwner); err != nil {
		return err
	}
	user.Role = valet.RoleOwner
	writeJSON(m.Stdout, memberOutput{Account: acct, User: user, UserCreated: isNew})
	return nil
}

func (m *Main) runUserAdd(ctx context.Context) error {
	const op = "admin.user.add"
	in := m.Admin
	role := valet.Role(in.Role) // checked by ParseFlags; AddMember checks again
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	acct, err := findAccount(ctx, store, in.Account)
	if err != nil {
		return err
	}
	user, isNew, err := prepareUser(ctx, store, in.Email, in.Name, in.Password, "password")
	if err != nil {
		return err
	}
	if isNew {
		if err := store.CreateUser(ctx, user); err != nil {
			return err
		}
	}
	if err := store.AddMember(ctx, acct.ID, user.ID, role); err != nil {
		if valet.ErrorCode(err) == valet.ECONFLICT {
			return &valet.Error{Code: valet.ECONFLICT, Op: op, Err: err,
				Message: user.Email + " is already a member of " + acct.Name + "."}
		}
		return err
	}
	user.Role = role
	writeJSON(m.Stdout, memberOutput{Account: acct, User: user, UserCreated: isNew})
	return nil
}

// apiKeyOutput shows a new key once with its secret and ready-made header.
type apiKeyOutput struct {
	APIKey  *valet.APIKey  `json:"api_key"`
	Secret  string         `json:"secret"`
	Account *valet.Account `json:"account"`
	User    *valet.User    `json:"user"`
	// BasicAuth is the Authorization header value Basic base64(email:key),
	// as Gorgias clients send it; "Bearer <secret>" works too.
	BasicAuth string `json:"basic_auth"`
}

func (m *Main) runAPIKeyCreate(ctx context.Context) error {
	const op = "admin.apikey.create"
	in := m.Admin
	scopes, err := valet.ParseScopes(in.Scopes)
	if err != nil {
		return err
	}
	store, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	acct, err := findAccount(ctx, store, in.Account)
	if err != nil {
		return err
	}
	user, err := store.FindUserByEmail(ctx, in.Email)
	if valet.ErrorCode(err) == valet.ENOTFOUND {
		return &valet.Error{Code: valet.ENOTFOUND, Op: op, Err: err, Message: "No user with email " + valet.NormalizeEmail(in.Email) + "."}
	} else if err != nil {
		return err
	}
	member, err := store.FindMember(ctx, acct.ID, user.ID)
	if valet.ErrorCode(err) == valet.ENOTFOUND {
		return &valet.Error{Code: valet.ENOTFOUND, Op: op, Err: err, Message: user.Email + " is not a member of " + acct.Name + "."}
	} else if err != nil {
		return err
	}
	key := &valet.APIKey{AccountID: acct.ID, UserID: member.ID, Name: in.KeyName, Scopes: scopes}
	secret, err := store.CreateAPIKey(ctx, key)
	if err != nil {
		return err
	}
	basic := base64.StdEncoding.EncodeToString([]byte(member.Email + ":" + secret))
	writeJSON(m.Stdout, apiKeyOutput{APIKey: key, Secret: secret, Account: acct, User: member, BasicAuth: "Basic " + basic})
	return nil
}

func findAccount(ctx context.Context, store *sqlstore.Store, name string) (*valet.Account, error) {
	acct, err := store.FindAccountByName(ctx, strings.TrimSpace(name))
	if valet.ErrorCode(err) == valet.ENOTFOUND {
		return nil, &valet.Error{Code: valet.ENOTFOUND, Op: "admin.findAccount", Err: err, Message: "No account named " + name + "."}
	}
	return acct, err
}

// prepareUser finds the user with email, or builds (without storing) a new
// one with a hashed password. An existing user keeps its name and password:
// the admin commands add memberships, they do not reset credentials.
// passwordFlag names the flag in errors. Errors: EINVALID.
func prepareUser(ctx context.Context, store *sqlstore.Store, email, name, password, passwordFlag string) (u *valet.User, isNew bool, err error) {
	existing, err := store.FindUserByEmail(ctx, email)
	if err == nil {
		return existing, false, nil
	}
	if valet.ErrorCode(err) != valet.ENOTFOUND {
		return nil, false, err
	}
	u = &valet.User{Email: email, Name: name}
	p := valet.Problems{}
	if verr := u.Validate(); verr != nil {
		for f, problems := range valet.ErrorFields(verr) {
			p[f] = append(p[f], problems...)
		}
	}
	switch {
	case password == "":
		p.Add(passwordFlag, "is required for a new user (or set VALET_PASSWORD)")
	case len(password) < passwd.MinLength || len(password) > passwd.MaxLength:
		p.Add(passwordFlag, "must be 8 to 256 characters")
	}
	if err := p.Err(); err != nil {
		return nil, false, err
	}
	if u.PasswordHash, err = passwd.Hash(password); err != nil {
		return nil, false, err
	}
	return u, true, nil
}

// nameFromEmail makes "Jane Doe" of jane.doe@example.com, for an owner
// created without --owner-name.
func nameFromEmail(email string) string {
	local, _, _ := strings.Cut(strings.TrimSpace(email), "@")
	words := strings.FieldsFunc(local, func(r rune) bool { return r == '.' || r == '_' || r == '-' || r == '+' })
	for i, w := range words {
		words[i] = capitalize(w)
	}
	return strings.Join(words, " ")
}
