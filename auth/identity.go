package auth

import (
	"slices"
	"time"
)

// Role is the kind of principal a token speaks for, from the "role" claim.
type Role string

// The roles a token may carry. A token without a "role" claim is a
// [RoleUser].
const (
	// RoleUser is an end user: it reaches the sessions it owns, further
	// narrowed by an optional "sessions" allow-list.
	RoleUser Role = "user"
	// RoleAgent is an agent or worker process; it may reach any session.
	RoleAgent Role = "agent"
	// RoleAdmin is an operator; it may reach any session.
	RoleAdmin Role = "admin"
)

// Valid reports whether r is one of [RoleUser], [RoleAgent] or [RoleAdmin].
func (r Role) Valid() bool {
	switch r {
	case RoleUser, RoleAgent, RoleAdmin:
		return true
	}
	return false
}

// Identity is who a verified token speaks for. The zero Identity speaks for
// no one; only [Verifier.Verify] and [Verifier.VerifyRequest] produce
// meaningful ones.
type Identity struct {
	// Subject is the "sub" claim, or the reference server's "userId" claim
	// when "sub" is absent. Never empty, at most MaxSubjectLen bytes.
	Subject string
	// Role is the "role" claim; RoleUser when the claim is absent.
	Role Role
	// Sessions is the optional "sessions" allow-list claim. Nil means the
	// token carries no list; an empty non-nil slice allows no session.
	Sessions []string
	// TokenID is the "jti" claim, or "" when absent.
	TokenID string
	// Expires is the "exp" claim.
	Expires time.Time
}

// MayAccessAnySession reports whether the identity's role reaches every
// session regardless of ownership: true for [RoleAgent] and [RoleAdmin].
func (id Identity) MayAccessAnySession() bool {
	return id.Role == RoleAgent || id.Role == RoleAdmin
}

// AllowsSession reports whether the identity's "sessions" allow-list permits
// sessionID. Without a list it returns true. It looks at the list only:
// ownership and role checks are the caller's.
func (id Identity) AllowsSession(sessionID string) bool {
	if id.Sessions == nil {
		return true
	}
	return slices.Contains(id.Sessions, sessionID)
}
