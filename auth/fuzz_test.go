package auth

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Fixed claim times for fuzz seeds, so the committed corpus under
// testdata/fuzz/FuzzVerify stays valid: issued 2023-11-14, expiring 2100-01-01.
const (
	fuzzIssuedAt = 1_700_000_000
	fuzzExpires  = 4_102_444_800
)

// fuzzConfig is the verifier configuration of the fuzz tests: the seeds
// live from 2023 to 2100, longer than DefaultMaxTTL allows, so the
// committed corpus never expires.
func fuzzConfig(secret []byte) Config {
	return Config{Secret: secret, MaxTTL: 100 * 365 * 24 * time.Hour}
}

// fuzzValidTokens returns tokens signed with testSecret that Verify
// accepts. HMAC signing is deterministic, so these are the exact strings
// stored in testdata/fuzz/FuzzVerify/valid_*.
func fuzzValidTokens(tb testing.TB) []string {
	base := jwt.MapClaims{"sub": "alice", "iat": fuzzIssuedAt, "nbf": fuzzIssuedAt, "exp": fuzzExpires, "jti": "00112233445566778899aabbccddeeff"}
	return []string{
		sign(tb, jwt.SigningMethodHS256, testSecret(), base),
		sign(tb, jwt.SigningMethodHS384, testSecret(), with(base, "role", "agent", "sessions", []string{"s-1", "s_2"})),
		sign(tb, jwt.SigningMethodHS512, testSecret(), with(base, "sub", deleteClaim{}, "userId", "u-42", "role", "admin")),
		sign(tb, jwt.SigningMethodHS256, testSecret(), with(base, "sessions", nil, "iss", "x", "aud", []string{"a", "b"})),
	}
}

// fuzzInvalidTokens returns tokens Verify must refuse.
func fuzzInvalidTokens(tb testing.TB) []string {
	base := jwt.MapClaims{"sub": "alice", "iat": fuzzIssuedAt, "exp": fuzzExpires}
	return []string{
		"eyJhbGciOiJub25lIn0." + b64JSON(tb, base) + ".",
		sign(tb, jwt.SigningMethodHS256, otherSecret(), base),
		sign(tb, jwt.SigningMethodHS256, testSecret(), with(base, "exp", fuzzIssuedAt+60)),
		sign(tb, jwt.SigningMethodHS256, testSecret(), with(base, "sessions", []any{"ok", 1.5})),
		"not.a.token",
		"",
	}
}

// FuzzVerify checks that Verify never panics, refuses only with a
// *TokenError, and accepts nothing but the seed tokens signed with the
// configured secret.
func FuzzVerify(f *testing.F) {
	valid := fuzzValidTokens(f)
	isSeed := make(map[string]bool, len(valid))
	for _, tok := range valid {
		isSeed[tok] = true
		f.Add(tok)
	}
	for _, tok := range fuzzInvalidTokens(f) {
		f.Add(tok)
	}
	v := newTestVerifier(f, fuzzConfig(testSecret()))
	other := newTestVerifier(f, fuzzConfig(otherSecret()))

	f.Fuzz(func(t *testing.T, token string) {
		// The same text as a bearer header comes back trimmed.
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		got, err := TokenFromRequest(r)
		if want := strings.TrimSpace(token); want != "" && (err != nil || got != want) {
			t.Fatalf("TokenFromRequest = %q, %v; want %q", got, err, want)
		}

		id, err := v.Verify(token)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("Verify error has no reason: %v", err)
			}
			if id.Subject != "" || id.Role != "" || id.Sessions != nil {
				t.Fatalf("refused token returned identity %+v", id)
			}
			return
		}
		if id.Subject == "" || len(id.Subject) > MaxSubjectLen || !id.Role.Valid() || id.Expires.IsZero() {
			t.Fatalf("accepted token gave identity %+v", id)
		}
		for _, s := range id.Sessions {
			if !validSessionID(s) {
				t.Fatalf("accepted token gave session id %q", s)
			}
		}
		if isSeed[token] {
			return
		}
		if _, err := other.Verify(token); err == nil {
			t.Fatalf("token accepted by verifiers with two different secrets: %q", token)
		}
		// The signature covers the exact header and payload text and only
		// canonical base64url is decoded, so no other string can pass
		// without forging HMAC.
		t.Fatalf("accepted a token that is not a signed seed: %q", token)
	})
}

func TestFuzzCorpusValidSeedsAccepted(t *testing.T) {
	t.Parallel()
	v := newTestVerifier(t, fuzzConfig(testSecret()))
	for _, tok := range fuzzValidTokens(t) {
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("seed %q refused: %v", tok, err)
		}
	}
	for _, tok := range fuzzInvalidTokens(t) {
		if _, err := v.Verify(tok); err == nil {
			t.Errorf("invalid seed %q accepted", tok)
		}
	}
}

func TestFuzzCorpusInSync(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzVerify", "valid_*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid_* corpus files (err %v)", err)
	}
	valid := fuzzValidTokens(t)
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		header, arg, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
		quoted, ok := strings.CutPrefix(arg, "string(")
		quoted, ok2 := strings.CutSuffix(quoted, ")")
		tok, err := strconv.Unquote(quoted)
		if header != "go test fuzz v1" || !ok || !ok2 || err != nil {
			t.Fatalf("%s is not a one-string corpus file", name)
		}
		if !slices.Contains(valid, tok) {
			t.Errorf("%s holds a token fuzzValidTokens no longer produces", name)
		}
	}
}
