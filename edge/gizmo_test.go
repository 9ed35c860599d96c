package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// approvalCall waits for the approval request in a HAIP client's stream
// and returns its call id, with everything read so far.
func approvalCall(t *testing.T, c *client.Conn) (string, []*haip.Envelope) {
	t.Helper()
	var id string
	envs := harness.ReadUntil(t, c, 20*time.Second, func(env *haip.Envelope) bool {
		var p haip.ToolCallPayload
		if env.Type == haip.TypeToolCall && env.DecodePayload(&p) == nil && p.Tool == streams.ApprovalTool {
			id = p.CallID
			return true
		}
		return false
	})
	return id, envs
}

// TestApprovalDecidedOverHAIPAndHTTP: the demo agent asks before it calls
// a tool; the user approves over HAIP (TOOL_DONE for the request), a
// second decision is refused, and a rejection over HTTP ends the run
// without the call. Another user cannot see or decide it.
func TestApprovalDecidedOverHAIPAndHTTP(t *testing.T) {
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	f.Tools("tools", 2)
	e := f.Edge(edge.Config{})
	alice, bob := f.Token("alice", auth.RoleUser), f.Token("bob", auth.RoleUser)
	var created struct{ SessionID string }
	apiCall(t, e.Base, alice, "POST", "/api/v1/sessions/create", nil, &created)
	sid := created.SessionID
	c := f.Dial(e, client.Options{URL: e.WS, Token: alice, Session: sid})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.SendText(ctx, "approve echo hello"); err != nil {
		t.Fatal(err)
	}
	id, first := approvalCall(t, c)
	var pending struct{ Approvals []streams.Approval }
	apiCall(t, e.Base, alice, "GET", "/gizmo/"+sid+"/approvals", nil, &pending)
	if len(pending.Approvals) != 1 || pending.Approvals[0].ID != id || pending.Approvals[0].Tool != "echo" {
		t.Fatalf("pending: %+v", pending)
	}
	// Bob: the session is not his, whatever the route.
	if st := apiCall(t, e.Base, bob, "POST", "/gizmo/"+sid+"/approvals/"+id, map[string]any{"decision": "approve"}, nil); st != 404 {
		t.Fatalf("bob decided: %d", st)
	}
	// A user's TOOL_DONE for a call that is no approval stays refused.
	forged, _ := haip.New(sid, haip.ChannelUser, haip.TypeToolDone, haip.ToolDonePayload{CallID: haip.NewUUID(), Result: json.RawMessage(`{"decision":"approve"}`)})
	body, _ := haip.Encode(forged)
	if st, pr := post(t, e.Base+"/haip/messages", alice, nil, body); st != 400 || len(pr.Results) != 1 || pr.Results[0].Error.Code != haip.CodeUnsupportedType {
		t.Fatalf("forged TOOL_DONE: %d %+v", st, pr)
	}
	// Approve over HAIP.
	if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolDone, haip.ToolDonePayload{CallID: id, Result: json.RawMessage(`{"decision":"approve","comment":"go"}`)}); err != nil {
		t.Fatal(err)
	}
	rest := harness.ReadUntil(t, c, 20*time.Second, harness.IsRunFinished)
	all := append(first, rest...)
	if text := harness.AnswerText(t, all); !strings.HasPrefix(text, "I called the tool echo.") {
		t.Fatalf("answer %q", text)
	}
	var ap struct{ Approval streams.Approval }
	apiCall(t, e.Base, alice, "GET", "/gizmo/"+sid+"/approvals/"+id, nil, &ap)
	if ap.Approval.Status != streams.ApprovalApproved || ap.Approval.DecidedBy != "alice" || ap.Approval.Comment != "go" {
		t.Fatalf("stored approval: %+v", ap.Approval)
	}
	var conflict apiErr
	if st := apiCall(t, e.Base, alice, "POST", "/gizmo/"+sid+"/approvals/"+id, map[string]any{"decision": "reject"}, &conflict); st != http.StatusConflict || conflict.Code != "APPROVAL_DECIDED" {
		t.Fatalf("second decision: %d %+v", st, conflict)
	}
	// Reject over HTTP: no call, the rejection in the answer.
	if _, err := c.SendText(ctx, "approve add 1 2"); err != nil {
		t.Fatal(err)
	}
	id2, _ := approvalCall(t, c)
	var decided struct {
		OK       bool
		Approval streams.Approval
	}
	if st := apiCall(t, e.Base, alice, "POST", "/gizmo/"+sid+"/approvals/"+id2, map[string]any{"decision": "reject", "comment": "not now"}, &decided); st != 200 || !decided.OK {
		t.Fatalf("reject: %d", st)
	}
	rest = harness.ReadUntil(t, c, 20*time.Second, harness.IsRunFinished)
	if got, want := harness.AnswerText(t, rest), demo.RejectedAnswer("add", "not now"); got != want {
		t.Fatalf("after rejection %q, want %q", got, want)
	}
	for _, env := range rest {
		var p haip.ToolCallPayload
		if env.Type == haip.TypeToolCall && env.DecodePayload(&p) == nil && p.Tool == "add" {
			t.Fatal("the rejected tool was called")
		}
	}
	var hist struct{ Approvals []streams.Approval }
	apiCall(t, e.Base, alice, "GET", "/gizmo/"+sid+"/approvals/history", nil, &hist)
	if len(hist.Approvals) != 2 || hist.Approvals[0].ID != id2 || hist.Approvals[0].Status != streams.ApprovalRejected {
		t.Fatalf("history: %+v", hist.Approvals)
	}
	for _, bad := range []map[string]any{{"decision": "maybe"}, {}} {
		if st := apiCall(t, e.Base, alice, "POST", "/gizmo/"+sid+"/approvals/"+id2, bad, nil); st != 400 {
			t.Fatalf("decision %v: %d", bad, st)
		}
	}
	if st := apiCall(t, e.Base, alice, "GET", "/gizmo/"+sid+"/approvals/nope", nil, nil); st != 404 {
		t.Fatalf("unknown approval: %d", st)
	}
}

