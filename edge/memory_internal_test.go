package edge

import (
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
)

// The writer's one timer reports the handshake deadline until the
// handshake is done, and heartbeats at the interval, without making up
// beats missed while the writer was busy.
func TestWriterClock(t *testing.T) {
	k := newWriterClock(time.Hour, 2*time.Hour)
	defer k.stop()
	start := k.nextBeat.Add(-time.Hour)

	if exp, beat := k.fired(start.Add(30 * time.Minute)); exp || beat {
		t.Fatalf("early fire: expired %v, beat %v", exp, beat)
	}
	if exp, beat := k.fired(start.Add(time.Hour)); exp || !beat {
		t.Fatalf("at the first beat: expired %v, beat %v", exp, beat)
	}
	if got := k.until(start.Add(time.Hour)); got != time.Hour {
		t.Fatalf("next wait %s, want 1h", got)
	}
	if exp, beat := k.fired(start.Add(2 * time.Hour)); !exp || !beat {
		t.Fatalf("at the handshake deadline: expired %v, beat %v", exp, beat)
	}
	k.handshook()
	// Busy for 3.5 intervals: one beat, then the next a whole interval on.
	now := start.Add(5*time.Hour + 30*time.Minute)
	if exp, beat := k.fired(now); exp || !beat {
		t.Fatalf("after the handshake: expired %v, beat %v", exp, beat)
	}
	if got := k.until(now); got != time.Hour {
		t.Fatalf("next wait after missed beats %s, want 1h", got)
	}
}

// A typeSet answers like the map it replaces, for known and other names.
func TestTypeSet(t *testing.T) {
	s := newTypeSet([]haip.Type{haip.TypePing, haip.TypeError, "X_CUSTOM"})
	for _, tc := range []struct {
		t    haip.Type
		want bool
	}{
		{haip.TypePing, true}, {haip.TypeError, true}, {"X_CUSTOM", true},
		{haip.TypePong, false}, {haip.TypeResumeChannel, false}, {"Y_OTHER", false}, {"", false},
	} {
		if got := s.has(tc.t); got != tc.want {
			t.Errorf("has(%q) = %v, want %v", tc.t, got, tc.want)
		}
	}
	var none *typeSet
	if none.has(haip.TypePing) {
		t.Error("a nil set has PING")
	}
	if n := len(haip.AllTypes()); n > 32 {
		t.Fatalf("%d types do not fit typeSet's 32 bits", n)
	}
}
