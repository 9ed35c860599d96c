package mcpbridge_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/haipfabric/haipfabric/worker/mcpbridge"
)

func TestSplitCommand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string // words joined by |
	}{
		{"npx -y @modelcontextprotocol/server-filesystem /data", "npx|-y|@modelcontextprotocol/server-filesystem|/data"},
		{`server --name "My Server" --dir '/path with spaces'`, "server|--name|My Server|--dir|/path with spaces"},
		{`a "b \"c\" \\ \$HOME \n" 'd \ e'`, `a|b "c" \ $HOME \n|d \ e`},
		{`one\ word two`, "one word|two"},
		{`  spaced   out  `, "spaced|out"},
		{`""`, ""},
		{`x"y"'z'`, "xyz"},
		{`$HOME ~ *`, "$HOME|~|*"},
	} {
		got, err := mcpbridge.SplitCommand(tc.in)
		if err != nil || strings.Join(got, "|") != tc.want {
			t.Errorf("SplitCommand(%q) = %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
	if got, _ := mcpbridge.SplitCommand(`""`); len(got) != 1 {
		t.Errorf(`"" is one empty word, got %q`, got)
	}
	for _, bad := range []string{`a "b`, `a 'b`, `a\`} {
		if _, err := mcpbridge.SplitCommand(bad); !errors.Is(err, mcpbridge.ErrBadCommand) {
			t.Errorf("SplitCommand(%q): %v, want ErrBadCommand", bad, err)
		}
	}
}

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{`npx -y server /data`, `a "b \"c\"" 'd e'`, `x\ y`, `"unterminated`, `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := mcpbridge.SplitCommand(s)
		if err != nil {
			if !errors.Is(err, mcpbridge.ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		// Words quoted back and split again come back the same.
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
		}
		again, err := mcpbridge.SplitCommand(strings.Join(quoted, " "))
		if err != nil || fmt.Sprintf("%q", again) != fmt.Sprintf("%q", words) {
			t.Fatalf("round trip of %q: %q %v", words, again, err)
		}
	})
}
