package ndjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// results reads r to the end and describes what Next returned, with
// Line(): "3:text" for a line, "4:long 20" for a line too long.
func results(r io.Reader, maxLine int) ([]string, error) {
	rd := NewReader(r, maxLine)
	var out []string
	for {
		line, err := rd.Next()
		var tooLong *LineTooLongError
		switch {
		case err == nil:
			if rd.Line() < 1 {
				return out, fmt.Errorf("line %q numbered %d", line, rd.Line())
			}
			out = append(out, fmt.Sprintf("%d:%s", rd.Line(), line))
		case errors.As(err, &tooLong):
			if tooLong.Line != rd.Line() || tooLong.Max != maxLine || tooLong.Size <= tooLong.Max {
				return out, fmt.Errorf("bad %+v (Line() %d)", tooLong, rd.Line())
			}
			out = append(out, fmt.Sprintf("%d:long %d", tooLong.Line, tooLong.Size))
		case errors.Is(err, io.EOF):
			if _, again := rd.Next(); again != io.EOF {
				return out, fmt.Errorf("after io.EOF: %v", again)
			}
			return out, nil
		default:
			return out, err
		}
	}
}

// readerWraps feed a test input in different read sizes.
var readerWraps = []struct {
	name string
	fn   func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"bytewise", iotest.OneByteReader},
	{"halves", iotest.HalfReader},
	{"data+EOF", iotest.DataErrReader},
	{"bytewise data+EOF", func(r io.Reader) io.Reader { return iotest.DataErrReader(iotest.OneByteReader(r)) }},
}

func TestReader(t *testing.T) {
	t.Parallel()
	x := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name string
		in   string
		max  int
		want []string
	}{
		{"lf", "a\nb\n", 10, []string{"1:a", "2:b"}},
		{"crlf", "a\r\nb\r\n", 10, []string{"1:a", "2:b"}},
		{"json", "{\"a\":1}\n{\"b\":[2]}\n", 100, []string{`1:{"a":1}`, `2:{"b":[2]}`}},
		{"blank lines skipped", "\n  \n\t\r\na\n\r\n\n \r \t\nb\n", 10, []string{"4:a", "8:b"}},
		{"spaces kept around content", "  a \t\n", 10, []string{"1:  a \t"}},
		{"lone cr is content", "a\rb\n", 10, []string{"1:a\rb"}},
		{"only one cr dropped", "a\r\r\n", 10, []string{"1:a\r"}},
		{"final line without newline", "a\nlast", 10, []string{"1:a", "2:last"}},
		{"final line with cr", "a\nlast\r", 10, []string{"1:a", "2:last"}},
		{"final blank line", "a\n  ", 10, []string{"1:a"}},
		{"empty input", "", 10, nil},
		{"only newlines", "\n\n\n", 10, nil},
		{"exactly max", x(10) + "\n", 10, []string{"1:" + x(10)}},
		{"exactly max with crlf", x(10) + "\r\n", 10, []string{"1:" + x(10)}},
		{"exactly max at the end", x(10), 10, []string{"1:" + x(10)}},
		{"exactly max with cr at the end", x(10) + "\r", 10, []string{"1:" + x(10)}},
		{"max plus one", x(11) + "\nz\n", 10, []string{"1:long 11", "2:z"}},
		{"max plus one with crlf", x(11) + "\r\nz\n", 10, []string{"1:long 11", "2:z"}},
		{"max plus cr", x(10) + "\r\r\nz\n", 10, []string{"1:long 11", "2:z"}},
		{"long line in the middle", "ok\n" + x(50) + "\nafter\n", 10, []string{"1:ok", "2:long 50", "3:after"}},
		{"long lines in a row", x(11) + "\n" + x(12) + "\r\n" + x(100) + "\nend\n", 10, []string{"1:long 11", "2:long 12", "3:long 100", "4:end"}},
		{"long blank line", strings.Repeat(" ", 11) + "\nz\n", 10, []string{"1:long 11", "2:z"}},
		{"long last line", "a\n" + x(50), 10, []string{"1:a", "2:long 50"}},
		{"long last line with cr", "a\n" + x(50) + "\r", 10, []string{"1:a", "2:long 50"}},
		// Past the read buffer: lines are gathered, then returned or refused.
		{"big lines fit", x(5000) + "\n" + x(10000) + "\r\n" + x(10000), 10000,
			[]string{"1:" + x(5000), "2:" + x(10000), "3:" + x(10000)}},
		{"big lines too long", x(10001) + "\n" + x(10000) + "\r\r\n" + x(20000) + "\r\nok\n" + x(10001), 10000,
			[]string{"1:long 10001", "2:long 10001", "3:long 20000", "4:ok", "5:long 10001"}},
		{"crlf across the read buffer", x(readBufSize-1) + "\r\n" + "b\n", 2 * readBufSize,
			[]string{"1:" + x(readBufSize-1), "2:b"}},
		{"tiny limit", "ab\nabc\r\n\n", 2, []string{"1:ab", "2:long 3"}},
	} {
		for _, wrap := range readerWraps {
			t.Run(tc.name+"/"+wrap.name, func(t *testing.T) {
				t.Parallel()
				got, err := results(wrap.fn(strings.NewReader(tc.in)), tc.max)
				if err != nil {
					t.Fatalf("error %v after %q", err, got)
				}
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Fatalf("got %.200q\nwant %.200q", got, tc.want)
				}
			})
		}
	}
}

