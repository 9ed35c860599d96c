package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runJSON runs the tool with args plus a JSON file and returns the results.
func runJSON(t *testing.T, args ...string) []*Result {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.json")
	// The bound includes building the binaries of a cluster run, which a
	// loaded two-core machine with a cold cache takes minutes over.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, append(args, "-json", path), &out); err != nil {
		t.Fatalf("run %q: %v\n%s", args, err, out.String())
	}
	t.Log(out.String())
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rs []*Result
	if err := json.Unmarshal(data, &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

func byScenario(t *testing.T, rs []*Result, name string) *Result {
	t.Helper()
	for _, r := range rs {
		if r.Scenario == name {
			return r
		}
	}
	t.Fatalf("no %s result in %d results", name, len(rs))
	return nil
}

// positive checks that each named row exists and is > 0.
func positive(t *testing.T, r *Result, rows ...string) {
	t.Helper()
	for _, row := range rows {
		if v := r.get(row); !(v > 0) {
			t.Errorf("%s: %s = %v, want > 0", r.Scenario, row, v)
		}
	}
}

// TestAllScenariosSelf runs every scenario in -self mode with tiny sizes so
// the tool cannot rot: each must finish, deliver densely (readDense fails
// the run otherwise) and report sane figures.
func TestAllScenariosSelf(t *testing.T) {
	rs := runJSON(t, "-scenario", "all", "-sessions", "4", "-messages", "100", "-baseline-messages", "500",
		"-conns", "20", "-rate", "2000", "-writers", "2", "-size", "64", "-duration", "20s",
		"-toolworkers", "1", "-calls", "10", "-concurrency", "2")
	if len(rs) != len(allScenarios) {
		t.Fatalf("got %d results, want %d", len(rs), len(allScenarios))
	}
	base := byScenario(t, rs, "baseline")
	positive(t, base, rowRawPublish, rowRawRead, rowMsgBytes)

	fan := byScenario(t, rs, "fanout")
	positive(t, fan, rowDelivered, rowAppended)
	if got := fan.get("messages delivered, dense"); got != 4*100 {
		t.Errorf("fanout delivered %v, want 400", got)
	}
	for _, row := range fan.Rows {
		if row.Metric == rowDelivered && (row.Ratio == nil || !(*row.Ratio > 0)) {
			t.Errorf("fanout ratio missing: %+v", row)
		}
	}

	lat := byScenario(t, rs, "latency")
	positive(t, lat, rowP50, rowP99, rowP999, rowAchievedRate, rowAppendP50, rowAppendP99, rowRawP50, rowRawP99, rowRawP999)
	if p50, p99, p999 := lat.get(rowP50), lat.get(rowP99), lat.get(rowP999); p50 > p99 || p99 > p999 {
		t.Errorf("percentiles out of order: %v %v %v", p50, p99, p999)
	}
	if p50, p99, p999 := lat.get(rowRawP50), lat.get(rowRawP99), lat.get(rowRawP999); p50 > p99 || p99 > p999 {
		t.Errorf("raw percentiles out of order: %v %v %v", p50, p99, p999)
	}
	if got := lat.get("messages received, dense"); got != 100 {
		t.Errorf("latency received %v, want 100", got)
	}

	res := byScenario(t, rs, "resume")
	positive(t, res, rowBacklogFill, rowCatchup)
	if got := res.get("messages delivered, dense"); got != 100 {
		t.Errorf("resume delivered %v, want 100", got)
	}

	cn := byScenario(t, rs, "conns")
	positive(t, cn, rowConns, rowDialRate, rowGorPerConn)
	if g := cn.get(rowGorPerConn); g < 1 || g > 10 {
		t.Errorf("goroutines per connection %v, want 1..10", g)
	}
	checkTools(t, byScenario(t, rs, "tools"), []int{1}, 2*10)
}

// checkTools checks the rows of a tools result.
func checkTools(t *testing.T, r *Result, workers []int, calls int) {
	t.Helper()
	for _, k := range workers {
		positive(t, r, toolRow(k, rowToolP50), toolRow(k, rowToolP99), toolRow(k, rowToolP999), toolRow(k, rowToolP50Th))
		if p50, p99 := r.get(toolRow(k, rowToolP50)), r.get(toolRow(k, rowToolP99)); p50 > p99 {
			t.Errorf("%d workers: p50 %v > p99 %v", k, p50, p99)
		}
		if got := r.get(toolRow(k, rowToolCalls)); got != float64(calls) {
			t.Errorf("%d workers: %v calls completed, want %d", k, got, calls)
		}
		found := false
		for _, row := range r.Rows {
			if strings.HasPrefix(row.Metric, toolRow(k, rowToolRate)) {
				found = true
				if !(row.Value > 0) || row.Ratio == nil || !(*row.Ratio > 0) {
					t.Errorf("%d workers: throughput row %+v", k, row)
				}
			}
		}
		if !found {
			t.Errorf("%d workers: no throughput row", k)
		}
	}
}

// TestTransportsSelf runs the delivery scenarios once over each HTTP
// transport: every client must get seqs 1..M densely.
func TestTransportsSelf(t *testing.T) {
	for _, tr := range []string{transportSSE, transportStream, transportStreamHalf} {
		t.Run(tr, func(t *testing.T) {
			rs := runJSON(t, "-scenario", "fanout,latency,resume,conns", "-transport", tr, "-sessions", "3", "-messages", "60",
				"-per-session", "2", "-clients", "2", "-conns", "10", "-baseline-messages", "300", "-rate", "2000", "-writers", "2", "-size", "64", "-duration", "20s")
			fan := byScenario(t, rs, "fanout")
			positive(t, fan, rowDelivered)
			if got := fan.get("messages delivered, dense"); got != 3*60*2 {
				t.Errorf("fanout delivered %v, want 360 (two clients per session)", got)
			}
			if fan.Params["transport"] != tr {
				t.Errorf("fanout ran over %v, want %s", fan.Params["transport"], tr)
			}
			lat := byScenario(t, rs, "latency")
			positive(t, lat, rowP50, rowP99)
			if got := lat.get("messages received, dense"); got != 60 {
				t.Errorf("latency received %v, want 60", got)
			}
			res := byScenario(t, rs, "resume")
			positive(t, res, rowCatchup)
			if got := res.get("messages delivered, dense"); got != 2*60 {
				t.Errorf("resume delivered %v, want 120", got)
			}
			positive(t, byScenario(t, rs, "conns"), rowConns, rowDialRate)
		})
	}
}

// TestToolsSelf runs the tool round trip with two worker counts.
func TestToolsSelf(t *testing.T) {
	rs := runJSON(t, "-scenario", "tools", "-toolworkers", "1,2", "-calls", "15", "-concurrency", "3",
		"-baseline-messages", "300", "-duration", "30s")
	checkTools(t, byScenario(t, rs, "tools"), []int{1, 2}, 2*15)
}

// TestSpawn builds nats-server and the edge, runs them as children, reads
// their RSS apart from the clients', and leaves no child behind.
func TestSpawn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and the edge")
	}
	rs := runJSON(t, "-spawn", "-scenario", "conns,fanout,tools", "-conns", "20", "-sessions", "3", "-messages", "50",
		"-toolworkers", "1", "-calls", "10", "-concurrency", "2", "-baseline-messages", "300", "-size", "64", "-duration", "60s")
	cn := byScenario(t, rs, "conns")
	for _, role := range []string{"edge", "nats-server"} {
		if v := cn.get(role + " RSS after"); !(v > 0) {
			t.Errorf("%s RSS after = %v", role, v)
		}
	}
	fan := byScenario(t, rs, "fanout")
	if got := fan.get("messages delivered, dense"); got != 3*50 {
		t.Errorf("fanout delivered %v, want 150", got)
	}
	checkTools(t, byScenario(t, rs, "tools"), []int{1}, 2*10)
	pids, _ := cn.Params["pids"].(map[string]any)
	if len(pids) != 2 {
		t.Fatalf("pids %v, want an edge and a nats-server", cn.Params["pids"])
	}
	for role, list := range pids {
		for _, p := range list.([]any) {
			pid := int(p.(float64))
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s pid %d still exists after the run (kill 0: %v)", role, pid, err)
			}
		}
	}
}

