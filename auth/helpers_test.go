package auth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testSecret is the HMAC secret most tests verify with.
func testSecret() []byte { return []byte("test-secret-0123456789abcdef-0123456789") }

// otherSecret is a second, unrelated HMAC secret.
func otherSecret() []byte { return []byte("other-secret-0123456789abcdef-012345678") }

// deleteClaim, as a value in [with], removes the claim.
type deleteClaim struct{}

// validClaims returns claims that pass every check at now.
func validClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "alice",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"jti": "0123456789abcdef0123456789abcdef",
	}
}

// with returns a copy of c with kv applied pairwise; a deleteClaim value
// removes the key.
func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := maps.Clone(c)
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if _, ok := kv[i+1].(deleteClaim); ok {
			delete(out, k)
			continue
		}
		out[k] = kv[i+1]
	}
	return out
}

// sign signs claims with method and key.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("cannot sign test token: %v", err)
	}
	return s
}

// b64JSON returns the base64url (unpadded) JSON encoding of v.
func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("cannot marshal: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// pemPublicKey returns pub as a PKIX "PUBLIC KEY" PEM block.
func pemPublicKey(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("cannot marshal public key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// newTestVerifier builds a Verifier or fails the test.
func newTestVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}
