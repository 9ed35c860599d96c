package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenLen is the longest token, in bytes, that [Verifier.Verify] will
// parse; longer ones are refused with [ReasonMalformed] before any decoding.
const MaxTokenLen = 8 << 10

// Verifier checks bearer tokens against a [Config]. It is immutable after
// [NewVerifier] returns and safe for concurrent use by multiple goroutines.
type Verifier struct {
	secret  []byte
	rsaKey  *rsa.PublicKey
	ecKey   *ecdsa.PublicKey
	edKey   ed25519.PublicKey
	methods []string // algorithms the configured keys allow
	issuer  string
	maxTTL  time.Duration
	leeway  time.Duration
	opts    []jwt.ParserOption
}

// Leeway is the clock skew the verifier allows past a token's "exp": a
// connection opened with a token lives until exp plus this.
func (v *Verifier) Leeway() time.Duration { return v.leeway }

// NewVerifier returns a Verifier for cfg. It fails, wrapping
// [ErrInvalidConfig], when [Config.Validate] does. The secret and key bytes
// are copied, so cfg may be reused or changed afterwards.
func NewVerifier(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot create verifier: %w", err)
	}
	v := &Verifier{issuer: cfg.Issuer, maxTTL: cfg.maxTTL(), leeway: cfg.leeway()}
	if len(cfg.Secret) > 0 {
		v.secret = slices.Clone(cfg.Secret)
		v.methods = append(v.methods, "HS256", "HS384", "HS512")
	}
	if len(cfg.PublicKeyPEM) > 0 {
		key, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil { // unreachable after Validate, kept for safety
			return nil, fmt.Errorf("cannot create verifier: %w: PublicKeyPEM: %w", ErrInvalidConfig, err)
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			v.rsaKey = k
			v.methods = append(v.methods, "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
		case *ecdsa.PublicKey:
			v.ecKey = k
			v.methods = append(v.methods, ecdsaAlg(k.Curve))
		case ed25519.PublicKey:
			v.edKey = k
			v.methods = append(v.methods, "EdDSA")
		}
	}
	v.opts = []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.leeway()),
		// Canonical base64url only, so one signed token has one spelling.
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		v.opts = append(v.opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		v.opts = append(v.opts, jwt.WithAudience(cfg.Audience))
	}
	return v, nil
}

// Verify checks token's length, algorithm, signature and claims, and
// returns the [Identity] it speaks for. Every refusal is a *[TokenError]
// whose Reason says why ([ReasonOf] extracts it); an empty token is refused
// with [ReasonMissing] and wraps [ErrNoToken].
func (v *Verifier) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, refuse(ReasonMissing, ErrNoToken)
	}
	if len(token) > MaxTokenLen {
		return Identity{}, refuse(ReasonMalformed,
			fmt.Errorf("token is %d bytes, limit is %d", len(token), MaxTokenLen))
	}
	claims := jwt.MapClaims{}
	// A fresh parser per call: jwt does not document Parser as safe for
	// concurrent use, and building one is cheap next to a signature check.
	parsed, err := jwt.NewParser(v.opts...).ParseWithClaims(token, claims, v.keyFor)
	if err != nil {
		return Identity{}, v.classify(parsed, claims, err)
	}
	// RFC 7515 §4.1.11: extensions listed in "crit" must be understood; we
	// understand none, so such a token cannot be processed as its issuer meant.
	if _, ok := parsed.Header["crit"]; ok {
		return Identity{}, refuse(ReasonMalformed, errors.New(`"crit" header is not supported`))
	}
	if terr := checkLifetime(claims, v.maxTTL, v.leeway, time.Now()); terr != nil {
		return Identity{}, terr
	}
	id, terr := identityFromClaims(claims)
	if terr != nil {
		return Identity{}, terr
	}
	return id, nil
}

// VerifyRequest extracts the token from r with [TokenFromRequest] and
// verifies it with [Verifier.Verify]. A request without a token is refused
// with a *[TokenError] of [ReasonMissing] that wraps [ErrNoToken].
func (v *Verifier) VerifyRequest(r *http.Request) (Identity, error) {
	token, err := TokenFromRequest(r)
	if err != nil {
		return Identity{}, refuse(ReasonMissing, err)
	}
	return v.Verify(token)
}

// keyFor picks the verification key by the token's algorithm family and
// refuses families with no configured key. WithValidMethods has already
// limited the algorithm; this keeps a key from ever serving a family it was
// not configured for (for example a public key as an HMAC secret).
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.secret != nil {
			return v.secret, nil
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		if v.rsaKey != nil {
			return v.rsaKey, nil
		}
	case *jwt.SigningMethodECDSA:
		if v.ecKey != nil {
			return v.ecKey, nil
		}
	case *jwt.SigningMethodEd25519:
		if v.edKey != nil {
			return v.edKey, nil
		}
	}
	return nil, fmt.Errorf("no key configured for algorithm %q", t.Method.Alg())
}

// classify maps a jwt parse error to a *TokenError. It matches jwt's
// sentinel errors with errors.Is, never the error text.
func (v *Verifier) classify(t *jwt.Token, claims jwt.MapClaims, err error) *TokenError {
	if t == nil || errors.Is(err, jwt.ErrTokenMalformed) {
		return refuse(ReasonMalformed, err)
	}
	alg, ok := t.Header["alg"].(string)
	if !ok {
		return refuse(ReasonMalformed, err)
	}
	// jwt reports an algorithm outside WithValidMethods as a signature
	// error and an unknown one as unverifiable; both are "not allowed" here.
	if !slices.Contains(v.methods, alg) {
		return refuse(ReasonAlgorithm, err)
	}
	if !errors.Is(err, jwt.ErrTokenInvalidClaims) {
		if errors.Is(err, jwt.ErrTokenUnverifiable) {
			return refuse(ReasonAlgorithm, err) // keyFor found no key
		}
		return refuse(ReasonSignature, err)
	}
	// The signature was good; the registered claims were not. Several
	// problems may be joined; the order below decides which one is named.
	switch {
	case errors.Is(err, jwt.ErrInvalidType):
		return refuse(ReasonClaims, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(ReasonExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(ReasonNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// jwt does not say which claim is missing except in text; look.
		if exp, _ := claims.GetExpirationTime(); exp == nil {
			return refuse(ReasonNoExpiry, err)
		}
		if iss, _ := claims.GetIssuer(); v.issuer != "" && iss == "" {
			return refuse(ReasonIssuer, err)
		}
		return refuse(ReasonAudience, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse(ReasonIssuer, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(ReasonAudience, err)
	}
	return refuse(ReasonClaims, err)
}
