package edge

import (
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
)

// The writer's one timer reports the handshake deadline until the
// handshake is done, heartbeats at the interval, without making up beats
// missed while the writer was busy, and the token's expiry.
func TestWriterClock(t *testing.T) {
	k := newWriterClock(time.Hour, 2*time.Hour, time.Time{})
	defer k.stop()
	start := k.nextBeat.Add(-time.Hour)

	if ev := k.fired(start.Add(30 * time.Minute)); ev != (clockEvents{}) {
		t.Fatalf("early fire: %+v", ev)
	}
	if ev := k.fired(start.Add(time.Hour)); ev != (clockEvents{beat: true}) {
		t.Fatalf("at the first beat: %+v", ev)
	}
	if got := k.until(start.Add(time.Hour)); got != time.Hour {
		t.Fatalf("next wait %s, want 1h", got)
	}
	if ev := k.fired(start.Add(2 * time.Hour)); ev != (clockEvents{handshakeExpired: true, beat: true}) {
		t.Fatalf("at the handshake deadline: %+v", ev)
	}
	k.handshook()
	// Busy for 3.5 intervals: one beat, then the next a whole interval on.
	now := start.Add(5*time.Hour + 30*time.Minute)
	if ev := k.fired(now); ev != (clockEvents{beat: true}) {
		t.Fatalf("after the handshake: %+v", ev)
	}
	if got := k.until(now); got != time.Hour {
		t.Fatalf("next wait after missed beats %s, want 1h", got)
	}

	// A token that expires before the next beat sets the next wait.
	now = time.Now()
	e := newWriterClock(time.Hour, time.Hour, now.Add(10*time.Minute))
	defer e.stop()
	if got := e.until(now); got != 10*time.Minute {
		t.Fatalf("wait with an expiring token %s, want 10m", got)
	}
	if ev := e.fired(now.Add(10 * time.Minute)); !ev.tokenExpired || ev.beat || ev.handshakeExpired {
		t.Fatalf("at the expiry: %+v", ev)
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
	if n := len(haip.AllTypes()); n > 64 {
		t.Fatalf("%d types do not fit typeSet's 64 bits", n)
	}
}
