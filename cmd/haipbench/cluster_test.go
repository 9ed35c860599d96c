package main

import "testing"

// TestCluster runs fan-out (over SSE) and the tool round trip against the
// loopback cluster: 3 nats-servers with R3 streams, 2 edges, 2 tool
// workers; clients are spread over both edges.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a cluster of processes")
	}
	rs := runJSON(t, "-cluster", "-scenario", "conns,fanout,tools", "-transport", "sse", "-conns", "10", "-sessions", "4",
		"-messages", "30", "-toolworkers", "1", "-calls", "10", "-concurrency", "2", "-baseline-messages", "300", "-size", "64", "-duration", "60s")
	fan := byScenario(t, rs, "fanout")
	if got := fan.get("messages delivered, dense"); got != 4*30 {
		t.Errorf("fanout delivered %v, want 120", got)
	}
	if fan.Params["edges"] != float64(clusterEdges) {
		t.Errorf("fanout edges %v, want %d", fan.Params["edges"], clusterEdges)
	}
	cn := byScenario(t, rs, "conns")
	for _, role := range []string{"edge", "nats-server"} {
		if v := cn.get(role + " RSS after"); !(v > 0) {
			t.Errorf("%s RSS after = %v", role, v)
		}
	}
	checkTools(t, byScenario(t, rs, "tools"), []int{1}, 2*10)
}
