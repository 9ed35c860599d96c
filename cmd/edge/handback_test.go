package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/streams"
)

// What the hand-back tests queue on the process they stop: more long
// sleep calls than its tool concurrency, and more runs than its agent
// concurrency, each far longer than its shutdown budget.
const (
	handBackBudget = 3 * time.Second // SHUTDOWN_TIMEOUT of the stopped process
	// handBackMargin is what the stopped process may take beyond its
	// budget: exiting and closing its connections on a loaded machine.
	handBackMargin = 2 * time.Second
	handBackCalls  = 5
	handBackRuns   = 2
	handBackSleep  = 8 * time.Second // each call's sleep
	// handBackAckWait is the ack wait of every worker here: a call or run
	// that is not handed back (Nak) would wait this long before another
	// worker takes it, which the tests' deadlines do not allow.
	handBackAckWait = "60s"
)

// handBackEnv is the environment of a worker process (edge or
// toolworker) that stops with long work queued and running.
func handBackEnv(natsURL string) map[string]string {
	return map[string]string{
		"NATS_URL": natsURL, "SHUTDOWN_TIMEOUT": handBackBudget.String(),
		"TOOL_CONCURRENCY": "2", "AGENT_CONCURRENCY": "1", "DEMO_AGENT_DELAY": "1s",
		"TOOL_ACK_WAIT": handBackAckWait, "AGENT_ACK_WAIT": handBackAckWait,
	}
}

// TestAttackSIGTERMWithLongCallsQueued: an edge running the demo agent and
// the built-in tools in-process, with more long sleep calls queued than its
// tool concurrency and runs in flight, is sent SIGTERM. It exits within
// SHUTDOWN_TIMEOUT (plus the margin), and another worker then runs every
// call and run it handed back, at once: one TOOL_DONE per call, one
// RUN_STARTED and one RUN_FINISHED per run.
func TestAttackSIGTERMWithLongCallsQueued(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	e := startEdge(t, t.TempDir(), handBackEnv(ns.ClientURL()))
	q := newQueueWatcher(t, ns.ClientURL())
	q.waitTool("sleep")
	w := q.queueLongWork(e)
	q.stopWithinBudget(e.proc)
	q.takeOver(w)
}

// TestAttackToolworkerSIGTERMWithLongCallsQueued is the same for a
// cmd/toolworker process: it exits within SHUTDOWN_TIMEOUT, and another
// worker runs what it handed back.
func TestAttackToolworkerSIGTERMWithLongCallsQueued(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	e := startEdge(t, t.TempDir(), map[string]string{"NATS_URL": ns.ClientURL(), "DEMO_AGENT": "false", "BUILTIN_TOOLS": "false"})
	tw := start(t, bins.toolworker, handBackEnv(ns.ClientURL()))
	tw.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)
	q := newQueueWatcher(t, ns.ClientURL())
	q.waitTool("sleep")
	w := q.queueLongWork(e)
	q.stopWithinBudget(tw)
	q.takeOver(w)
}

// queueWatcher reads the fabric's state straight from JetStream, so that
// it sees the sessions whatever process comes and goes.
type queueWatcher struct {
	t       *testing.T
	natsURL string
	js      jetstream.JetStream
	log     *streams.Log
	tools   *streams.Tools
}

func newQueueWatcher(t *testing.T, natsURL string) *queueWatcher {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	q := &queueWatcher{t: t, natsURL: natsURL, js: js}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	natstest.Eventually(t, 30*time.Second, func() bool {
		lg, err := streams.OpenLog(ctx, nc, js)
		if err != nil {
			return false
		}
		q.log = lg
		return true
	}, "the topology was never created")
	t.Cleanup(func() { _ = q.log.Close(context.Background()) })
	if q.tools, err = streams.OpenTools(ctx, js); err != nil {
		t.Fatal(err)
	}
	return q
}

// waitTool waits until a worker advertises tool.
func (q *queueWatcher) waitTool(tool string) {
	q.t.Helper()
	natstest.Eventually(q.t, 30*time.Second, func() bool {
		_, found, err := q.tools.Get(context.Background(), tool)
		return err == nil && found
	}, "tool %s never advertised", tool)
}

// entries reads a session's outbound log.
func (q *queueWatcher) entries(session string) []streams.Entry {
	q.t.Helper()
	es, _, err := q.log.Read(context.Background(), session, streams.Out, 1, 10_000, 16<<20)
	if err != nil {
		q.t.Fatal(err)
	}
	return es
}

// longWork is what queueLongWork queued: the calls (in one session) and
// one run in each of the run sessions.
type longWork struct {
	callSession string
	calls       []string
	runSessions []string
}

