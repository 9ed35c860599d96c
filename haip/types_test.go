package haip_test

import (
	"strings"
	"testing"

	"github.com/haipfabric/haipfabric/haip"
)

func TestTypes(t *testing.T) {
	t.Parallel()
	all := haip.AllTypes()
	if len(all) != 22 {
		t.Fatalf("AllTypes has %d types, want 22", len(all))
	}
	seen := make(map[haip.Type]bool)
	for _, typ := range all {
		if !typ.Known() {
			t.Errorf("%q not Known", typ)
		}
		if seen[typ] {
			t.Errorf("%q listed twice", typ)
		}
		seen[typ] = true
		if strings.ToUpper(string(typ)) != string(typ) {
			t.Errorf("%q is not upper case", typ)
		}
		if haip.Type(strings.ToLower(string(typ))).Known() {
			t.Errorf("lower-case %q is Known", typ)
		}
	}
	if all[0] != haip.TypeHAI || all[21] != haip.TypeResumeChannel || all[9] != haip.TypeTextMessagePart {
		t.Errorf("AllTypes not in catalogue order: %v", all)
	}
	for _, typ := range []haip.Type{"", "NOPE", "TEXT_MESSAGE", "HAI "} {
		if typ.Known() {
			t.Errorf("%q is Known", typ)
		}
	}
	all[0] = "CHANGED"
	if haip.AllTypes()[0] != haip.TypeHAI {
		t.Error("AllTypes returned shared state")
	}
}

func TestChannels(t *testing.T) {
	t.Parallel()
	all := haip.AllChannels()
	want := []haip.Channel{"USER", "AGENT", "SYSTEM", "AUDIO_IN", "AUDIO_OUT"}
	if len(all) != len(want) {
		t.Fatalf("AllChannels = %v", all)
	}
	for i, c := range all {
		if c != want[i] || !c.Standard() {
			t.Errorf("AllChannels[%d] = %q, want standard %q", i, c, want[i])
		}
	}
	for _, c := range []haip.Channel{"", "user", "audio-in", "Audio_In", "USER ", "OTHER"} {
		if c.Standard() {
			t.Errorf("%q is Standard", c)
		}
	}
	all[0] = "X"
	if haip.AllChannels()[0] != haip.ChannelUser {
		t.Error("AllChannels returned shared state")
	}
}

func TestValidSessionID(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want bool
	}{
		{"9b2d7c1e-4a3f-4e8b-8c2d-1f0a9e7b6c55", true},
		{"a", true},
		{"A-z_0-9", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"a.b", false},
		{"a*", false},
		{"a>", false},
		{"a b", false},
		{"a\tb", false},
		{"a\n", false},
		{"sessión", false},
		{"a/b", false},
		{"a\x00", false},
	}
	for _, tc := range cases {
		if got := haip.ValidSessionID(tc.in); got != tc.want {
			t.Errorf("ValidSessionID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestStatuses(t *testing.T) {
	t.Parallel()
	for _, s := range []haip.RunStatus{haip.RunStatusOK, haip.RunStatusCancelled, haip.RunStatusError} {
		if !s.Valid() {
			t.Errorf("RunStatus %q not Valid", s)
		}
	}
	for _, s := range []haip.ToolStatus{haip.ToolStatusQueued, haip.ToolStatusRunning, haip.ToolStatusCancelling} {
		if !s.Valid() {
			t.Errorf("ToolStatus %q not Valid", s)
		}
	}
	for _, s := range []haip.ToolDoneStatus{haip.ToolDoneOK, haip.ToolDoneCancelled, haip.ToolDoneError} {
		if !s.Valid() {
			t.Errorf("ToolDoneStatus %q not Valid", s)
		}
	}
	if haip.RunStatus("ok").Valid() || haip.ToolStatus("DONE").Valid() || haip.ToolDoneStatus("").Valid() {
		t.Error("invalid status reported Valid")
	}
}
