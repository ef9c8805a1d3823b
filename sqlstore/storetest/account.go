package storetest

import (
	"testing"

	"github.com/valethq/valet"
)

func testAccounts(t *testing.T, s valet.Store) {
	a := &valet.Account{Name: "acme"}
	must(t, s.CreateAccount(ctx, a))
	if a.ID == 0 || a.DisplayName != "acme" {
		t.Fatalf("created %+v: want an id and the name as display name", a)
	}
	wantTime(t, "created_datetime", a.CreatedDatetime)

	got, err := s.FindAccountByID(ctx, a.ID)
	must(t, err)
	wantEqual(t, got, a)
	got, err = s.FindAccountByName(ctx, "acme")
	must(t, err)
	wantEqual(t, got, a)

	tests := []struct {
		name    string
		account valet.Account
		code    string
	}{
		{"taken", valet.Account{Name: "acme"}, valet.ECONFLICT},
		{"uppercase", valet.Account{Name: "Acme"}, valet.EINVALID},
		{"too short", valet.Account{Name: "a"}, valet.EINVALID},
		{"spaces", valet.Account{Name: "ac me"}, valet.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, s.CreateAccount(ctx, &tt.account), tt.code)
		})
	}

	_, err = s.FindAccountByID(ctx, a.ID+1000)
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.FindAccountByName(ctx, "nobody")
	wantCode(t, err, valet.ENOTFOUND)
}

func testUsers(t *testing.T, s valet.Store) {
	u := &valet.User{Email: "  Ann@Example.COM ", Name: " Ann ", PasswordHash: "$argon2id$x"}
	must(t, s.CreateUser(ctx, u))
	if u.ID == 0 || u.Email != "ann@example.com" || u.Name != "Ann" {
		t.Fatalf("created %+v: want an id and normalised email and name", u)
	}
	wantTime(t, "created_datetime", u.CreatedDatetime)
	wantTime(t, "updated_datetime", u.UpdatedDatetime)

	got, err := s.FindUserByID(ctx, u.ID)
	must(t, err)
	wantEqual(t, got, u)
	if got.PasswordHash != "$argon2id$x" {
		t.Fatalf("password hash = %q", got.PasswordHash)
	}
	got, err = s.FindUserByEmail(ctx, "ANN@example.com")
	must(t, err)
	wantEqual(t, got, u)

	wantCode(t, s.CreateUser(ctx, &valet.User{Email: "ann@EXAMPLE.com", Name: "Other Ann"}), valet.ECONFLICT)
	wantField(t, s.CreateUser(ctx, &valet.User{Email: "not an email", Name: "X"}), "email")
	wantField(t, s.CreateUser(ctx, &valet.User{Email: "x@example.com"}), "name")

	_, err = s.FindUserByID(ctx, u.ID+1000)
	wantCode(t, err, valet.ENOTFOUND)
	_, err = s.FindUserByEmail(ctx, "bob@example.com")
	wantCode(t, err, valet.ENOTFOUND)
}

func testMembers(t *testing.T, s valet.Store) {
	a := newFixture(t, s, "alpha")
	b := newFixture(t, s, "beta")

	m, err := s.FindMember(ctx, a.account.ID, a.owner.ID)
	must(t, err)
	if m.Role != valet.RoleOwner || m.Email != a.owner.Email {
		t.Fatalf("member = %+v", m)
	}
	_, err = s.FindMember(ctx, b.account.ID, a.owner.ID)
	wantCode(t, err, valet.ENOTFOUND)

	wantCode(t, s.AddMember(ctx, a.account.ID, a.agent.ID, valet.RoleAdmin), valet.ECONFLICT)
	wantField(t, s.AddMember(ctx, b.account.ID, a.agent.ID, "boss"), "role")
	wantCode(t, s.AddMember(ctx, b.account.ID+1000, a.agent.ID, valet.RoleAgent), valet.ENOTFOUND)
	wantCode(t, s.AddMember(ctx, b.account.ID, a.agent.ID+1000, valet.RoleAgent), valet.ENOTFOUND)

	// A user may belong to several accounts, with a role in each.
	must(t, s.AddMember(ctx, b.account.ID, a.agent.ID, valet.RoleAdmin))
	ms, err := s.ListMemberships(ctx, a.agent.ID)
	must(t, err)
	if len(ms) != 2 || ms[0].Account.Name != "alpha" || ms[0].Role != valet.RoleAgent ||
		ms[1].Account.Name != "beta" || ms[1].Role != valet.RoleAdmin {
		t.Fatalf("memberships = %s", dump(ms))
	}
	wantEqual(t, ms[0].Account, *a.account)
	ms, err = s.ListMemberships(ctx, a.agent.ID+1000)
	must(t, err)
	if len(ms) != 0 {
		t.Fatalf("memberships of nobody = %v", ms)
	}

	// Paging members: ids ascending, each once, only this account's.
	var want []int64
	for _, u := range []*valet.User{a.owner, a.agent} {
		want = append(want, u.ID)
	}
	for i := range 3 {
		u := &valet.User{Email: "extra" + string(rune('0'+i)) + "@alpha.test", Name: "Extra"}
		must(t, s.CreateUser(ctx, u))
		must(t, s.AddMember(ctx, a.account.ID, u.ID, valet.RoleAgent))
		want = append(want, u.ID)
	}
	var got []int64
	opt := valet.ListOptions{Limit: 2}
	var prev string
	for pages := 0; ; pages++ {
		p, err := s.ListMembers(ctx, a.account.ID, opt)
		must(t, err)
		for _, u := range p.Data {
			got = append(got, u.ID)
			if u.Role == "" {
				t.Fatalf("listed member without a role: %+v", u)
			}
		}
		if p.NextCursor == "" {
			break
		}
		prev = p.PrevCursor
		opt.Cursor = p.NextCursor
	}
	wantEqual(t, got, want)
	p, err := s.ListMembers(ctx, a.account.ID, valet.ListOptions{Limit: 2, Cursor: prev})
	must(t, err)
	if len(p.Data) != 2 || p.Data[0].ID != want[0] {
		t.Fatalf("prev page = %s", dump(p))
	}
	_, err = s.ListMembers(ctx, a.account.ID, valet.ListOptions{Cursor: "nonsense"})
	wantField(t, err, "cursor")

	must(t, s.RemoveMember(ctx, b.account.ID, a.agent.ID))
	wantCode(t, s.RemoveMember(ctx, b.account.ID, a.agent.ID), valet.ENOTFOUND)
	_, err = s.FindMember(ctx, b.account.ID, a.agent.ID)
	wantCode(t, err, valet.ENOTFOUND)
	if _, err := s.FindMember(ctx, a.account.ID, a.agent.ID); err != nil {
		t.Fatalf("removing from beta removed from alpha too: %v", err)
	}
}
