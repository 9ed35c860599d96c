package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Now()
	base := validClaims(now)

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384Key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pemPublicKey(t, &ecKey.PublicKey)
	edPEM := pemPublicKey(t, edPub)

	hmacV := newTestVerifier(t, Config{Secret: testSecret()})
	ecV := newTestVerifier(t, Config{PublicKeyPEM: ecPEM})
	edV := newTestVerifier(t, Config{PublicKeyPEM: edPEM})
	ecOtherSecretV := newTestVerifier(t, Config{Secret: otherSecret(), PublicKeyPEM: ecPEM})
	issAudV := newTestVerifier(t, Config{Secret: testSecret(), Issuer: "https://issuer.example", Audience: "edge"})
	dayV := newTestVerifier(t, Config{Secret: testSecret(), MaxTTL: 24 * time.Hour})

	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret(), c) }
	valid := hs(base)
	parts := strings.Split(valid, ".")

	// Hand-built unsigned tokens.
	noneToken := "eyJhbGciOiJub25lIn0." + b64JSON(t, base) + "."
	noneCapsToken := b64JSON(t, map[string]any{"alg": "None"}) + "." + b64JSON(t, base) + "."
	unknownAlg := b64JSON(t, map[string]any{"alg": "HS1024", "typ": "JWT"}) + "." + parts[1] + "." + parts[2]
	noAlg := b64JSON(t, map[string]any{"typ": "JWT"}) + "." + parts[1] + "." + parts[2]

	// Re-encode the payload with an extra claim, keeping the signature.
	tampered := parts[0] + "." + b64JSON(t, with(base, "role", "admin")) + "." + parts[2]
	// Change the first signature character: same length, different bytes.
	sig := []byte(parts[2])
	if sig[0] == 'A' {
		sig[0] = 'B'
	} else {
		sig[0] = 'A'
	}
	badSigBytes := parts[0] + "." + parts[1] + "." + string(sig)
	// Flip a padding bit of the last character: decodes to the same bytes
	// unless strict decoding is on.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, parts[2][len(parts[2])-1])
	nonCanonical := parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + string(alphabet[last^1])

	critTok := jwt.NewWithClaims(jwt.SigningMethodHS256, base)
	critTok.Header["crit"] = []string{"exp"}
	crit, err := critTok.SignedString(testSecret())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		v          *Verifier
		token      string
		wantReason string              // "" means the token must be accepted
		check      func(Identity) bool // optional, for accepted tokens
	}{
		{name: "valid HS256 user token", v: hmacV, token: hs(with(base, "role", "user", "sessions", []string{"s-1", "s_2"})),
			check: func(id Identity) bool {
				return id.Subject == "alice" && id.Role == RoleUser && slices.Equal(id.Sessions, []string{"s-1", "s_2"}) &&
					id.TokenID == "0123456789abcdef0123456789abcdef" && id.Expires.Unix() == now.Add(time.Hour).Unix() &&
					!id.MayAccessAnySession() && id.AllowsSession("s-1") && !id.AllowsSession("s-3")
			}},
		{name: "valid HS384", v: hmacV, token: sign(t, jwt.SigningMethodHS384, testSecret(), base)},
		{name: "valid HS512", v: hmacV, token: sign(t, jwt.SigningMethodHS512, testSecret(), base)},
		{name: "valid ES256 against PEM key", v: ecV, token: sign(t, jwt.SigningMethodES256, ecKey, base),
			check: func(id Identity) bool { return id.Subject == "alice" }},
		{name: "valid EdDSA against PEM key", v: edV, token: sign(t, jwt.SigningMethodEdDSA, edKey, base),
			check: func(id Identity) bool { return id.Subject == "alice" }},
		{name: "ES256 with secret also configured", v: ecOtherSecretV, token: sign(t, jwt.SigningMethodES256, ecKey, base)},
		{name: "default role is user", v: hmacV, token: valid,
			check: func(id Identity) bool { return id.Role == RoleUser && id.Sessions == nil && id.AllowsSession("any") }},
		{name: "agent role", v: hmacV, token: hs(with(base, "role", "agent")),
			check: func(id Identity) bool { return id.Role == RoleAgent && id.MayAccessAnySession() }},
		{name: "admin role", v: hmacV, token: hs(with(base, "role", "admin")),
			check: func(id Identity) bool { return id.Role == RoleAdmin && id.MayAccessAnySession() }},
		{name: "null role is user", v: hmacV, token: hs(with(base, "role", nil)),
			check: func(id Identity) bool { return id.Role == RoleUser }},
		{name: "userId fallback", v: hmacV, token: hs(with(base, "sub", deleteClaim{}, "userId", "u-42")),
			check: func(id Identity) bool { return id.Subject == "u-42" }},
		{name: "sub wins over userId", v: hmacV, token: hs(with(base, "userId", "u-42")),
			check: func(id Identity) bool { return id.Subject == "alice" }},
		{name: "no jti", v: hmacV, token: hs(with(base, "jti", deleteClaim{})),
			check: func(id Identity) bool { return id.TokenID == "" }},
		{name: "null sessions means no list", v: hmacV, token: hs(with(base, "sessions", nil)),
			check: func(id Identity) bool { return id.Sessions == nil && id.AllowsSession("x") }},
		{name: "empty sessions allows none", v: hmacV, token: hs(with(base, "sessions", []string{})),
			check: func(id Identity) bool { return id.Sessions != nil && !id.AllowsSession("x") }},
		{name: "expired within leeway", v: hmacV, token: hs(with(base, "exp", now.Add(-10*time.Second).Unix()))},
		{name: "iss and aud as configured", v: issAudV, token: hs(with(base, "iss", "https://issuer.example", "aud", []string{"other", "edge"}))},

		{name: "empty token", v: hmacV, token: "", wantReason: ReasonMissing},
		{name: "alg none", v: hmacV, token: noneToken, wantReason: ReasonAlgorithm},
		{name: "alg none against public key", v: ecV, token: noneToken, wantReason: ReasonAlgorithm},
		{name: "alg None", v: hmacV, token: noneCapsToken, wantReason: ReasonAlgorithm},
		{name: "unknown alg", v: hmacV, token: unknownAlg, wantReason: ReasonAlgorithm},
		{name: "no alg header", v: hmacV, token: noAlg, wantReason: ReasonMalformed},
		{name: "HS256 when only a public key is configured", v: ecV, token: valid, wantReason: ReasonAlgorithm},
		{name: "alg confusion without secret", v: ecV, token: sign(t, jwt.SigningMethodHS256, ecPEM, base), wantReason: ReasonAlgorithm},
		{name: "alg confusion with other secret", v: ecOtherSecretV, token: sign(t, jwt.SigningMethodHS256, ecPEM, base), wantReason: ReasonSignature},
		{name: "ES256 when only a secret is configured", v: hmacV, token: sign(t, jwt.SigningMethodES256, ecKey, base), wantReason: ReasonAlgorithm},
		{name: "ES384 against a P-256 key", v: ecV, token: sign(t, jwt.SigningMethodES384, ec384Key, base), wantReason: ReasonAlgorithm},
		{name: "EdDSA against an ECDSA key", v: ecV, token: sign(t, jwt.SigningMethodEdDSA, edKey, base), wantReason: ReasonAlgorithm},
		{name: "ES256 signed by another key", v: ecV, token: sign(t, jwt.SigningMethodES256, mustECKey(t), base), wantReason: ReasonSignature},
		{name: "bad signature (other secret)", v: hmacV, token: sign(t, jwt.SigningMethodHS256, otherSecret(), base), wantReason: ReasonSignature},
		{name: "tampered payload", v: hmacV, token: tampered, wantReason: ReasonSignature},
		{name: "tampered signature", v: hmacV, token: badSigBytes, wantReason: ReasonSignature},
		{name: "non-canonical base64", v: hmacV, token: nonCanonical, wantReason: ReasonMalformed},
		{name: "expired", v: hmacV, token: hs(with(base, "iat", now.Add(-2*time.Hour).Unix(), "nbf", deleteClaim{}, "exp", now.Add(-time.Hour).Unix())), wantReason: ReasonExpired},
		{name: "nbf in the future", v: hmacV, token: hs(with(base, "nbf", now.Add(time.Hour).Unix(), "exp", now.Add(2*time.Hour).Unix())), wantReason: ReasonNotYetValid},
		{name: "iat in the future", v: hmacV, token: hs(with(base, "iat", now.Add(time.Hour).Unix(), "exp", now.Add(2*time.Hour).Unix())), wantReason: ReasonNotYetValid},
		{name: "missing exp", v: hmacV, token: hs(with(base, "exp", deleteClaim{})), wantReason: ReasonNoExpiry},
		{name: "zero exp", v: hmacV, token: hs(with(base, "exp", 0)), wantReason: ReasonNoExpiry},
		{name: "exp not a number", v: hmacV, token: hs(with(base, "exp", "tomorrow")), wantReason: ReasonClaims},
		{name: "missing sub", v: hmacV, token: hs(with(base, "sub", deleteClaim{})), wantReason: ReasonNoSubject},
		{name: "empty sub", v: hmacV, token: hs(with(base, "sub", "")), wantReason: ReasonNoSubject},
		{name: "empty userId", v: hmacV, token: hs(with(base, "sub", deleteClaim{}, "userId", "")), wantReason: ReasonNoSubject},
		{name: "sub not a string", v: hmacV, token: hs(with(base, "sub", 42)), wantReason: ReasonClaims},
		{name: "userId not a string", v: hmacV, token: hs(with(base, "sub", deleteClaim{}, "userId", 42)), wantReason: ReasonClaims},
		{name: "sub too long", v: hmacV, token: hs(with(base, "sub", strings.Repeat("a", MaxSubjectLen+1))), wantReason: ReasonClaims},
		{name: "sub of MaxSubjectLen", v: hmacV, token: hs(with(base, "sub", strings.Repeat("a", MaxSubjectLen)))},
		{name: "sub in other scripts", v: hmacV, token: hs(with(base, "sub", "émilie@例え.jp")),
			check: func(id Identity) bool { return id.Subject == "émilie@例え.jp" }},
		{name: "NUL in sub", v: hmacV, token: hs(with(base, "sub", "alice\x00admin")), wantReason: ReasonClaims},
		{name: "newline in sub", v: hmacV, token: hs(with(base, "sub", "alice\nmsg=forged")), wantReason: ReasonClaims},
		{name: "tab in sub", v: hmacV, token: hs(with(base, "sub", "a\tb")), wantReason: ReasonClaims},
		{name: "DEL in sub", v: hmacV, token: hs(with(base, "sub", "a\x7f")), wantReason: ReasonClaims},
		{name: "C1 control in sub", v: hmacV, token: hs(with(base, "sub", "a\u0085b")), wantReason: ReasonClaims},
		{name: "escape in userId", v: hmacV, token: hs(with(base, "sub", deleteClaim{}, "userId", "u\x1b[31m")), wantReason: ReasonClaims},
		{name: "lifetime of DefaultMaxTTL", v: hmacV, token: hs(with(base, "exp", now.Add(DefaultMaxTTL).Unix()))},
		{name: "lifetime over DefaultMaxTTL", v: hmacV, token: hs(with(base, "exp", now.Add(DefaultMaxTTL+time.Second).Unix())), wantReason: ReasonLifetime},
		{name: "a century", v: hmacV, token: hs(with(base, "exp", now.AddDate(100, 0, 0).Unix())), wantReason: ReasonLifetime},
		{name: "a century without iat", v: hmacV, token: hs(with(base, "iat", deleteClaim{}, "exp", now.AddDate(100, 0, 0).Unix())), wantReason: ReasonLifetime},
		{name: "within MaxTTL without iat", v: hmacV, token: hs(with(base, "iat", deleteClaim{}, "exp", now.Add(DefaultMaxTTL).Unix()))},
		{name: "old iat, long lifetime, little left", v: hmacV, token: hs(with(base, "iat", now.Add(-DefaultMaxTTL).Unix(), "nbf", deleteClaim{}, "exp", now.Add(time.Hour).Unix())), wantReason: ReasonLifetime},
		{name: "over a configured MaxTTL", v: dayV, token: hs(with(base, "exp", now.Add(25*time.Hour).Unix())), wantReason: ReasonLifetime},
		{name: "within a configured MaxTTL", v: dayV, token: hs(with(base, "exp", now.Add(23*time.Hour).Unix()))},
		{name: "bad role", v: hmacV, token: hs(with(base, "role", "root")), wantReason: ReasonRole},
		{name: "empty role", v: hmacV, token: hs(with(base, "role", "")), wantReason: ReasonRole},
		{name: "role with other case", v: hmacV, token: hs(with(base, "role", "Admin")), wantReason: ReasonRole},
		{name: "role not a string", v: hmacV, token: hs(with(base, "role", true)), wantReason: ReasonClaims},
		{name: "sessions not an array", v: hmacV, token: hs(with(base, "sessions", "s-1")), wantReason: ReasonClaims},
		{name: "sessions with a number", v: hmacV, token: hs(with(base, "sessions", []any{"s-1", 2})), wantReason: ReasonClaims},
		{name: "sessions with a bad id", v: hmacV, token: hs(with(base, "sessions", []string{"a/b"})), wantReason: ReasonClaims},
		{name: "sessions with an empty id", v: hmacV, token: hs(with(base, "sessions", []string{""})), wantReason: ReasonClaims},
		{name: "sessions with a long id", v: hmacV, token: hs(with(base, "sessions", []string{strings.Repeat("a", MaxSessionIDLen+1)})), wantReason: ReasonClaims},
		{name: "jti not a string", v: hmacV, token: hs(with(base, "jti", 7)), wantReason: ReasonClaims},
		{name: "wrong iss", v: issAudV, token: hs(with(base, "iss", "https://evil.example", "aud", "edge")), wantReason: ReasonIssuer},
		{name: "missing iss", v: issAudV, token: hs(with(base, "aud", "edge")), wantReason: ReasonIssuer},
		{name: "wrong aud", v: issAudV, token: hs(with(base, "iss", "https://issuer.example", "aud", "other")), wantReason: ReasonAudience},
		{name: "missing aud", v: issAudV, token: hs(with(base, "iss", "https://issuer.example")), wantReason: ReasonAudience},
		{name: "crit header", v: hmacV, token: crit, wantReason: ReasonMalformed},
		{name: "oversized token", v: hmacV, token: hs(with(base, "pad", strings.Repeat("x", MaxTokenLen))), wantReason: ReasonMalformed},
		{name: "garbage text", v: hmacV, token: "not a token at all", wantReason: ReasonMalformed},
		{name: "two segments", v: hmacV, token: parts[0] + "." + parts[1], wantReason: ReasonMalformed},
		{name: "four segments", v: hmacV, token: valid + ".x", wantReason: ReasonMalformed},
		{name: "payload not JSON", v: hmacV, token: parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + parts[2], wantReason: ReasonMalformed},
		{name: "payload a JSON array", v: hmacV, token: parts[0] + "." + b64JSON(t, []int{1}) + "." + parts[2], wantReason: ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := tt.v.Verify(tt.token)
			if got := ReasonOf(err); got != tt.wantReason {
				t.Fatalf("ReasonOf(Verify) = %q, want %q (err: %v)", got, tt.wantReason, err)
			}
			if tt.wantReason != "" {
				if te, ok := errors.AsType[*TokenError](err); !ok {
					t.Errorf("error %T is not a *TokenError", err)
				} else if tt.token != "" && strings.Contains(te.Error(), tt.token) {
					t.Errorf("error text contains the token")
				}
				if id.Subject != "" || id.Role != "" {
					t.Errorf("refused token returned identity %+v", id)
				}
				return
			}
			if tt.check != nil && !tt.check(id) {
				t.Errorf("identity %+v fails the check", id)
			}
		})
	}
}

func mustECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyRSA(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, MinRSABits)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&key.PublicKey)})
	pkixV := newTestVerifier(t, Config{PublicKeyPEM: pemPublicKey(t, &key.PublicKey)})
	pkcs1V := newTestVerifier(t, Config{PublicKeyPEM: pkcs1PEM})
	base := validClaims(time.Now())

	tests := []struct {
		name       string
		v          *Verifier
		token      string
		wantReason string
	}{
		{"RS256 PKIX", pkixV, sign(t, jwt.SigningMethodRS256, key, base), ""},
		{"RS512 PKCS1", pkcs1V, sign(t, jwt.SigningMethodRS512, key, base), ""},
		{"PS256", pkixV, sign(t, jwt.SigningMethodPS256, key, base), ""},
		{"alg confusion with PKCS1 PEM", pkcs1V, sign(t, jwt.SigningMethodHS256, pkcs1PEM, base), ReasonAlgorithm},
		{"ES256 against RSA key", pkixV, sign(t, jwt.SigningMethodES256, mustECKey(t), base), ReasonAlgorithm},
		{"expired RS256", pkixV, sign(t, jwt.SigningMethodRS256, key, with(base, "exp", time.Now().Add(-time.Hour).Unix())), ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.v.Verify(tt.token)
			if got := ReasonOf(err); got != tt.wantReason {
				t.Fatalf("ReasonOf = %q, want %q (err: %v)", got, tt.wantReason, err)
			}
		})
	}
}