// TestApprovalExpires: no decision by the deadline ends the run with a
// RUN_ERROR naming the expired approval; a late decision is refused.
func TestApprovalExpires(t *testing.T) {
	f := newFabric(t, streams.Config{})
	nc := f.Conn()
	js := f.JS
	agent, err := worker.NewAgent(context.Background(), nc, js, worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		_, err := run.RequestApproval(ctx, worker.ApprovalRequest{What: "wait for nobody", Timeout: 300 * time.Millisecond})
		return err
	}), worker.AgentConfig{Name: "expiring", AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.Run(agent.Run)
	e := f.Edge(edge.Config{})
	alice := f.Token("alice", auth.RoleUser)
	c := f.Dial(e, client.Options{URL: e.WS, Token: alice})
	if _, err := c.SendText(context.Background(), "anything"); err != nil {
		t.Fatal(err)
	}
	id, _ := approvalCall(t, c)
	envs := harness.ReadUntil(t, c, 20*time.Second, harness.IsRunFinished)
	var reason string
	var done haip.ToolDonePayload
	for _, env := range envs {
		switch env.Type {
		case haip.TypeRunError:
			reason = harness.ErrorPayload(t, env).Message
		case haip.TypeToolDone:
			_ = env.DecodePayload(&done)
		}
	}
	if !strings.Contains(reason, "approval expired") || done.CallID != id || done.Status != haip.ToolDoneCancelled {
		t.Fatalf("run ended with %q; approval TOOL_DONE %+v", reason, done)
	}
	var late apiErr
	if st := apiCall(t, e.Base, alice, "POST", "/gizmo/"+c.Session()+"/approvals/"+id, map[string]any{"decision": "approve"}, &late); st != http.StatusConflict {
		t.Fatalf("late decision: %d %+v", st, late)
	}
}

// gizmoClient follows /events as Gizmo's documented thin client does: an
// EventSource; state.initial sets the slices, state.update applies its
// JSON Patch (or replaces the slice with value) in order.
type gizmoClient struct {
	mu       sync.Mutex
	slices   map[string]json.RawMessage
	statuses []string
	updates  int
	err      error
}

func followGizmo(t *testing.T, ctx context.Context, url, token string) *gizmoClient {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"?token="+token, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/events: %d %s", resp.StatusCode, b)
	}
	g := &gizmoClient{slices: map[string]json.RawMessage{}}
	testkit.Go(t, func(stop context.Context) error {
		defer resp.Body.Close()
		context.AfterFunc(stop, func() { resp.Body.Close() })
		rd := sse.NewReader(resp.Body, 4<<20)
		for {
			ev, err := rd.Next()
			if err != nil {
				return nil
			}
			var m struct {
				Type    string
				Slices  map[string]json.RawMessage
				Slice   string
				Patches json.RawMessage
				Value   json.RawMessage
				Status  string
			}
			if err := json.Unmarshal(ev.Data, &m); err != nil || m.Type != ev.Name {
				g.fail(fmt.Errorf("event %s: %s (%v)", ev.Name, ev.Data, err))
				return nil
			}
			g.mu.Lock()
			switch ev.Name {
			case "state.initial":
				g.slices = m.Slices
			case "state.update":
				g.updates++
				if len(m.Value) > 0 {
					g.slices[m.Slice] = m.Value
					break
				}
				patch, err := jsonpatch.DecodePatch(m.Patches)
				if err == nil {
					var out []byte
					if out, err = patch.Apply(g.slices[m.Slice]); err == nil {
						g.slices[m.Slice] = out
					}
				}
				if err != nil {
					g.err = fmt.Errorf("patch %s on %s: %v", m.Patches, m.Slice, err)
				}
			case "execution.status":
				g.statuses = append(g.statuses, m.Status)
			}
			g.mu.Unlock()
		}
	})
	return g
}

