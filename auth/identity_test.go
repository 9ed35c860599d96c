package auth

import "testing"

func TestRoleValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		role Role
		want bool
	}{
		{RoleUser, true}, {RoleAgent, true}, {RoleAdmin, true},
		{"", false}, {"root", false}, {"User", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			t.Parallel()
			if got := tt.role.Valid(); got != tt.want {
				t.Fatalf("Role(%q).Valid() = %v, want %v", tt.role, got, tt.want)
			}
		})
	}
}

func TestIdentitySessions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		id       Identity
		session  string
		allows   bool
		anywhere bool
	}{
		{"user without list", Identity{Role: RoleUser}, "s1", true, false},
		{"user with list, listed", Identity{Role: RoleUser, Sessions: []string{"s1"}}, "s1", true, false},
		{"user with list, not listed", Identity{Role: RoleUser, Sessions: []string{"s1"}}, "s2", false, false},
		{"user with empty list", Identity{Role: RoleUser, Sessions: []string{}}, "s1", false, false},
		{"agent", Identity{Role: RoleAgent}, "s1", true, true},
		{"admin with list", Identity{Role: RoleAdmin, Sessions: []string{"s1"}}, "s2", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.id.AllowsSession(tt.session); got != tt.allows {
				t.Errorf("AllowsSession(%q) = %v, want %v", tt.session, got, tt.allows)
			}
			if got := tt.id.MayAccessAnySession(); got != tt.anywhere {
				t.Errorf("MayAccessAnySession() = %v, want %v", got, tt.anywhere)
			}
		})
	}
}
