package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenIDLen is the number of random bytes in a minted "jti".
const tokenIDLen = 16

// Signer mints tokens that a [Verifier] configured with the matching key
// accepts. It is immutable after construction and safe for concurrent use.
type Signer struct {
	method jwt.SigningMethod
	key    any
	now    func() time.Time // time.Now; tests may replace it
}

// NewHMACSigner returns a Signer that mints HS256 tokens with secret, which
// must be at least [MinSecretLen] bytes (else the error wraps
// [ErrInvalidKey]). The secret is copied.
func NewHMACSigner(secret []byte) (*Signer, error) {
	return NewSigner(jwt.SigningMethodHS256, secret)
}

// NewSigner returns a Signer that mints tokens with method and key:
// HS256/384/512 with a []byte of at least [MinSecretLen] bytes,
// RS256/384/512 or PS256/384/512 with an *rsa.PrivateKey of at least
// [MinRSABits], ES256/384/512 with an *ecdsa.PrivateKey on the matching
// curve, and EdDSA with an ed25519.PrivateKey. Any other combination,
// including the "none" method, returns an error wrapping [ErrInvalidKey].
func NewSigner(method jwt.SigningMethod, key any) (*Signer, error) {
	if err := checkSigningKey(method, key); err != nil {
		return nil, fmt.Errorf("cannot create signer: %w", err)
	}
	if secret, ok := key.([]byte); ok {
		key = slices.Clone(secret)
	}
	return &Signer{method: method, key: key, now: time.Now}, nil
}

// checkSigningKey refuses method/key pairs a Verifier would never accept.
func checkSigningKey(method jwt.SigningMethod, key any) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidKey, fmt.Sprintf(format, args...))
	}
	if method == nil {
		return bad("no signing method")
	}
	switch m := method.(type) {
	case *jwt.SigningMethodHMAC:
		secret, ok := key.([]byte)
		if !ok {
			return bad("%s needs a []byte secret, got %T", m.Alg(), key)
		}
		if len(secret) < MinSecretLen {
			return bad("secret is %d bytes, need at least %d", len(secret), MinSecretLen)
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		k, ok := key.(*rsa.PrivateKey)
		if !ok || k == nil {
			return bad("%s needs an *rsa.PrivateKey, got %T", method.Alg(), key)
		}
		if k.N.BitLen() < MinRSABits {
			return bad("RSA key is %d bits, need at least %d", k.N.BitLen(), MinRSABits)
		}
	case *jwt.SigningMethodECDSA:
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok || k == nil {
			return bad("%s needs an *ecdsa.PrivateKey, got %T", m.Alg(), key)
		}
		if ecdsaAlg(k.Curve) != m.Alg() {
			return bad("%s does not match ECDSA curve %s", m.Alg(), k.Curve.Params().Name)
		}
	case *jwt.SigningMethodEd25519:
		k, ok := key.(ed25519.PrivateKey)
		if !ok || len(k) != ed25519.PrivateKeySize {
			return bad("%s needs an ed25519.PrivateKey, got %T", m.Alg(), key)
		}
	default:
		return bad("signing method %q is not supported", method.Alg())
	}
	return nil
}

// MintOptions describe a token to mint.
type MintOptions struct {
	// Subject becomes "sub"; required, at most MaxSubjectLen bytes of
	// UTF-8 with no control characters.
	Subject string
	// Role becomes "role"; empty means RoleUser.
	Role Role
	// TTL is how long the token is valid from now; must be positive. The
	// "exp" claim is rounded up to a whole second.
	TTL time.Duration
	// Sessions, when non-nil, becomes the "sessions" allow-list; each entry
	// must match ^[A-Za-z0-9_-]{1,128}$. An empty non-nil slice mints a
	// token that allows no session.
	Sessions []string
	// Issuer, if set, becomes "iss".
	Issuer string
	// Audience, if set, becomes "aud".
	Audience string
}

// Mint returns a signed compact JWS carrying "sub", "role", "iat", "nbf"
// (equal to "iat"), "exp" ("iat" plus TTL), a random "jti" (16 bytes, hex)
// and, when set, "sessions", "iss" and "aud". It returns an error if opts
// is invalid or signing fails.
func (s *Signer) Mint(opts MintOptions) (string, error) {
	if err := opts.validate(); err != nil {
		return "", fmt.Errorf("cannot mint token: %w", err)
	}
	role := opts.Role
	if role == "" {
		role = RoleUser
	}
	var jti [tokenIDLen]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("cannot mint token: cannot read random token id: %w", err)
	}
	iat := s.now().Unix()
	exp := iat + int64((opts.TTL+time.Second-1)/time.Second)
	claims := jwt.MapClaims{
		"sub":  opts.Subject,
		"role": string(role),
		"iat":  iat,
		"nbf":  iat,
		"exp":  exp,
		"jti":  hex.EncodeToString(jti[:]),
	}
	if opts.Sessions != nil {
		claims["sessions"] = slices.Clone(opts.Sessions)
	}
	if opts.Issuer != "" {
		claims["iss"] = opts.Issuer
	}
	if opts.Audience != "" {
		claims["aud"] = opts.Audience
	}
	token, err := jwt.NewWithClaims(s.method, claims).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("cannot mint token: %w", err)
	}
	return token, nil
}

// validate reports every problem with o at once.
func (o MintOptions) validate() error {
	var errs []error
	if o.Subject == "" {
		errs = append(errs, errors.New("invalid Subject: empty"))
	} else if err := checkSubject(o.Subject); err != nil {
		errs = append(errs, fmt.Errorf("invalid Subject: %w", err))
	}
	if o.Role != "" && !o.Role.Valid() {
		errs = append(errs, fmt.Errorf("invalid Role %q: not user, agent or admin", o.Role))
	}
	if o.TTL <= 0 {
		errs = append(errs, fmt.Errorf("invalid TTL %v: must be positive", o.TTL))
	}
	for i, id := range o.Sessions {
		if !validSessionID(id) {
			errs = append(errs, fmt.Errorf("invalid Sessions[%d] %q: not a session id", i, id))
		}
	}
	return errors.Join(errs...)
}
