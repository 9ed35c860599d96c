package sse

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseLastEventID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    uint64
		ok      bool
		wantErr bool
	}{
		{in: "", ok: false},
		{in: "   ", ok: false},
		{in: "\t", ok: false},
		{in: "0", want: 0, ok: true},
		{in: "1", want: 1, ok: true},
		{in: "12345", want: 12345, ok: true},
		{in: "  12 ", want: 12, ok: true},
		{in: "\t12\t", want: 12, ok: true},
		{in: "007", want: 7, ok: true},
		{in: "18446744073709551615", want: 1<<64 - 1, ok: true},
		{in: "00000000000000000001", want: 1, ok: true}, // 20 digits
		{in: "18446744073709551616", wantErr: true},     // overflow
		{in: "99999999999999999999", wantErr: true},     // overflow
		{in: "100000000000000000000", wantErr: true},    // 21 digits
		{in: "000000000000000000001", wantErr: true},    // 21 digits, small value
		{in: "-1", wantErr: true},
		{in: "+1", wantErr: true},
		{in: "1.0", wantErr: true},
		{in: "1e3", wantErr: true},
		{in: "0x10", wantErr: true},
		{in: "1_000", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "1 2", wantErr: true},
		{in: "１２", wantErr: true}, // full-width digits
		{in: "12\n", wantErr: true},
		{in: strings.Repeat("9", 1000), wantErr: true},
	} {
		t.Run(strconv.Quote(tc.in), func(t *testing.T) {
			t.Parallel()
			got, ok, err := ParseLastEventID(tc.in)
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrInvalidLastEventID) {
					t.Fatalf("ParseLastEventID(%q) = %d, %v, %v; want an ErrInvalidLastEventID", tc.in, got, ok, err)
				}
				if got != 0 || ok {
					t.Fatalf("ParseLastEventID(%q) = %d, %v with error %v", tc.in, got, ok, err)
				}
				if len(err.Error()) > 200 {
					t.Fatalf("error too long: %d bytes", len(err.Error()))
				}
				return
			}
			if err != nil || got != tc.want || ok != tc.ok {
				t.Fatalf("ParseLastEventID(%q) = %d, %v, %v; want %d, %v, nil", tc.in, got, ok, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"1", " 42 ", "-1", "18446744073709551615", "18446744073709551616", "abc", "", "007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seq, ok, err := ParseLastEventID(s)
		trimmed := strings.Trim(s, " \t")
		switch {
		case err != nil:
			if ok || seq != 0 || !errors.Is(err, ErrInvalidLastEventID) {
				t.Fatalf("%q: %d, %v, %v", s, seq, ok, err)
			}
		case !ok:
			if trimmed != "" || seq != 0 {
				t.Fatalf("%q: not ok without error, seq %d", s, seq)
			}
		default:
			// The number re-formats to the input, leading zeros aside.
			formatted := strconv.FormatUint(seq, 10)
			if want := strings.TrimLeft(trimmed, "0"); formatted != want && !(seq == 0 && want == "") {
				t.Fatalf("%q parsed to %d, which formats as %q", s, seq, formatted)
			}
			again, ok2, err2 := ParseLastEventID(formatted)
			if again != seq || !ok2 || err2 != nil {
				t.Fatalf("%q: %d re-parses to %d, %v, %v", s, seq, again, ok2, err2)
			}
		}
		// Agree with strconv on what is a decimal uint64 of <= 20 digits.
		if trimmed != "" && len(trimmed) <= maxIDDigits && strings.Trim(trimmed, "0123456789") == "" {
			v, perr := strconv.ParseUint(trimmed, 10, 64)
			if (perr == nil) != (err == nil) || perr == nil && v != seq {
				t.Fatalf("%q: strconv %d, %v; ours %d, %v", s, v, perr, seq, err)
			}
		}
	})
}
