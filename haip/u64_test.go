package haip_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/haipfabric/haipfabric/haip"
)

func TestParseU64(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want uint64
	}{
		{"0", 0},
		{"1", 1},
		{"007", 7},
		{"1753087185000", 1753087185000},
		{"18446744073709551615", math.MaxUint64},
		{"00000000000000000000", 0},
		{"01844674407370955161", 1844674407370955161},
	}
	for _, tc := range good {
		got, err := haip.ParseU64(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseU64(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	bad := []string{"", " ", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x1", "01a", "١", "000000000000000000001",
		"18446744073709551616", "18446744073709551620", "99999999999999999999", "1753087185000k3j9x2abc"}
	for _, in := range bad {
		if got, err := haip.ParseU64(in); err == nil || haip.CodeOf(err) != haip.CodeProtocolViolation {
			t.Errorf("ParseU64(%q) = %d, %v; want PROTOCOL_VIOLATION", in, got, err)
		}
	}
}

func TestU64JSON(t *testing.T) {
	t.Parallel()
	for _, v := range []uint64{0, 1, 9, 10, 1753087185000, math.MaxUint64 - 1, math.MaxUint64} {
		b, err := json.Marshal(haip.U64(v))
		if err != nil {
			t.Fatal(err)
		}
		var got haip.U64
		if err := json.Unmarshal(b, &got); err != nil || uint64(got) != v {
			t.Errorf("round trip of %d via %s = %d, %v", v, b, got, err)
		}
		if app := haip.AppendU64([]byte("x"), v); string(app) != "x"+string(b) {
			t.Errorf("AppendU64(%d) = %s, want x%s", v, app, b)
		}
	}
	if b, _ := json.Marshal(haip.U64(42)); string(b) != `"42"` {
		t.Errorf("Marshal(42) = %s", b)
	}

	type wrap struct {
		N  haip.U64  `json:"n"`
		P  *haip.U64 `json:"p,omitempty"`
		Nu haip.U64  `json:"nu"`
	}
	var w wrap
	w.Nu = 9
	if err := json.Unmarshal([]byte(`{"n":"\u0031\u0032","p":"0","nu":null}`), &w); err != nil {
		t.Fatal(err)
	}
	if w.N != 12 || w.P == nil || *w.P != 0 || w.Nu != 9 {
		t.Errorf("Unmarshal = %+v (null must leave the value alone)", w)
	}

	for _, in := range []string{`1`, `1.0`, `""`, `"-1"`, `" 1"`, `"1 "`, `"+1"`, `"000000000000000000001"`,
		`"18446744073709551616"`, `true`, `[]`, `{}`, `"\u002d1"`} {
		var u haip.U64
		if err := json.Unmarshal([]byte(in), &u); err == nil {
			t.Errorf("Unmarshal(%s) = %d, want error", in, u)
		}
		if err := u.UnmarshalJSON([]byte(in)); haip.CodeOf(err) != haip.CodeProtocolViolation {
			t.Errorf("UnmarshalJSON(%s) = %v, want PROTOCOL_VIOLATION", in, err)
		}
	}
	var u haip.U64
	for _, in := range []string{``, `"`, `"\"`, `"12\"`} {
		if err := u.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("UnmarshalJSON(%q) accepted malformed input", in)
		}
	}
}
