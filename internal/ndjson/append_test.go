package ndjson

import (
	"errors"
	"strconv"
	"testing"
)

func TestAppend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line    string
		want    string // after "prev\n"
		wantErr bool
	}{
		{line: `{"x":1}`, want: "prev\n{\"x\":1}\n"},
		{line: "", want: "prev\n\n"},
		{line: " \t spaced ", want: "prev\n \t spaced \n"},
		{line: "a\nb", wantErr: true},
		{line: "a\n", wantErr: true},
		{line: "\n", wantErr: true},
		{line: "a\r", wantErr: true},
		{line: "a\rb", wantErr: true},
		{line: "\r\n", wantErr: true},
	} {
		t.Run(strconv.Quote(tc.line), func(t *testing.T) {
			t.Parallel()
			dst := []byte("prev\n")
			got, err := Append(dst, []byte(tc.line))
			if tc.wantErr {
				if !errors.Is(err, ErrLineBreak) || string(got) != "prev\n" {
					t.Fatalf("Append(%q) = %q, %v; want dst unchanged and ErrLineBreak", tc.line, got, err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("Append(%q) = %q, %v; want %q", tc.line, got, err, tc.want)
			}
		})
	}
}

func TestAppendNoAllocs(t *testing.T) {
	line := []byte(`{"v":"1.0","seq":12345,"type":"PING","payload":{}}`)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = Append(buf[:0], line); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per Append, want 0", n)
	}
}

func BenchmarkAppend(b *testing.B) {
	line := make([]byte, 300)
	for i := range line {
		line[i] = 'x'
	}
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = Append(buf[:0], line)
	}
}
