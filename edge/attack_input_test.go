package edge_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/streams"
)

// Attacks with forged input: tokens the edge should not take.

// Tokens with a NUL (or another control character) in "sub", or valid
// for a century, were accepted. Now both are refused before the upgrade,
// with the reason.
func TestAttackTokenSubjectAndLifetime(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.edge(edge.Config{})
	now := time.Now()
	century := now.AddDate(100, 0, 0).Unix()
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		reason string
	}{
		{"NUL in sub", jwt.MapClaims{"sub": "alice\x00admin", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, auth.ReasonClaims},
		{"newline in sub", jwt.MapClaims{"sub": "alice\nlevel=ERROR", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, auth.ReasonClaims},
		{"DEL in userId", jwt.MapClaims{"userId": "bob\x7f", "exp": now.Add(time.Hour).Unix()}, auth.ReasonClaims},
		{"century with iat", jwt.MapClaims{"sub": "alice", "iat": now.Unix(), "exp": century}, auth.ReasonLifetime},
		{"century without iat", jwt.MapClaims{"sub": "alice", "exp": century}, auth.ReasonLifetime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := signJWT(t, jwt.SigningMethodHS256, testSecret, tc.claims)
			status, b, raw := refusal(t, tokenURL(e, tok), nil)
			if status != http.StatusUnauthorized || b.Details["reason"] != tc.reason {
				t.Errorf("HTTP %d %s, want 401 with reason %s", status, raw, tc.reason)
			}
		})
	}
}
