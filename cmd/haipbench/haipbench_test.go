package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runJSON runs the tool with args plus a JSON file and returns the results.
func runJSON(t *testing.T, args ...string) []*Result {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.json")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
		"-conns", "20", "-rate", "2000", "-writers", "2", "-size", "64", "-duration", "20s")
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
	positive(t, lat, rowP50, rowP99, rowP999, rowAchievedRate)
	if p50, p99, p999 := lat.get(rowP50), lat.get(rowP99), lat.get(rowP999); p50 > p99 || p99 > p999 {
		t.Errorf("percentiles out of order: %v %v %v", p50, p99, p999)
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
