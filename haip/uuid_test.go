package haip_test

import (
	"regexp"
	"sync"
	"testing"

	"github.com/haipfabric/haipfabric/haip"
)

// v4Pattern is the lower-case form of a random (version 4, RFC 4122
// variant) uuid.
var v4Pattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// v5Pattern is the lower-case form of a name-based SHA-1 (version 5) uuid.
var v5Pattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// specPattern is HAIP's own uuid pattern (§1): versions 1–5 only.
var specPattern = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[1-5][0-9A-Fa-f]{3}-[89ABab][0-9A-Fa-f]{3}-[0-9A-Fa-f]{12}$`)

func TestNewUUID(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := make(map[string]bool)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				u := haip.NewUUID()
				if !v4Pattern.MatchString(u) || !haip.ValidUUID(u) || !specPattern.MatchString(u) {
					t.Errorf("NewUUID() = %q is not a lower-case v4 uuid", u)
				}
				mu.Lock()
				if seen[u] {
					t.Errorf("NewUUID() repeated %q", u)
				}
				seen[u] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestNameUUID(t *testing.T) {
	t.Parallel()
	if !haip.ValidUUID(haip.NameSpace) || !v5Pattern.MatchString(haip.NameSpace) {
		t.Fatalf("NameSpace %q is not a v5 uuid", haip.NameSpace)
	}
	// Vectors computed independently (Python: uuid.uuid5(UUID(NameSpace), joined)).
	vectors := []struct {
		parts []string
		want  string
	}{
		{nil, "2b820001-4cda-5303-b0c3-8838d8902093"},
		{[]string{""}, "31834362-3147-5b1b-8282-558a5126809a"},
		{[]string{"a", "bc"}, "614bf4e0-a882-5b74-b7c5-30ea883e678a"},
		{[]string{"ab", "c"}, "422b91af-8dc6-5907-ac0a-441456f7e032"},
		{[]string{"session", "run"}, "88e10a78-da47-588a-99a5-01e5ecb6995d"},
	}
	for _, v := range vectors {
		got := haip.NameUUID(v.parts...)
		if got != v.want {
			t.Errorf("NameUUID(%q) = %s, want %s", v.parts, got, v.want)
		}
		if !v5Pattern.MatchString(got) || !specPattern.MatchString(got) {
			t.Errorf("NameUUID(%q) = %s lacks version 5 / RFC 4122 variant bits", v.parts, got)
		}
		if again := haip.NameUUID(v.parts...); again != got {
			t.Errorf("NameUUID(%q) not deterministic: %s then %s", v.parts, got, again)
		}
	}
	distinct := [][]string{nil, {""}, {"", ""}, {"a"}, {"a", ""}, {"", "a"}, {"a", "bc"}, {"ab", "c"}, {"abc"}, {"1:a"}, {"1", "a"}}
	seen := make(map[string][]string)
	for _, parts := range distinct {
		u := haip.NameUUID(parts...)
		if prev, ok := seen[u]; ok {
			t.Errorf("NameUUID(%q) == NameUUID(%q) = %s", parts, prev, u)
		}
		seen[u] = parts
	}
}

func TestValidUUID(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want bool
	}{
		{"3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01", true},
		{"3F0C8A2E-6A55-4C1B-9C1E-2F4B7D9E1A01", true},
		{"01890a5d-ac96-774b-bcce-b302099a8057", true}, // v7
		{"00000000-0000-0000-0000-000000000000", true}, // nil
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", true}, // max
		{"6ba7b811-9dad-11d1-80b4-00c04fd430c8", true}, // v1
		{"3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a0", false},
		{"3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a011", false},
		{"3f0c8a2e6a55-4c1b-9c1e-2f4b7d9e1a01-", false},
		{"3f0c8a2e-6a55-4c1b-9c1e_2f4b7d9e1a01", false},
		{"3f0c8a2g-6a55-4c1b-9c1e-2f4b7d9e1a01", false},
		{"{3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01}", false},
		{"urn:uuid:3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01", false},
		{"3f0c8a2e6a554c1b9c1e2f4b7d9e1a01", false},
		{" 3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a0", false},
		{"", false},
	}
	for _, tc := range cases {
		if got := haip.ValidUUID(tc.in); got != tc.want {
			t.Errorf("ValidUUID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
