package ndjson

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func lines(t *testing.T, r io.Reader, max int) (got []string, tooLong []int) {
	t.Helper()
	rd := NewReader(r, max)
	for {
		l, err := rd.Next()
		var tl *LineTooLongError
		switch {
		case err == nil:
			got = append(got, string(l))
		case errors.As(err, &tl):
			tooLong = append(tooLong, tl.Line)
		case errors.Is(err, io.EOF):
			return got, tooLong
		default:
			t.Fatal(err)
		}
	}
}

func TestReader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      string
		max     int
		want    []string
		tooLong []int
	}{
		{"lf", "a\nb\n", 10, []string{"a", "b"}, nil},
		{"crlf", "a\r\nb\r\n", 10, []string{"a", "b"}, nil},
		{"blank lines skipped", "\n  \n\t\r\na\n\n", 10, []string{"a"}, nil},
		{"no final newline", "a\nlast", 10, []string{"a", "last"}, nil},
		{"long line in the middle", "ok\n" + strings.Repeat("x", 50) + "\nafter\n", 10, []string{"ok", "after"}, []int{2}},
		{"exactly max", strings.Repeat("y", 10) + "\n", 10, []string{strings.Repeat("y", 10)}, nil},
		{"max plus one", strings.Repeat("y", 11) + "\nz\n", 10, []string{"z"}, []int{1}},
		{"long last line", "a\n" + strings.Repeat("x", 50), 10, []string{"a"}, []int{2}},
	} {
		for _, wrap := range []struct {
			name string
			fn   func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"bytewise", iotest.OneByteReader}, {"halves", iotest.HalfReader}, {"data+err", iotest.DataErrReader}} {
			t.Run(tc.name+"/"+wrap.name, func(t *testing.T) {
				t.Parallel()
				got, tl := lines(t, wrap.fn(strings.NewReader(tc.in)), tc.max)
				if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(tl) != len(tc.tooLong) {
					t.Fatalf("lines %q too long %v; want %q %v", got, tl, tc.want, tc.tooLong)
				}
				for i := range tl {
					if tl[i] != tc.tooLong[i] {
						t.Fatalf("too long at %v, want %v", tl, tc.tooLong)
					}
				}
			})
		}
	}
}

// An endless line costs bounded memory and is reported, not buffered.
func TestEndlessLineBoundedMemory(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	r := io.LimitReader(repeatReader('x'), size)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rd := NewReader(r, 1<<16)
	_, err := rd.Next()
	runtime.ReadMemStats(&after)
	var tl *LineTooLongError
	if !errors.As(err, &tl) || tl.Size != size {
		t.Fatalf("err %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Fatalf("allocated %d bytes for a %d-byte line", grew, size)
	}
}

type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestAppend(t *testing.T) {
	t.Parallel()
	got, err := Append([]byte("a\n"), []byte(`{"x":1}`))
	if err != nil || string(got) != "a\n{\"x\":1}\n" {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{"a\nb", "a\r"} {
		if _, err := Append(nil, []byte(bad)); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func FuzzNDJSON(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\r\n\n"), 3)
	f.Add([]byte(strings.Repeat("x", 40)+"\nshort\n"), 10)
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		if split < 0 || split > len(in) {
			split = len(in) / 2
		}
		const max = 16
		rd := NewReader(io.MultiReader(bytes.NewReader(in[:split]), bytes.NewReader(in[split:])), max)
		var got [][]byte
		for {
			l, err := rd.Next()
			var tl *LineTooLongError
			if errors.As(err, &tl) {
				continue
			}
			if err != nil {
				break
			}
			if bytes.ContainsAny(l, "\n") || len(bytes.Trim(l, " \t\r")) == 0 || len(l) > max {
				t.Fatalf("bad line %q", l)
			}
			got = append(got, bytes.Clone(l))
		}
		// Every non-blank input line that fits comes out, in order.
		var want [][]byte
		for _, l := range bytes.Split(in, []byte("\n")) {
			l = bytes.TrimSuffix(l, []byte("\r"))
			if len(bytes.Trim(l, " \t\r")) > 0 && len(l) <= max {
				want = append(want, l)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d %q, want %q", i, got[i], want[i])
			}
		}
	})
}

func BenchmarkNext(b *testing.B) {
	line := append(bytes.Repeat([]byte("x"), 300), '\n')
	b.ReportAllocs()
	for b.Loop() {
		rd := NewReader(bytes.NewReader(bytes.Repeat(line, 100)), 1<<10)
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}
