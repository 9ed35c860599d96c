package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
)

// What the hand-back tests queue on the process they stop, from two users
// in different shards: more long sleep calls and runs than it runs at once
// (3 of each, at most 2 per user: its share), each far longer than its
// shutdown budget, so that when it stops it is running some, has taken
// one more of each that waits for a slot, and leaves the rest queued.
const (
	handBackBudget = 3 * time.Second // SHUTDOWN_TIMEOUT of the stopped process
	// handBackMargin is what the stopped process may take beyond its
	// budget: exiting and closing its connections on a loaded machine.
	handBackMargin = 2 * time.Second
	handBackSleep  = 8 * time.Second // each call's sleep
	// handBackAckWait is the ack wait of every worker here: a call or run
	// that is not handed back (Nak) would wait this long before another
	// worker takes it, which the tests' deadlines do not allow.
	handBackAckWait = "60s"
	// handBackBusy is how many calls, and how many runs, the stopped
	// process holds (running, or taken and waiting for a slot).
	handBackBusy = 4
)

// handBackQueued is what each user queues: calls and runs.
var handBackQueued = []struct{ calls, runs int }{{3, 3}, {3, 2}}

// handBackEnv is the environment of a worker process (edge or
// toolworker) that stops with long work queued and running.
func handBackEnv(natsURL string) map[string]string {
	return map[string]string{
		"NATS_URL": natsURL, "SHUTDOWN_TIMEOUT": handBackBudget.String(),
		"TOOL_CONCURRENCY": "3", "AGENT_CONCURRENCY": "3", "DEMO_AGENT_DELAY": "1s",
		"TOOL_ACK_WAIT": handBackAckWait, "AGENT_ACK_WAIT": handBackAckWait,
	}
}

// TestAttackSIGTERMWithLongCallsQueued: an edge running the demo agent and
// the built-in tools in-process, with more long sleep calls and runs
// queued than it runs at once, some running and one of each taken and
// waiting for a slot, is sent SIGTERM. It exits within SHUTDOWN_TIMEOUT
// (plus the margin), and another worker then runs every call and run it
// handed back, at once: one TOOL_DONE per call, one RUN_STARTED and one
// RUN_FINISHED per run.
func TestAttackSIGTERMWithLongCallsQueued(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	dir := t.TempDir()
	e := startEdge(t, dir, handBackEnv(ns.ClientURL()))
	q := newQueueWatcher(t, ns.ClientURL())
	q.waitTool("sleep")
	w := q.queueLongWork(e, dir)
	q.stopWithinBudget(e.proc)
	q.takeOver(w)
}