// TestResumeManyClients: several clients resume the same backlog at once.
func TestResumeManyClients(t *testing.T) {
	rs := runJSON(t, "-scenario", "resume", "-messages", "200", "-clients", "3", "-baseline-messages", "200", "-size", "64", "-duration", "20s")
	res := byScenario(t, rs, "resume")
	positive(t, res, rowCatchup, "catch-up per client")
	if got := res.get("messages delivered, dense"); got != 3*200 {
		t.Errorf("delivered %v, want 600", got)
	}
}

func TestFlagsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no scenario", nil, "-scenario is required"},
		{"unknown scenario", []string{"-scenario", "x"}, `-scenario "x"`},
		{"remote url", []string{"-scenario", "conns", "-url", "ws://10.0.0.1:8080/haip/websocket", "-token", "t"}, "not a loopback"},
		{"remote name", []string{"-scenario", "conns", "-url", "ws://example.com/haip/websocket", "-token", "t"}, "not a loopback"},
		{"remote nats", []string{"-scenario", "fanout", "-url", "ws://127.0.0.1:1/haip/websocket", "-token", "t", "-nats", "nats://192.168.1.1:4222"}, "not a loopback"},
		{"no nats", []string{"-scenario", "fanout", "-url", "ws://[::1]:1/haip/websocket", "-token", "t"}, "needs -nats"},
		{"too many conns", []string{"-scenario", "conns", "-conns", "20001"}, "-conns is 20001"},
		{"long duration", []string{"-scenario", "fanout", "-duration", "1h"}, "-duration"},
		{"nats in self mode", []string{"-scenario", "fanout", "-nats", "nats://127.0.0.1:4222"}, "external mode"},
		{"unknown transport", []string{"-scenario", "fanout", "-transport", "carrier-pigeon"}, "-transport"},
		{"unknown scenario in list", []string{"-scenario", "fanout,nope"}, `-scenario "nope"`},
		{"bad worker count", []string{"-scenario", "tools", "-toolworkers", "1,0"}, "-toolworkers"},
		{"too many workers", []string{"-scenario", "tools", "-toolworkers", "65"}, "-toolworkers"},
		{"no calls", []string{"-scenario", "tools", "-calls", "0"}, "-calls is 0"},
		{"no readers", []string{"-scenario", "fanout", "-per-session", "0"}, "-per-session is 0"},
		{"too many readers", []string{"-scenario", "fanout", "-sessions", "1000", "-per-session", "21"}, "at most 20000 connections"},
		{"spawn and url", []string{"-scenario", "conns", "-spawn", "-url", "ws://127.0.0.1:1/haip/websocket", "-token", "t"}, "exclude each other"},
		{"spawn and nats", []string{"-scenario", "conns", "-spawn", "-nats", "nats://127.0.0.1:4222"}, "external mode"},
		{"bin without spawn", []string{"-scenario", "conns", "-edge-bin", "/bin/true"}, "for -spawn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseFlags(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	for _, ok := range [][]string{
		{"-scenario", "conns", "-url", "ws://localhost:8080/haip/websocket", "-token", "t"},
		{"-scenario", "fanout", "-url", "ws://127.1.2.3:8080/haip/websocket", "-token", "t", "-nats", "nats://127.0.0.1:4222"},
	} {
		if _, err := parseFlags(ok, io.Discard); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}
