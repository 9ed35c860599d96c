package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestSignerRoundTrip(t *testing.T) {
	t.Parallel()
	ecKey := mustECKey(t)
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, MinRSABits)
	if err != nil {
		t.Fatal(err)
	}
	hmacSigner, err := NewHMACSigner(testSecret())
	if err != nil {
		t.Fatal(err)
	}
	signer := func(m jwt.SigningMethod, key any) *Signer {
		s, err := NewSigner(m, key)
		if err != nil {
			t.Fatalf("NewSigner(%s): %v", m.Alg(), err)
		}
		return s
	}
	tests := []struct {
		name   string
		signer *Signer
		cfg    Config
	}{
		{"HS256", hmacSigner, Config{Secret: testSecret()}},
		{"HS512", signer(jwt.SigningMethodHS512, testSecret()), Config{Secret: testSecret()}},
		{"ES256", signer(jwt.SigningMethodES256, ecKey), Config{PublicKeyPEM: pemPublicKey(t, &ecKey.PublicKey)}},
		{"EdDSA", signer(jwt.SigningMethodEdDSA, edKey), Config{PublicKeyPEM: pemPublicKey(t, edPub)}},
		{"RS256", signer(jwt.SigningMethodRS256, rsaKey), Config{PublicKeyPEM: pemPublicKey(t, &rsaKey.PublicKey)}},
		{"PS384", signer(jwt.SigningMethodPS384, rsaKey), Config{PublicKeyPEM: pemPublicKey(t, &rsaKey.PublicKey)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.Issuer, tt.cfg.Audience = "haip", "edge"
			v := newTestVerifier(t, tt.cfg)
			token, err := tt.signer.Mint(MintOptions{
				Subject: "bob", Role: RoleAgent, TTL: 10 * time.Minute,
				Sessions: []string{"s1"}, Issuer: "haip", Audience: "edge",
			})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			id, err := v.Verify(token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Subject != "bob" || id.Role != RoleAgent || !slices.Equal(id.Sessions, []string{"s1"}) {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
}

func TestMintClaims(t *testing.T) {
	t.Parallel()
	s, err := NewHMACSigner(testSecret())
	if err != nil {
		t.Fatal(err)
	}
	fixed := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return fixed }
	token, err := s.Mint(MintOptions{Subject: "carol", TTL: 90*time.Minute + 500*time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	parsed, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Method.Alg() != "HS256" {
		t.Errorf("alg = %s, want HS256", parsed.Method.Alg())
	}
	num := func(k string) int64 { f, _ := claims[k].(float64); return int64(f) }
	if claims["sub"] != "carol" || claims["role"] != "user" {
		t.Errorf("sub/role = %v/%v", claims["sub"], claims["role"])
	}
	if num("iat") != fixed.Unix() || num("nbf") != fixed.Unix() || num("exp") != fixed.Unix()+90*60+1 {
		t.Errorf("iat/nbf/exp = %d/%d/%d", num("iat"), num("nbf"), num("exp"))
	}
	jti, _ := claims["jti"].(string)
	if b, err := hex.DecodeString(jti); err != nil || len(b) != 16 {
		t.Errorf("jti = %q, want 32 hex digits", jti)
	}
	for _, k := range []string{"sessions", "iss", "aud"} {
		if _, ok := claims[k]; ok {
			t.Errorf("claim %q set although not asked for", k)
		}
	}
	other, err := s.Mint(MintOptions{Subject: "carol", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if other == token {
		t.Error("two mints gave the same token; jti is not random")
	}
}

func TestMintEmptySessions(t *testing.T) {
	t.Parallel()
	s, err := NewHMACSigner(testSecret())
	if err != nil {
		t.Fatal(err)
	}
	token, err := s.Mint(MintOptions{Subject: "dan", TTL: time.Minute, Sessions: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := newTestVerifier(t, Config{Secret: testSecret()}).Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if id.Sessions == nil || id.AllowsSession("x") {
		t.Fatalf("identity = %+v, want an empty non-nil allow-list", id)
	}
}

func TestMintExpiredByClock(t *testing.T) {
	t.Parallel()
	s, err := NewHMACSigner(testSecret())
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	token, err := s.Mint(MintOptions{Subject: "eve", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newTestVerifier(t, Config{Secret: testSecret()}).Verify(token)
	if ReasonOf(err) != ReasonExpired {
		t.Fatalf("ReasonOf = %q, want %q", ReasonOf(err), ReasonExpired)
	}
}

func TestMintRefusesBadOptions(t *testing.T) {
	t.Parallel()
	s, err := NewHMACSigner(testSecret())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts MintOptions
	}{
		{"empty subject", MintOptions{TTL: time.Minute}},
		{"long subject", MintOptions{Subject: string(make([]byte, MaxSubjectLen+1)), TTL: time.Minute}},
		{"NUL in subject", MintOptions{Subject: "a\x00b", TTL: time.Minute}},
		{"newline in subject", MintOptions{Subject: "a\nb", TTL: time.Minute}},
		{"subject not UTF-8", MintOptions{Subject: "a\xffb", TTL: time.Minute}},
		{"zero TTL", MintOptions{Subject: "a"}},
		{"negative TTL", MintOptions{Subject: "a", TTL: -time.Second}},
		{"bad role", MintOptions{Subject: "a", TTL: time.Minute, Role: "root"}},
		{"bad session id", MintOptions{Subject: "a", TTL: time.Minute, Sessions: []string{"a b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if token, err := s.Mint(tt.opts); err == nil {
				t.Fatalf("Mint = %q, want an error", token)
			}
		})
	}
}

func TestNewSignerRefusesMismatch(t *testing.T) {
	t.Parallel()
	p256 := mustECKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		method jwt.SigningMethod
		key    any
	}{
		{"nil method", nil, testSecret()},
		{"none", jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType},
		{"short HMAC secret", jwt.SigningMethodHS256, []byte("short")},
		{"HMAC with string", jwt.SigningMethodHS256, string(testSecret())},
		{"ES256 with P-384 key", jwt.SigningMethodES256, p384},
		{"ES384 with P-256 key", jwt.SigningMethodES384, p256},
		{"RS256 with ECDSA key", jwt.SigningMethodRS256, p256},
		{"RS256 with nil key", jwt.SigningMethodRS256, (*rsa.PrivateKey)(nil)},
		{"EdDSA with public key", jwt.SigningMethodEdDSA, edKey.Public()},
		{"ES256 with Ed25519 key", jwt.SigningMethodES256, edKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewSigner(tt.method, tt.key); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("NewSigner error = %v, want ErrInvalidKey", err)
			}
		})
	}
	if _, err := NewHMACSigner([]byte("short")); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("NewHMACSigner(short) error = %v, want ErrInvalidKey", err)
	}
}

func TestNewSignerCopiesSecret(t *testing.T) {
	t.Parallel()
	secret := testSecret()
	s, err := NewHMACSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	secret[0] ^= 0xff
	token, err := s.Mint(MintOptions{Subject: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newTestVerifier(t, Config{Secret: testSecret()}).Verify(token); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}
