package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaSmall, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})

	tests := []struct {
		name     string
		cfg      Config
		problems int      // 0 means valid
		mention  []string // substrings the error must contain
	}{
		{name: "secret only", cfg: Config{Secret: testSecret()}},
		{name: "public key only", cfg: Config{PublicKeyPEM: pemPublicKey(t, edPub)}},
		{name: "both, with leeway", cfg: Config{Secret: testSecret(), PublicKeyPEM: pemPublicKey(t, edPub), Leeway: time.Minute}},
		{name: "zero config", cfg: Config{}, problems: 1, mention: []string{"neither Secret nor PublicKeyPEM"}},
		{name: "short secret", cfg: Config{Secret: []byte("short")}, problems: 1, mention: []string{"Secret is 5 bytes"}},
		{name: "not PEM", cfg: Config{PublicKeyPEM: []byte("hello")}, problems: 1, mention: []string{"no PEM block"}},
		{name: "private key PEM", cfg: Config{PublicKeyPEM: privPEM}, problems: 1, mention: []string{`"PRIVATE KEY"`}},
		{name: "P-224 key", cfg: Config{PublicKeyPEM: pemPublicKey(t, &p224.PublicKey)}, problems: 1, mention: []string{"P-224"}},
		{name: "1024-bit RSA key", cfg: Config{PublicKeyPEM: pemPublicKey(t, &rsaSmall.PublicKey)}, problems: 1, mention: []string{"1024 bits"}},
		{name: "corrupt DER", cfg: Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})}, problems: 1, mention: []string{"cannot parse PUBLIC KEY"}},
		{
			name:     "every problem at once",
			cfg:      Config{Secret: []byte("0123456789"), PublicKeyPEM: []byte("garbage"), Leeway: -time.Second, MaxTTL: -time.Hour},
			problems: 4,
			mention:  []string{"Secret is 10 bytes", "PublicKeyPEM", "Leeway is -1s", "MaxTTL is -1h0m0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.problems == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := NewVerifier(tt.cfg); err != nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want it to wrap ErrInvalidConfig", err)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok || len(joined.Unwrap()) != tt.problems {
				t.Fatalf("Validate() = %q, want %d problems", err, tt.problems)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Validate() = %q, want it to mention %q", err, m)
				}
			}
			if _, err := NewVerifier(tt.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewVerifier error = %v, want it to wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestConfigValidateHidesSecret(t *testing.T) {
	t.Parallel()
	secret := "s3cr3t-value"
	if err := (Config{Secret: []byte(secret)}).Validate(); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("Validate() = %v, want an error that does not echo the secret", err)
	}
}

func TestNewVerifierCopiesSecret(t *testing.T) {
	t.Parallel()
	secret := testSecret()
	v := newTestVerifier(t, Config{Secret: secret})
	token := sign(t, jwt.SigningMethodHS256, testSecret(), validClaims(time.Now()))
	secret[0] ^= 0xff
	if _, err := v.Verify(token); err != nil {
		t.Fatalf("Verify after caller changed its secret slice: %v", err)
	}
}
