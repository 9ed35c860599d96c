package auth_test

import (
	"errors"
	"testing"

	"github.com/haipfabric/haipfabric/auth"
)

func TestToolAccess(t *testing.T) {
	t.Parallel()
	a, err := auth.ParseToolAccess(" *=admin ; echo=* ; mcp_*=user,sub:carol ; mcp_fs_write=none ; add=agent,user")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		role auth.Role
		sub  string
		tool string
		want bool
	}{
		{auth.RoleUser, "alice", "echo", true},
		{auth.RoleUser, "alice", "sleep", false}, // * = admin
		{auth.RoleAdmin, "root", "sleep", true},
		{auth.RoleUser, "alice", "mcp_fs_read", true},
		{auth.RoleAgent, "bot", "mcp_fs_read", false},
		{auth.RoleAgent, "carol", "mcp_fs_read", true},  // by subject
		{auth.RoleUser, "alice", "mcp_fs_write", false}, // exact beats prefix
		{auth.RoleAdmin, "root", "mcp_fs_write", false}, // none
		{auth.RoleUser, "alice", "add", true},
		{auth.RoleAdmin, "root", "add", false}, // the exact rule decides, not *
	}
	for _, c := range cases {
		if got := a.Allows(c.role, c.sub, c.tool); got != c.want {
			t.Errorf("Allows(%s, %s, %s) = %v, want %v", c.role, c.sub, c.tool, got, c.want)
		}
	}
	var open auth.ToolAccess
	if !open.Allows(auth.RoleUser, "x", "anything") || !open.Open() {
		t.Fatal("the zero ToolAccess must allow everything")
	}
	longer, err := auth.ParseToolAccess("mcp_*=admin;mcp_safe_*=*")
	if err != nil {
		t.Fatal(err)
	}
	if !longer.Allows(auth.RoleUser, "a", "mcp_safe_x") || longer.Allows(auth.RoleUser, "a", "mcp_other") || !longer.Allows(auth.RoleUser, "a", "echo") {
		t.Fatal("the longer prefix must decide; an unmatched tool is open")
	}
}

func TestToolAccessErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"echo", "=user", "echo=", "echo=root", "ec*ho=user", "echo=user;echo=admin", "x=sub:"} {
		if _, err := auth.ParseToolAccess(bad); !errors.Is(err, auth.ErrToolAccess) {
			t.Errorf("ParseToolAccess(%q) = %v, want ErrToolAccess", bad, err)
		}
	}
}

func FuzzParseToolAccess(f *testing.F) {
	for _, s := range []string{"", "*=admin;echo=*", "mcp_*=user,sub:carol;mcp_x=none", "a=b", ";;", "x*=*"} {
		f.Add(s, "echo")
	}
	f.Fuzz(func(t *testing.T, rules, tool string) {
		a, err := auth.ParseToolAccess(rules)
		if err != nil {
			if !errors.Is(err, auth.ErrToolAccess) {
				t.Fatalf("error %v does not wrap ErrToolAccess", err)
			}
			return
		}
		_ = a.Allows(auth.RoleUser, "alice", tool)
	})
}
