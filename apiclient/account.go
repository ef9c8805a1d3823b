package apiclient

import (
	"context"
	"iter"

	"github.com/valethq/valet"
)

// Account returns the account the credential belongs to (account:read).
func (c *Client) Account(ctx context.Context) (*valet.Account, error) {
	var a valet.Account
	if err := c.get(ctx, "/api/account", nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Users iterates the account's members by id, each with the Role held in
// the account (users:read).
func (c *Client) Users(ctx context.Context) iter.Seq2[valet.User, error] {
	return walk("", func(cursor string) (*Page[valet.User], error) {
		return getPage[valet.User](ctx, c, "/api/users", listQuery(cursor, 0, ""))
	})
}

// User returns one member of the account; a user who is not a member is
// not found (users:read).
func (c *Client) User(ctx context.Context, id int64) (*valet.User, error) {
	var u valet.User
	if err := c.get(ctx, idPath("/api/users", id), nil, &u); err != nil {
		return nil, err
	}
	return &u, nil
}
