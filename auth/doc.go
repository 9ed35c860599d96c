// Package auth authenticates clients of the edge server with JSON Web
// Tokens (compact JWS, RFC 7515/7519), built on github.com/golang-jwt/jwt/v5.
//
// # Where to start
//
// An edge builds one [Verifier] from a [Config] with [NewVerifier] and calls
// [Verifier.VerifyRequest] (or [TokenFromRequest] then [Verifier.Verify])
// for each connection. The resulting [Identity] says who the client is; the
// caller decides what it may reach with [Identity.MayAccessAnySession],
// [Identity.AllowsSession] and its own ownership records. A refusal is a
// *[TokenError]; [ReasonOf] gives its short, stable reason word.
//
// [Signer] mints tokens, for the CLI "token" subcommand and for the dev
// tokens printed at first start. [LoadOrCreateSecret] keeps the dev HMAC
// secret in a file.
//
// # Algorithms
//
// Only the algorithms of the configured keys are accepted:
//
//   - [Config.Secret] (at least [MinSecretLen] bytes): HS256, HS384, HS512.
//   - an RSA public key (at least [MinRSABits]): RS256, RS384, RS512,
//     PS256, PS384, PS512.
//   - an ECDSA public key: ES256 for P-256, ES384 for P-384, ES512 for
//     P-521.
//   - an Ed25519 public key: EdDSA.
//
// Each algorithm family is verified only with its own kind of key. "none"
// is always refused, and so is an HMAC token when no secret is configured,
// which defeats the classic confusion attack of signing an HS256 token with
// the server's public key as the HMAC secret. Tokens longer than
// [MaxTokenLen], tokens with non-canonical base64url, and tokens with a
// "crit" header are refused as malformed.
//
// # Claims
//
//   - "exp" is required. "exp", "nbf" and "iat" are checked with a clock
//     skew of [Config.Leeway] ([DefaultLeeway] when zero); an "iat" in the
//     future counts as not yet valid.
//   - A token may live at most [Config.MaxTTL] ([DefaultMaxTTL], 30 days,
//     when zero): "exp" minus "iat", or "exp" minus now when there is no
//     "iat". Longer ones are refused with [ReasonLifetime].
//   - "sub" names the subject; when absent, the reference server's
//     "userId" claim is used instead. It must be a non-empty UTF-8 string
//     of at most [MaxSubjectLen] bytes with no control characters (NUL,
//     newline, DEL, C1): it is recorded as the owner of sessions and
//     written to logs.
//   - "role" is "user" (the default when absent), "agent" or "admin".
//     Agents and admins may reach any session; users only their own.
//   - "sessions", when present and not null, is an allow-list of session
//     ids, each matching ^[A-Za-z0-9_-]{1,128}$.
//   - "jti", when present, is reported as [Identity.TokenID].
//   - "iss" and "aud" are checked only when [Config.Issuer] or
//     [Config.Audience] is set; then they are required.
//
// A claim of the wrong JSON type is refused with [ReasonClaims].
//
// # Concurrency
//
// A [Verifier] and a [Signer] are immutable once built and safe for
// concurrent use. The package keeps no global mutable state.
package auth
