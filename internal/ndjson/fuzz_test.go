package ndjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// fuzzMax is the line limit FuzzNDJSON uses: small, so the fuzzer reaches
// it.
const fuzzMax = 16

// FuzzNDJSON feeds arbitrary bytes in two pieces, split where the fuzzer
// says. Next must never panic; every line it returns must be non-blank,
// hold no '\n' and fit the limit; and what it returns (lines, over-long
// reports, line numbers) must be what splitting the whole input on '\n'
// says (refLines).
func FuzzNDJSON(f *testing.F) {
	// Seeds beyond testdata/fuzz/FuzzNDJSON.
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\r\n\n"), 3)
	f.Add([]byte("0123456789abcdef\r\r\n0123456789abcdef0\n"), 18)
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		var r io.Reader = bytes.NewReader(in)
		if len(in) > 0 {
			n := int(uint(split) % uint(len(in)+1))
			r = io.MultiReader(bytes.NewReader(in[:n]), bytes.NewReader(in[n:]))
		}
		rd := NewReader(r, fuzzMax)
		var got []string
		for {
			line, err := rd.Next()
			var tooLong *LineTooLongError
			if errors.As(err, &tooLong) {
				if tooLong.Line != rd.Line() || tooLong.Size <= fuzzMax || tooLong.Max != fuzzMax {
					t.Fatalf("bad %+v (Line() %d)", tooLong, rd.Line())
				}
				got = append(got, fmt.Sprintf("%d:long %d", tooLong.Line, tooLong.Size))
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if bytes.IndexByte(line, '\n') >= 0 || isBlank(line) || len(line) > fuzzMax {
				t.Fatalf("bad line %q", line)
			}
			got = append(got, fmt.Sprintf("%d:%s", rd.Line(), line))
		}
		want := refLines(in, fuzzMax)
		if len(got) != len(want) {
			t.Fatalf("got %q\nwant %q", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("result %d: %q, want %q", i, got[i], want[i])
			}
		}
	})
}

// refLines splits in on '\n' (a final '\n' ends the last line rather than
// starting an empty one) and drops one '\r' ending each line; it keeps the
// non-blank lines that fit and reports the ones that do not.
func refLines(in []byte, max int) []string {
	pieces := bytes.Split(in, []byte("\n"))
	if len(pieces[len(pieces)-1]) == 0 {
		pieces = pieces[:len(pieces)-1]
	}
	var out []string
	for i, p := range pieces {
		p = bytes.TrimSuffix(p, []byte("\r"))
		switch {
		case len(p) > max:
			out = append(out, fmt.Sprintf("%d:long %d", i+1, len(p)))
		case len(bytes.Trim(p, " \t\r")) > 0:
			out = append(out, fmt.Sprintf("%d:%s", i+1, p))
		}
	}
	return out
}
