package edge

import (
	"testing"
	"time"
)

// The operator rings keep the last samples and disconnects, oldest first.
func TestOperatorRings(t *testing.T) {
	var o operatorState
	start := time.UnixMilli(0)
	for i := range rateHistory + 5 {
		o.sample(start.Add(time.Duration(i)*time.Second), float64(i), 0)
	}
	for i := range disconnectHistory + 3 {
		o.disconnected("websocket", "u", &disconnect{code: CloseNormal, label: labelPeer, reason: string(rune('a' + i%26))})
	}
	rates, discs := o.history()
	if len(rates) != rateHistory || rates[0].In != 5 || rates[len(rates)-1].In != rateHistory+4 {
		t.Fatalf("rates: %d, first %v, last %v", len(rates), rates[0], rates[len(rates)-1])
	}
	if len(discs) != disconnectHistory || discs[0].Reason != string(rune('a'+3)) {
		t.Fatalf("disconnects: %d, first %+v", len(discs), discs[0])
	}
	var empty operatorState
	if r, d := empty.history(); r == nil || d == nil {
		t.Fatal("an empty history is nil (null in JSON)")
	}
}
