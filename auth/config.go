package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

const (
	// DefaultLeeway is the clock skew allowed for "exp", "nbf" and "iat"
	// when [Config.Leeway] is zero.
	DefaultLeeway = 30 * time.Second
	// MinSecretLen is the shortest HMAC secret, in bytes, that
	// [Config.Validate] and [NewHMACSigner] accept.
	MinSecretLen = 32
	// MinRSABits is the smallest RSA modulus, in bits, accepted for a
	// public or private key.
	MinRSABits = 2048
	// DefaultMaxTTL is the longest token lifetime accepted when
	// [Config.MaxTTL] is zero: 30 days.
	DefaultMaxTTL = 30 * 24 * time.Hour
)

// Config says which tokens a [Verifier] accepts. The zero Config is invalid:
// set at least one of Secret and PublicKeyPEM.
type Config struct {
	// Secret is the HMAC secret, at least MinSecretLen bytes. When set,
	// HS256, HS384 and HS512 tokens are accepted.
	Secret []byte
	// PublicKeyPEM is an optional PEM-encoded public key: a PKIX
	// "PUBLIC KEY", a PKCS #1 "RSA PUBLIC KEY" or a "CERTIFICATE" whose key
	// is used. Only the first PEM block is read. An RSA key (at least
	// MinRSABits) allows RS256/384/512 and PS256/384/512; an ECDSA key
	// allows the one of ES256/384/512 that matches its curve (P-256, P-384,
	// P-521); an Ed25519 key allows EdDSA.
	PublicKeyPEM []byte
	// Issuer, if set, must equal the token's "iss" claim.
	Issuer string
	// Audience, if set, must be one of the token's "aud" values.
	Audience string
	// Leeway is the clock skew allowed when checking "exp", "nbf" and
	// "iat". Zero means DefaultLeeway; negative is invalid.
	Leeway time.Duration
	// MaxTTL is the longest lifetime a token may have: "exp" minus "iat",
	// or, for a token without "iat", "exp" minus now (beyond the leeway).
	// A token stolen from a log or a URL is then useful for at most this
	// long. Zero means DefaultMaxTTL; negative is invalid.
	MaxTTL time.Duration
}

// Validate reports every problem with c at once, joined with
// [errors.Join]; each wraps [ErrInvalidConfig]. It returns nil for a usable
// Config. The secret's value never appears in the error.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if len(c.Secret) == 0 && len(c.PublicKeyPEM) == 0 {
		bad("neither Secret nor PublicKeyPEM is set")
	}
	if len(c.Secret) > 0 && len(c.Secret) < MinSecretLen {
		bad("Secret is %d bytes, need at least %d", len(c.Secret), MinSecretLen)
	}
	if len(c.PublicKeyPEM) > 0 {
		if _, err := parsePublicKey(c.PublicKeyPEM); err != nil {
			bad("PublicKeyPEM: %v", err)
		}
	}
	if c.Leeway < 0 {
		bad("Leeway is %v, must not be negative", c.Leeway)
	}
	if c.MaxTTL < 0 {
		bad("MaxTTL is %v, must not be negative", c.MaxTTL)
	}
	return errors.Join(errs...)
}

// leeway returns the configured leeway or DefaultLeeway.
func (c Config) leeway() time.Duration {
	if c.Leeway == 0 {
		return DefaultLeeway
	}
	return c.Leeway
}

// maxTTL returns the configured maximum lifetime or DefaultMaxTTL.
func (c Config) maxTTL() time.Duration {
	if c.MaxTTL == 0 {
		return DefaultMaxTTL
	}
	return c.MaxTTL
}

// parsePublicKey decodes the first PEM block of data into an *rsa.PublicKey,
// *ecdsa.PublicKey (P-256, P-384 or P-521) or ed25519.PublicKey.
func parsePublicKey(data []byte) (any, error) {
	block, _ := pem.Decode(bytes.TrimSpace(data))
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block type %q is not PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot parse %s: %w", block.Type, err)
	}
	if err := checkPublicKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

// checkPublicKey refuses key types and sizes the Verifier does not support.
func checkPublicKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA key is %d bits, need at least %d", k.N.BitLen(), MinRSABits)
		}
	case *ecdsa.PublicKey:
		if ecdsaAlg(k.Curve) == "" {
			return fmt.Errorf("ECDSA curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 key is %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
	default:
		return fmt.Errorf("unsupported public key type %T", key)
	}
	return nil
}

// ecdsaAlg returns the JWS algorithm for curve, or "" if there is none.
func ecdsaAlg(curve elliptic.Curve) string {
	switch curve {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}