func TestVerifyCertificatePEM(t *testing.T) {
	t.Parallel()
	key := mustECKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})})
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, key, validClaims(time.Now()))); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	now := time.Now()
	expired := sign(t, jwt.SigningMethodHS256, testSecret(), with(validClaims(now), "exp", now.Add(-time.Minute).Unix()))
	tests := []struct {
		name       string
		leeway     time.Duration
		wantReason string
	}{
		{"default 30s", 0, ReasonExpired},
		{"two minutes", 2 * time.Minute, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, Config{Secret: testSecret(), Leeway: tt.leeway})
			_, err := v.Verify(expired)
			if got := ReasonOf(err); got != tt.wantReason {
				t.Fatalf("ReasonOf = %q, want %q (err: %v)", got, tt.wantReason, err)
			}
		})
	}
}

func TestVerifyRequest(t *testing.T) {
	t.Parallel()
	v := newTestVerifier(t, Config{Secret: testSecret()})
	token := sign(t, jwt.SigningMethodHS256, testSecret(), validClaims(time.Now()))

	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	if id, err := v.VerifyRequest(r); err != nil || id.Subject != "alice" {
		t.Fatalf("VerifyRequest = %+v, %v", id, err)
	}

	_, err := v.VerifyRequest(httptest.NewRequest("GET", "/ws", nil))
	if ReasonOf(err) != ReasonMissing || !errors.Is(err, ErrNoToken) {
		t.Fatalf("VerifyRequest without token: reason %q, err %v", ReasonOf(err), err)
	}
}

