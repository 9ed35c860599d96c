package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/localcluster"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
)

// apiGet GETs a JSON answer.
func apiGet(t *testing.T, url, token string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0 // an edge going down: the caller waits
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// startApprovalRun creates a session on base and invokes the demo agent
// with a tool request that needs approval; it returns the session and
// the pending approval's id once the agent has asked.
func startApprovalRun(t *testing.T, base, token string) (session, approval string) {
	t.Helper()
	var created struct{ SessionID string }
	if st := apiPost(t, base+"/api/v1/sessions/create", token, nil, &created); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	gz := base + "/gizmo/" + created.SessionID
	if st := apiPost(t, gz+"/invoke", token, map[string]any{"input": "approve echo it survived"}, nil); st != http.StatusAccepted {
		t.Fatalf("invoke: %d", st)
	}
	var pending struct{ Approvals []streams.Approval }
	testkit.Eventually(t, 60*time.Second, func() bool {
		apiGet(t, gz+"/approvals", token, &pending)
		return len(pending.Approvals) == 1
	}, "the agent never asked for approval")
	return created.SessionID, pending.Approvals[0].ID
}

// decideAndCheck approves on base and waits for the run to end; the
// session then holds the run once: one RUN_STARTED, one approval request
// and decision, one tool call and result, one RUN_FINISHED OK, dense seqs.
func decideAndCheck(t *testing.T, base, token, session, approval string) {
	t.Helper()
	gz := base + "/gizmo/" + session
	testkit.Eventually(t, 60*time.Second, func() bool {
		st := apiPost(t, gz+"/approvals/"+approval, token, map[string]any{"decision": "approve", "comment": "after the crash"}, nil)
		return st == http.StatusOK
	}, "the decision was never taken")
	var runs struct{ Runs []struct{ ID, Status string } }
	testkit.Eventually(t, 90*time.Second, func() bool {
		apiGet(t, gz+"/runs", token, &runs)
		return len(runs.Runs) == 1 && runs.Runs[0].Status == streams.RunOK
	}, "the run never finished", func() string { return fmt.Sprintf("%+v", runs) })
	var conv struct {
		Messages []struct {
			Direction string
			Seq       uint64
			Envelope  haip.Envelope
		}
	}
	apiGet(t, base+"/api/v1/sessions/"+session+"/messages?limit=1000", token, &conv)
	count := map[string]int{}
	var seqs []uint64
	var text strings.Builder
	for _, m := range conv.Messages {
		if m.Direction != "out" {
			continue
		}
		seqs = append(seqs, m.Seq)
		key := string(m.Envelope.Type)
		var call haip.ToolCallPayload
		if m.Envelope.DecodePayload(&call) == nil && call.Tool != "" {
			key += ":" + call.Tool
		}
		var done haip.ToolDonePayload
		if m.Envelope.Type == haip.TypeToolDone && m.Envelope.DecodePayload(&done) == nil && done.CallID == approval {
			key += ":approval"
		}
		var part haip.TextMessagePartPayload
		if m.Envelope.Type == haip.TypeTextMessagePart && m.Envelope.DecodePayload(&part) == nil {
			text.WriteString(part.Text)
		}
		count[key]++
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("out seqs not dense: %v", seqs)
		}
	}
	want := map[string]int{"RUN_STARTED": 1, "TOOL_CALL:" + streams.ApprovalTool: 1, "TOOL_DONE:approval": 1, "TOOL_CALL:echo": 1, "TOOL_DONE": 1, "RUN_FINISHED": 1}
	for k, n := range want {
		if count[k] != n {
			t.Fatalf("%s %d times, want %d (all: %v)", k, count[k], n, count)
		}
	}
	if !strings.HasPrefix(text.String(), "I called the tool echo.") {
		t.Fatalf("answer %q", text.String())
	}
}

// An approval is pending when the agent worker process is SIGKILLed;
// another replica takes the run over, the user decides later over HTTP,
// and the run finishes once.
func TestApprovalAcrossAgentKill(t *testing.T) {
	t.Parallel()
	e := startEdge(t, t.TempDir(), map[string]string{"NATS_LISTEN": "127.0.0.1:0", "DEMO_AGENT": "false"})
	natsURL := e.waitLine(reNATS, 5*time.Second)
	worker := func(name string) *proc {
		w := start(t, bins.toolworker, map[string]string{"NATS_URL": natsURL, "BUILTIN_TOOLS": "false", "AGENT_ACK_WAIT": "2s",
			"DEMO_AGENT_DELAY": "10ms", "WORKER_NAME": name})
		w.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)
		return w
	}
	a := worker("a")
	base := "http" + strings.TrimPrefix(strings.TrimSuffix(e.ws, "/haip/websocket"), "ws")
	session, approval := startApprovalRun(t, base, e.token)
	a.signal(syscall.SIGKILL)
	if err := a.wait(10 * time.Second); err == nil {
		t.Fatal("worker a exited cleanly after SIGKILL")
	}
	worker("b")
	decideAndCheck(t, base, e.token, session, approval)
}

// In a cluster, an approval is pending when the edge that started the
// run is SIGKILLed and a NATS node is killed; the decision, made on the
// other edge, reaches the agent and the run finishes once.
func TestClusterApprovalAcrossEdgeAndNodeKill(t *testing.T) {
	t.Parallel()
	cl, edges := topology(t, localcluster.Options{Edges: 2, ToolWorkers: 1,
		ToolWorkerEnv: map[string]string{"DEMO_AGENT_DELAY": "10ms", "AGENT_ACK_WAIT": "3s"}})
	e1, e2 := edges[0], edges[1]
	session, approval := startApprovalRun(t, e1.base, e1.token)
	if err := cl.KillEdge(0); err != nil {
		t.Fatal(err)
	}
	if err := cl.KillNode(2); err != nil {
		t.Fatal(err)
	}
	decideAndCheck(t, e2.base, e2.token, session, approval)
}
