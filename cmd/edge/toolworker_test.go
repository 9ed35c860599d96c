package main_test

import (
	"context"
	"encoding/json"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
)

// A tool worker process is SIGKILLed in the middle of a call: the call is
// redelivered to another worker process, and the client sees exactly one
// TOOL_DONE.
func TestToolWorkerKilledMidCall(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := startEdge(t, dir, map[string]string{"NATS_LISTEN": "127.0.0.1:0", "BUILTIN_TOOLS": "false", "DEMO_AGENT": "false"})
	toolWorkerKilledMidCall(t, e, e.waitLine(reNATS, 5*time.Second))
}

// toolWorkerKilledMidCall runs a sleep call on a toolworker process,
// SIGKILLs it mid-call, starts another, and checks the session holds
// exactly one TOOL_DONE, OK.
func toolWorkerKilledMidCall(t *testing.T, e *edgeProc, natsURL string) {
	t.Helper()
	workerEnv := func(name string) map[string]string {
		return map[string]string{"NATS_URL": natsURL, "DEMO_AGENT": "false", "WORKER_NAME": name, "TOOL_ACK_WAIT": "2s"}
	}
	ready := regexp.MustCompile(`toolworker ready`)
	w1 := start(t, bins.toolworker, workerEnv("w1"))
	w1.waitLine(ready, 30*time.Second)

	c := dial(t, e, client.Options{})
	ctx := context.Background()
	callID := haip.NewUUID()
	params, _ := json.Marshal(map[string]int{"ms": 3000, "steps": 30})
	if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: callID, Tool: "sleep", Params: params}); err != nil {
		t.Fatal(err)
	}
	// Kill the worker once the call is running.
	if _, err := readLog(t, c, 20*time.Second, func(env *haip.Envelope) bool {
		var u haip.ToolUpdatePayload
		return env.Type == haip.TypeToolUpdate && env.DecodePayload(&u) == nil && u.Progress != nil && *u.Progress > 0
	}); err != nil {
		t.Fatal(err)
	}
	w1.signal(syscall.SIGKILL)
	_ = w1.wait(10 * time.Second)
	w2 := start(t, bins.toolworker, workerEnv("w2"))
	w2.waitLine(ready, 30*time.Second)
	if _, err := readLog(t, c, 30*time.Second, func(env *haip.Envelope) bool { return env.Type == haip.TypeToolDone }); err != nil {
		t.Fatal(err)
	}

	// The whole log, read afresh: one TOOL_DONE, OK, and nothing after it
	// for the call.
	c2 := dial(t, e, client.Options{Session: c.Session(), LastRxSeq: &[]uint64{0}[0]})
	all, err := readLog(t, c2, 20*time.Second, func(env *haip.Envelope) bool { return uint64(env.Seq) >= c.LastSeq() })
	if err != nil {
		t.Fatal(err)
	}
	dones := 0
	for i, env := range all {
		if uint64(env.Seq) != uint64(i)+1 {
			t.Fatalf("seq %d at %d", env.Seq, i)
		}
		if env.Type == haip.TypeToolDone {
			dones++
			var d haip.ToolDonePayload
			_ = env.DecodePayload(&d)
			if d.Status != haip.ToolDoneOK || string(d.Result) != `{"slept_ms":3000}` {
				t.Fatalf("TOOL_DONE %+v %s", d, d.Result)
			}
		}
	}
	if dones != 1 {
		t.Fatalf("%d TOOL_DONE for one call", dones)
	}
}
