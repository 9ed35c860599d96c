package auth

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// MaxSubjectLen is the longest subject, in bytes, a token may carry.
	MaxSubjectLen = 256
	// MaxSessionIDLen is the longest entry, in bytes, of a "sessions"
	// allow-list. Entries match ^[A-Za-z0-9_-]{1,128}$.
	MaxSessionIDLen = 128
)

// identityFromClaims reads the application claims of a token whose
// signature and registered claims jwt has already checked.
func identityFromClaims(claims jwt.MapClaims) (Identity, *TokenError) {
	var id Identity

	sub, present, err := stringClaim(claims, "sub")
	if err != nil {
		return Identity{}, refuse(ReasonClaims, err)
	}
	if !present {
		// The reference server names its subject "userId".
		if sub, _, err = stringClaim(claims, "userId"); err != nil {
			return Identity{}, refuse(ReasonClaims, err)
		}
	}
	if sub == "" {
		return Identity{}, refuse(ReasonNoSubject, errors.New(`no "sub" or "userId" claim`))
	}
	if err := checkSubject(sub); err != nil {
		return Identity{}, refuse(ReasonClaims, err)
	}
	id.Subject = sub

	role, present, err := stringClaim(claims, "role")
	if err != nil {
		return Identity{}, refuse(ReasonClaims, err)
	}
	id.Role = RoleUser
	if present {
		id.Role = Role(role)
		if !id.Role.Valid() {
			return Identity{}, refuse(ReasonRole, fmt.Errorf("role %q is not user, agent or admin", role))
		}
	}

	if id.Sessions, err = sessionsClaim(claims); err != nil {
		return Identity{}, refuse(ReasonClaims, err)
	}

	if id.TokenID, _, err = stringClaim(claims, "jti"); err != nil {
		return Identity{}, refuse(ReasonClaims, err)
	}

	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // jwt has required and checked it already
		return Identity{}, refuse(ReasonNoExpiry, errors.New(`no usable "exp" claim`))
	}
	id.Expires = exp.Time
	return id, nil
}

// checkSubject refuses a subject longer than MaxSubjectLen, not UTF-8, or
// holding a control character (NUL, newline, DEL, C1 …): the subject is
// the owner recorded on sessions and shown in logs, where such bytes cut,
// hide or forge text.
func checkSubject(sub string) error {
	if len(sub) > MaxSubjectLen {
		return fmt.Errorf("subject is %d bytes, limit is %d", len(sub), MaxSubjectLen)
	}
	if !utf8.ValidString(sub) {
		return errors.New("subject is not valid UTF-8")
	}
	for i, r := range sub {
		if unicode.IsControl(r) {
			return fmt.Errorf("subject has control character %U at byte %d", r, i)
		}
	}
	return nil
}

// checkLifetime refuses a token valid for longer than maxTTL: "exp" minus
// "iat", or, without "iat", "exp" minus now beyond leeway.
func checkLifetime(claims jwt.MapClaims, maxTTL, leeway time.Duration, now time.Time) *TokenError {
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // jwt has required and checked it already
		return refuse(ReasonNoExpiry, errors.New(`no usable "exp" claim`))
	}
	iat, err := claims.GetIssuedAt()
	if err != nil {
		return refuse(ReasonClaims, err)
	}
	if iat != nil {
		if life := exp.Sub(iat.Time); life > maxTTL {
			return refuse(ReasonLifetime, fmt.Errorf(`"exp" is %v after "iat", limit is %v`, life, maxTTL))
		}
		return nil
	}
	if left := exp.Sub(now); left > maxTTL+leeway {
		return refuse(ReasonLifetime, fmt.Errorf(`"exp" is %v from now and there is no "iat", limit is %v`, left.Round(time.Second), maxTTL))
	}
	return nil
}

// stringClaim returns claim name as a string. An absent or null claim is
// ("", false, nil); any other non-string value is an error.
func stringClaim(claims jwt.MapClaims, name string) (string, bool, error) {
	raw, ok := claims[name]
	if !ok || raw == nil {
		return "", false, nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", false, fmt.Errorf("claim %q is a %s, want a string", name, jsonType(raw))
	}
	return s, true, nil
}

// sessionsClaim returns the "sessions" allow-list: nil when absent or null,
// otherwise every entry, each a valid session id.
func sessionsClaim(claims jwt.MapClaims) ([]string, error) {
	raw, ok := claims["sessions"]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf(`claim "sessions" is a %s, want an array of strings`, jsonType(raw))
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf(`claim "sessions"[%d] is a %s, want a string`, i, jsonType(item))
		}
		if !validSessionID(s) {
			return nil, fmt.Errorf(`claim "sessions"[%d] is not a valid session id`, i)
		}
		out = append(out, s)
	}
	return out, nil
}

// validSessionID reports whether s matches ^[A-Za-z0-9_-]{1,128}$.
func validSessionID(s string) bool {
	if len(s) == 0 || len(s) > MaxSessionIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// jsonType names the JSON type of a value decoded by encoding/json.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