// queueLongWork queues, through the edge, handBackCalls long sleep calls
// and handBackRuns runs, and waits until the stopping process is busy:
// two calls running, one run started.
func (q *queueWatcher) queueLongWork(e *edgeProc) longWork {
	q.t.Helper()
	ctx := context.Background()
	var w longWork
	c := dial(q.t, e, client.Options{})
	w.callSession = c.Session()
	params, _ := json.Marshal(map[string]int64{"ms": handBackSleep.Milliseconds(), "steps": 8})
	for range handBackCalls {
		id := haip.NewUUID()
		if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: id, Tool: "sleep", Params: params}); err != nil {
			q.t.Fatal(err)
		}
		w.calls = append(w.calls, id)
	}
	for i := range handBackRuns {
		rc := dial(q.t, e, client.Options{})
		if _, err := rc.SendText(ctx, fmt.Sprintf("a long answer, number %d", i)); err != nil {
			q.t.Fatal(err)
		}
		w.runSessions = append(w.runSessions, rc.Session())
	}
	natstest.Eventually(q.t, 30*time.Second, func() bool {
		running := 0
		for _, en := range q.entries(w.callSession) {
			var u struct {
				Payload haip.ToolUpdatePayload `json:"payload"`
			}
			if en.Type == string(haip.TypeToolUpdate) && json.Unmarshal(en.Data, &u) == nil && u.Payload.Status == haip.ToolStatusRunning && u.Payload.Progress != nil && *u.Payload.Progress == 0 {
				running++
			}
		}
		started := false
		for _, en := range q.entries(w.runSessions[0]) {
			started = started || en.Type == string(haip.TypeRunStarted)
		}
		return running >= 2 && started
	}, "the calls and the run never started")
	return w
}

// stopWithinBudget sends SIGTERM to p and fails unless it exits cleanly
// within its SHUTDOWN_TIMEOUT plus the margin.
func (q *queueWatcher) stopWithinBudget(p *proc) {
	q.t.Helper()
	began := time.Now()
	p.signal(syscall.SIGTERM)
	if err := p.wait(handBackBudget + handBackMargin); err != nil {
		q.t.Fatalf("exit after SIGTERM: %v", err)
	}
	q.t.Logf("exited %s after SIGTERM (SHUTDOWN_TIMEOUT %s) with %d calls and %d runs queued or running",
		time.Since(began).Round(time.Millisecond), handBackBudget, handBackCalls, handBackRuns)
}

// takeOver starts another worker process and checks that it runs all of
// w at once (well within the ack wait): exactly one TOOL_DONE OK per call,
// one RUN_STARTED and one RUN_FINISHED OK per run.
func (q *queueWatcher) takeOver(w longWork) {
	q.t.Helper()
	env := map[string]string{"NATS_URL": q.natsURL, "WORKER_NAME": "next", "DEMO_AGENT_DELAY": "5ms",
		"TOOL_ACK_WAIT": handBackAckWait, "AGENT_ACK_WAIT": handBackAckWait}
	next := start(q.t, bins.toolworker, env)
	next.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)
	began := time.Now()
	count := func(session string, typ haip.Type) map[string]int {
		n := map[string]int{}
		for _, en := range q.entries(session) {
			if en.Type != string(typ) {
				continue
			}
			var p struct {
				Payload struct {
					CallID string `json:"call_id"`
					Status string `json:"status"`
				} `json:"payload"`
			}
			_ = json.Unmarshal(en.Data, &p)
			n[p.Payload.CallID+" "+p.Payload.Status]++
		}
		return n
	}
	natstest.Eventually(q.t, handBackSleep+15*time.Second, func() bool {
		if len(count(w.callSession, haip.TypeToolDone)) < len(w.calls) {
			return false
		}
		for _, s := range w.runSessions {
			if len(count(s, haip.TypeRunFinished)) == 0 {
				return false
			}
		}
		return true
	}, "the handed-back work was not run at once by the next worker")
	q.t.Logf("the next worker finished the handed-back work %s after it started", time.Since(began).Round(time.Millisecond))
	dones := count(w.callSession, haip.TypeToolDone)
	for _, id := range w.calls {
		if dones[id+" "+string(haip.ToolDoneOK)] != 1 || len(dones) != len(w.calls) {
			q.t.Fatalf("TOOL_DONEs %v, want one OK for each of %v", dones, w.calls)
		}
	}
	for _, s := range w.runSessions {
		seq := uint64(0)
		for _, en := range q.entries(s) {
			if en.Seq != seq+1 {
				q.t.Fatalf("session %s: seq %d after %d", s, en.Seq, seq)
			}
			seq = en.Seq
		}
		started, finished := count(s, haip.TypeRunStarted), count(s, haip.TypeRunFinished)
		if started[" "] != 1 || finished[" "+string(haip.RunStatusOK)] != 1 || len(finished) != 1 {
			q.t.Fatalf("session %s: RUN_STARTED %v, RUN_FINISHED %v; want one each, OK", s, started, finished)
		}
	}
}
