package auth

import (
	"errors"
	"fmt"
)

// ErrNoToken is returned by [TokenFromRequest] when a request carries no
// bearer token, and is wrapped by the [TokenError] that [Verifier.Verify]
// and [Verifier.VerifyRequest] return for an empty or absent token.
var ErrNoToken = errors.New("auth: no token")

// ErrInvalidConfig is wrapped by every problem [Config.Validate] reports.
var ErrInvalidConfig = errors.New("auth: invalid config")

// ErrInvalidKey is wrapped by the errors [NewHMACSigner] and [NewSigner]
// return when the signing method and key do not fit together.
var ErrInvalidKey = errors.New("auth: invalid signing key")

// Reasons a token is refused, as carried by [TokenError.Reason] and returned
// by [ReasonOf]. They are short, stable words meant for logs, metrics labels
// and wire error details; their set is closed and never grows per request.
const (
	// ReasonMissing: no token was presented.
	ReasonMissing = "missing_token"
	// ReasonMalformed: the text is not a compact JWS (wrong number of
	// segments, bad base64url, bad JSON, missing "alg", a "crit" header),
	// or it is longer than [MaxTokenLen].
	ReasonMalformed = "malformed"
	// ReasonAlgorithm: the "alg" header names an algorithm the configured
	// keys do not allow, including "none" and an HMAC algorithm when no
	// secret is configured (algorithm confusion).
	ReasonAlgorithm = "algorithm_not_allowed"
	// ReasonSignature: the signature does not verify with the configured key.
	ReasonSignature = "bad_signature"
	// ReasonExpired: "exp" is in the past, beyond the leeway.
	ReasonExpired = "expired"
	// ReasonNotYetValid: "nbf" or "iat" is in the future, beyond the leeway.
	ReasonNotYetValid = "not_yet_valid"
	// ReasonNoExpiry: the token has no "exp" claim.
	ReasonNoExpiry = "missing_exp"
	// ReasonNoSubject: neither "sub" nor "userId" names a subject, or the
	// subject is empty.
	ReasonNoSubject = "missing_subject"
	// ReasonRole: "role" is a string other than "user", "agent" or "admin".
	ReasonRole = "invalid_role"
	// ReasonIssuer: an issuer is configured and "iss" is missing or differs.
	ReasonIssuer = "bad_issuer"
	// ReasonAudience: an audience is configured and "aud" is missing or
	// does not contain it.
	ReasonAudience = "bad_audience"
	// ReasonLifetime: the token is valid for longer than [Config.MaxTTL]
	// ("exp" minus "iat", or "exp" minus now without "iat").
	ReasonLifetime = "lifetime_too_long"
	// ReasonClaims: a claim has the wrong type or an invalid value, for
	// example "sessions" not being an array of session ids, or a subject
	// longer than [MaxSubjectLen], not UTF-8, or with a control character.
	ReasonClaims = "invalid_claims"
)

// TokenError says why a token was refused. Reason is one of the Reason
// constants; Err carries the detail and may wrap jwt's sentinel errors or
// [ErrNoToken]. The error text never contains the token itself.
type TokenError struct {
	Reason string
	Err    error
}

// Error implements error.
func (e *TokenError) Error() string {
	if e.Err == nil {
		return "auth: token refused (" + e.Reason + ")"
	}
	return fmt.Sprintf("auth: token refused (%s): %v", e.Reason, e.Err)
}

// Unwrap returns the underlying error.
func (e *TokenError) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of the first [TokenError] in err's chain,
// [ReasonMissing] when err is or wraps [ErrNoToken], and "" otherwise
// (including for a nil err).
func ReasonOf(err error) string {
	if te, ok := errors.AsType[*TokenError](err); ok {
		return te.Reason
	}
	if errors.Is(err, ErrNoToken) {
		return ReasonMissing
	}
	return ""
}

// refuse builds a *TokenError.
func refuse(reason string, err error) *TokenError {
	return &TokenError{Reason: reason, Err: err}
}