func (g *gizmoClient) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err = err
}

// slice decodes one slice into v.
func (g *gizmoClient) slice(t *testing.T, name string, v any) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		t.Fatal(g.err)
	}
	if raw, ok := g.slices[name]; ok {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGizmoClientFollowsRunWithApproval: a Gizmo-shaped client follows
// /events through a run with an approval: state.initial, patches that
// apply cleanly in order, execution.status through waiting_approval, and
// a final state equal to GET /state.
func TestGizmoClientFollowsRunWithApproval(t *testing.T) {
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	f.Tools("tools", 2)
	e := f.Edge(edge.Config{})
	alice := f.Token("alice", auth.RoleUser)
	var created struct{ SessionID string }
	apiCall(t, e.Base, alice, "POST", "/api/v1/sessions/create", nil, &created)
	base := "/gizmo/" + created.SessionID
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := followGizmo(t, ctx, e.Base+base+"/events", alice)
	var inv struct {
		OK    bool
		RunID string
	}
	if st := apiCall(t, e.Base, alice, "POST", base+"/invoke", map[string]any{"input": "approve echo from gizmo"}, &inv); st != http.StatusAccepted || !inv.OK {
		t.Fatalf("invoke: %d", st)
	}
	var hitl struct{ Pending []streams.Approval }
	testkit.Eventually(t, 20*time.Second, func() bool {
		g.slice(t, "hitl", &hitl)
		return len(hitl.Pending) == 1
	}, "no pending approval in the hitl slice")
	if st := apiCall(t, e.Base, alice, "POST", base+"/approvals/"+hitl.Pending[0].ID, map[string]any{"decision": "approve"}, nil); st != 200 {
		t.Fatalf("approve: %d", st)
	}
	var agent struct {
		Messages []struct{ Role, Text, RunID string }
	}
	var ex struct{ Status string }
	testkit.Eventually(t, 20*time.Second, func() bool {
		g.slice(t, "agent", &agent)
		g.slice(t, "execution", &ex)
		n := len(agent.Messages)
		return ex.Status == "idle" && n >= 2 && strings.HasPrefix(agent.Messages[n-1].Text, "I called the tool echo.")
	}, "the run's answer never reached the agent slice", func() string { return fmt.Sprintf("%+v %+v", ex, agent) })
	var state map[string]json.RawMessage
	apiCall(t, e.Base, alice, "GET", base+"/state", nil, &state)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range []string{"execution", "agent", "hitl", "tools"} {
		var a, b any
		_ = json.Unmarshal(g.slices[name], &a)
		_ = json.Unmarshal(state[name], &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("slice %s: followed %s, GET /state %s", name, g.slices[name], state[name])
		}
	}
	if g.updates == 0 || !containsAll(g.statuses, "waiting_approval", "idle") {
		t.Fatalf("%d updates, statuses %v", g.updates, g.statuses)
	}
	// The run, with its action log and digest.
	var run struct {
		Run     struct{ ID, Status string }
		Actions []struct{ Type string }
		Digest  string
	}
	apiCall(t, e.Base, alice, "GET", base+"/runs/"+inv.RunID, nil, &run)
	if run.Run.Status != "OK" || len(run.Actions) < 6 || !strings.HasPrefix(run.Digest, "sha256:") || run.Actions[0].Type != "TEXT_MESSAGE_START" {
		t.Fatalf("run: %+v", run)
	}
	var again struct{ Digest string }
	apiCall(t, e.Base, alice, "GET", base+"/runs/"+inv.RunID, nil, &again)
	if again.Digest != run.Digest {
		t.Fatalf("digest changed: %s then %s", run.Digest, again.Digest)
	}
	var runs struct{ Runs []struct{ ID, Status string } }
	apiCall(t, e.Base, alice, "GET", base+"/runs?status=ok&limit=5", nil, &runs)
	if len(runs.Runs) != 1 || runs.Runs[0].ID != inv.RunID {
		t.Fatalf("runs: %+v", runs)
	}
	for _, path := range []string{"/.well-known/manifest.json", "/contracts/actions.public.json", "/state/agent"} {
		if st := apiCall(t, e.Base, alice, "GET", base+path, nil, nil); st != 200 {
			t.Fatalf("%s: %d", path, st)
		}
	}
	if st := apiCall(t, e.Base, alice, "GET", base+"/state/nope", nil, nil); st != 404 {
		t.Fatal("unknown slice served")
	}
	if st := apiCall(t, e.Base, alice, "POST", base+"/dispatch", map[string]any{"type": "launch"}, nil); st != 400 {
		t.Fatal("unknown action dispatched")
	}
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}