func TestReaderLine(t *testing.T) {
	t.Parallel()
	rd := NewReader(strings.NewReader("\na\n\n"+strings.Repeat("x", 20)+"\nb"), 10)
	if n := rd.Line(); n != 0 {
		t.Fatalf("Line() = %d before the first", n)
	}
	if l, err := rd.Next(); err != nil || string(l) != "a" || rd.Line() != 2 {
		t.Fatalf("%q %v line %d", l, err, rd.Line())
	}
	var tooLong *LineTooLongError
	if _, err := rd.Next(); !errors.As(err, &tooLong) || rd.Line() != 4 {
		t.Fatalf("%v line %d", err, rd.Line())
	}
	if want := "ndjson: line 4 is 20 bytes, over the 10-byte limit"; tooLong.Error() != want {
		t.Fatalf("Error() = %q, want %q", tooLong.Error(), want)
	}
	if l, err := rd.Next(); err != nil || string(l) != "b" || rd.Line() != 5 {
		t.Fatalf("%q %v line %d", l, err, rd.Line())
	}
	if _, err := rd.Next(); err != io.EOF || rd.Line() != 5 {
		t.Fatalf("%v line %d", err, rd.Line())
	}
}

// The returned slice stays valid until the next call, even when the
// reader has more data buffered behind it.
func TestReaderSliceValidUntilNext(t *testing.T) {
	t.Parallel()
	var in bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&in, "{\"n\":%d,\"pad\":%q}\n", i, strings.Repeat("p", i%700))
	}
	want := strings.Split(strings.TrimSuffix(in.String(), "\n"), "\n")
	rd := NewReader(&in, 1<<10)
	for i := 0; ; i++ {
		line, err := rd.Next()
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("%d lines, want %d", i, len(want))
			}
			return
		}
		if err != nil || string(line) != want[i] {
			t.Fatalf("line %d: %.40q %v, want %.40q", i+1, line, err, want[i])
		}
	}
}

func TestReaderReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	rd := NewReader(io.MultiReader(strings.NewReader("a\npartial"), iotest.ErrReader(boom)), 10)
	if l, err := rd.Next(); err != nil || string(l) != "a" {
		t.Fatalf("first: %q %v", l, err)
	}
	_, err := rd.Next()
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
	if _, again := rd.Next(); again != err {
		t.Fatalf("then %v", again)
	}
	if !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %q does not name the line", err)
	}
}

func TestReaderDefaultLimit(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("x", DefaultMaxLine) + "\n" + strings.Repeat("x", DefaultMaxLine+1) + "\n"
	rd := NewReader(strings.NewReader(in), 0)
	if l, err := rd.Next(); err != nil || len(l) != DefaultMaxLine {
		t.Fatalf("first: %d bytes, %v", len(l), err)
	}
	var tooLong *LineTooLongError
	if _, err := rd.Next(); !errors.As(err, &tooLong) || tooLong.Max != DefaultMaxLine {
		t.Fatalf("second: %v", err)
	}
}

// repeatReader is an endless stream of its byte.
type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// cycleReader repeats its content forever.
type cycleReader struct {
	data []byte
	off  int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.data[c.off:])
		n += k
		c.off = (c.off + k) % len(c.data)
	}
	return n, nil
}

// totalAlloc returns the bytes allocated while f ran.
func totalAlloc(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// One endless line (100 MB of it here) is consumed in bounded memory and
// reported, not buffered. Not parallel: it measures the heap.
func TestReaderEndlessLineBoundedMemory(t *testing.T) {
	const size, limit = 100 << 20, 64 << 10
	var err error
	grew := totalAlloc(func() {
		rd := NewReader(io.LimitReader(repeatReader('x'), size), limit)
		_, err = rd.Next()
	})
	var tooLong *LineTooLongError
	if !errors.As(err, &tooLong) || tooLong.Size != size || tooLong.Line != 1 {
		t.Fatalf("err %v", err)
	}
	if grew > 3*limit {
		t.Fatalf("allocated %d bytes for a %d-byte line with a %d-byte limit", grew, size, limit)
	}
}

// Many over-long lines, each a little longer than the limit, cost no more
// than one.
func TestReaderManyLongLinesBoundedMemory(t *testing.T) {
	const limit = 64 << 10
	line := append(bytes.Repeat([]byte("y"), limit+limit/2), '\n')
	var n int
	grew := totalAlloc(func() {
		rd := NewReader(io.LimitReader(&cycleReader{data: line}, int64(len(line)*1000)), limit)
		for {
			_, err := rd.Next()
			if err == io.EOF {
				break
			}
			var tooLong *LineTooLongError
			if !errors.As(err, &tooLong) {
				t.Fatalf("line %d: %v", n+1, err)
			}
			n++
		}
	})
	if n != 1000 {
		t.Fatalf("%d lines reported, want 1000", n)
	}
	if grew > 3*limit+1000*128 { // a LineTooLongError per line
		t.Fatalf("allocated %d bytes for 1000 long lines with a %d-byte limit", grew, limit)
	}
}

// Lines that fit the read buffer are returned in place: Next does not
// allocate.
func TestReaderNextNoAllocs(t *testing.T) {
	rd := NewReader(&cycleReader{data: []byte("{\"seq\":1,\"type\":\"PING\"}\n\r\n  \n")}, 1<<10)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per Next, want 0", n)
	}
}

func BenchmarkNDJSONNext(b *testing.B) {
	line := append(bytes.Repeat([]byte("x"), 299), '\n')
	rd := NewReader(&cycleReader{data: line}, 1<<20)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if l, err := rd.Next(); err != nil || len(l) != 299 {
			b.Fatalf("%d bytes, %v", len(l), err)
		}
	}
}

// BenchmarkNDJSONNextLarge reads lines longer than the read buffer, which
// are gathered.
func BenchmarkNDJSONNextLarge(b *testing.B) {
	line := append(bytes.Repeat([]byte("x"), 3*readBufSize), '\n')
	rd := NewReader(&cycleReader{data: line}, 1<<20)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rd.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