func TestVerifierConcurrent(t *testing.T) {
	t.Parallel()
	v := newTestVerifier(t, Config{Secret: testSecret()})
	token := sign(t, jwt.SigningMethodHS256, testSecret(), validClaims(time.Now()))
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for range 50 {
				if _, err = v.Verify(token); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestReasonOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"other error", errors.New("x"), ""},
		{"ErrNoToken", ErrNoToken, ReasonMissing},
		{"wrapped ErrNoToken", errors.Join(errors.New("ctx"), ErrNoToken), ReasonMissing},
		{"TokenError", refuse(ReasonExpired, jwt.ErrTokenExpired), ReasonExpired},
		{"wrapped TokenError", errors.Join(errors.New("ctx"), refuse(ReasonRole, nil)), ReasonRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ReasonOf(tt.err); got != tt.want {
				t.Fatalf("ReasonOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTokenErrorUnwrap(t *testing.T) {
	t.Parallel()
	v := newTestVerifier(t, Config{Secret: testSecret()})
	now := time.Now()
	token := sign(t, jwt.SigningMethodHS256, testSecret(), with(validClaims(now), "exp", now.Add(-time.Hour).Unix()))
	_, err := v.Verify(token)
	if !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("errors.Is(%v, jwt.ErrTokenExpired) = false", err)
	}
	if s := (&TokenError{Reason: ReasonRole}).Error(); !strings.Contains(s, ReasonRole) {
		t.Fatalf("Error() = %q, want it to name the reason", s)
	}
}