// TestAttackToolworkerSIGTERMWithLongCallsQueued is the same for a
// cmd/toolworker process: it exits within SHUTDOWN_TIMEOUT, and another
// worker runs what it handed back.
func TestAttackToolworkerSIGTERMWithLongCallsQueued(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	dir := t.TempDir()
	e := startEdge(t, dir, map[string]string{"NATS_URL": ns.ClientURL(), "DEMO_AGENT": "false", "BUILTIN_TOOLS": "false"})
	tw := start(t, bins.toolworker, handBackEnv(ns.ClientURL()))
	tw.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)
	q := newQueueWatcher(t, ns.ClientURL())
	q.waitTool("sleep")
	w := q.queueLongWork(e, dir)
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
	testkit.Eventually(t, 30*time.Second, func() bool {
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
	testkit.Eventually(q.t, 30*time.Second, func() bool {
		_, found, err := q.tools.Get(context.Background(), tool)
		return err == nil && found
	}, "tool "+tool+" never advertised")
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

// longWork is what queueLongWork queued: each user's calls (in one
// session per user) and runs (one per session).
type longWork struct {
	calls       map[string][]string // session -> call ids
	runSessions []string
}

// queueLongWork queues handBackQueued through the edge, as the edge's
// printed user and a second user in another shard (its token minted with
// the edge's dev secret in dataDir), and waits until the stopping process
// is busy: handBackBusy calls and runs taken, three of each started.
func (q *queueWatcher) queueLongWork(e *edgeProc, dataDir string) longWork {
	q.t.Helper()
	ctx := context.Background()
	secret, _, err := auth.LoadOrCreateSecret(filepath.Join(dataDir, "jwt-secret"))
	if err != nil {
		q.t.Fatal(err)
	}
	signer, err := auth.NewHMACSigner(secret)
	if err != nil {
		q.t.Fatal(err)
	}
	other := "other"
	for i := 0; streams.UserShard(other) == streams.UserShard("dev-user"); i++ {
		other = fmt.Sprint("other-", i)
	}
	otherToken, err := signer.Mint(auth.MintOptions{Subject: other, Role: auth.RoleUser, TTL: time.Hour})
	if err != nil {
		q.t.Fatal(err)
	}
	w := longWork{calls: map[string][]string{}}
	params, _ := json.Marshal(map[string]int64{"ms": handBackSleep.Milliseconds(), "steps": 8})
	for u, token := range []string{e.token, otherToken} {
		c := dial(q.t, e, client.Options{Token: token})
		for range handBackQueued[u].calls {
			id := haip.NewUUID()
			if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: id, Tool: "sleep", Params: params}); err != nil {
				q.t.Fatal(err)
			}
			w.calls[c.Session()] = append(w.calls[c.Session()], id)
		}
		for i := range handBackQueued[u].runs {
			rc := dial(q.t, e, client.Options{Token: token})
			if _, err := rc.SendText(ctx, fmt.Sprintf("a long answer, number %d", i)); err != nil {
				q.t.Fatal(err)
			}
			w.runSessions = append(w.runSessions, rc.Session())
		}
	}
	testkit.Eventually(q.t, 30*time.Second, func() bool {
		running, started := 0, 0
		for session := range w.calls {
			for _, en := range q.entries(session) {
				var u struct {
					Payload haip.ToolUpdatePayload `json:"payload"`
				}
				if en.Type == string(haip.TypeToolUpdate) && json.Unmarshal(en.Data, &u) == nil && u.Payload.Status == haip.ToolStatusRunning && u.Payload.Progress != nil && *u.Payload.Progress == 0 {
					running++
				}
			}
		}
		for _, s := range w.runSessions {
			for _, en := range q.entries(s) {
				if en.Type == string(haip.TypeRunStarted) {
					started++
				}
			}
		}
		return running >= 3 && started >= 3 && q.taken(streams.ToolStream) >= handBackBusy && q.taken(streams.RunStream) >= handBackBusy
	}, "the stopping process never had its calls and runs running and one more of each taken")
	return w
}

// taken is how many messages of a work-queue stream are delivered and not
// acknowledged, over all of its consumers.
func (q *queueWatcher) taken(stream string) int {
	q.t.Helper()
	s, err := q.js.Stream(context.Background(), stream)
	if err != nil {
		q.t.Fatal(err)
	}
	n := 0
	infos := s.ListConsumers(context.Background())
	for info := range infos.Info() {
		n += info.NumAckPending
	}
	if err := infos.Err(); err != nil {
		q.t.Fatal(err)
	}
	return n
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
	q.t.Logf("exited %s after SIGTERM (SHUTDOWN_TIMEOUT %s) with %d calls and %d runs taken, more queued",
		time.Since(began).Round(time.Millisecond), handBackBudget, handBackBusy, handBackBusy)
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
	testkit.Eventually(q.t, handBackSleep+15*time.Second, func() bool {
		for session, calls := range w.calls {
			if len(count(session, haip.TypeToolDone)) < len(calls) {
				return false
			}
		}
		for _, s := range w.runSessions {
			if len(count(s, haip.TypeRunFinished)) == 0 {
				return false
			}
		}
		return true
	}, "the handed-back work was not run at once by the next worker")
	q.t.Logf("the next worker finished the handed-back work %s after it started", time.Since(began).Round(time.Millisecond))
	for session, calls := range w.calls {
		dones := count(session, haip.TypeToolDone)
		for _, id := range calls {
			if dones[id+" "+string(haip.ToolDoneOK)] != 1 || len(dones) != len(calls) {
				q.t.Fatalf("TOOL_DONEs %v, want one OK for each of %v", dones, calls)
			}
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
