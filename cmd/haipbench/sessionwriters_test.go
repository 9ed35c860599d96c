package main

import "testing"

// With -session-writers, several goroutines append to each session at
// once (what the log's group commit batches); every client still gets
// its session's seqs 1..M densely.
func TestFanoutSessionWriters(t *testing.T) {
	rs := runJSON(t, "-scenario", "fanout", "-sessions", "2", "-messages", "101", "-baseline-messages", "200",
		"-writers", "1", "-session-writers", "8", "-size", "64", "-duration", "20s")
	fan := byScenario(t, rs, "fanout")
	positive(t, fan, rowDelivered, rowAppended)
	if got := fan.get("messages delivered, dense"); got != 2*101 {
		t.Errorf("fanout delivered %v, want 202", got)
	}
}
