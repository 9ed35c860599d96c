package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker/demo"
)

func callTool(t *testing.T, c *client.Conn, tool string, params any) string {
	t.Helper()
	raw, _ := json.Marshal(params)
	id := haip.NewUUID()
	if _, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: id, Tool: tool, Params: raw}); err != nil {
		t.Fatal(err)
	}
	return id
}

// toolEvents reads the log until the call's TOOL_DONE and returns the
// call's updates and its done payload.
func toolEvents(t *testing.T, c *client.Conn, callID string) (updates []haip.ToolUpdatePayload, done haip.ToolDonePayload) {
	t.Helper()
	harness.ReadUntil(t, c, 20*time.Second, func(e *haip.Envelope) bool {
		switch e.Type {
		case haip.TypeToolUpdate:
			var u haip.ToolUpdatePayload
			_ = e.DecodePayload(&u)
			if u.CallID == callID {
				updates = append(updates, u)
			}
		case haip.TypeToolDone:
			_ = e.DecodePayload(&done)
			return done.CallID == callID
		}
		return false
	})
	return updates, done
}

// A TOOL_CALL reaches a tool worker through the work queue; the client
// sees QUEUED, RUNNING with progress, then one TOOL_DONE with the result,
// over each transport.
func TestToolCallRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Tools("w1", 0)
	e := f.Edge(edge.Config{})
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Transport: tr})

		id := callTool(t, c, "add", map[string]float64{"a": 2, "b": 3})
		updates, done := toolEvents(t, c, id)
		if len(updates) < 2 || updates[0].Status != haip.ToolStatusQueued || updates[1].Status != haip.ToolStatusRunning {
			t.Fatalf("updates %+v", updates)
		}
		if done.Status != haip.ToolDoneOK || string(done.Result) != `{"result":5}` {
			t.Fatalf("done %+v %s", done, done.Result)
		}

		id = callTool(t, c, "sleep", map[string]int{"ms": 200, "steps": 4})
		updates, done = toolEvents(t, c, id)
		var progress []float64
		for _, u := range updates {
			if u.Progress != nil {
				progress = append(progress, *u.Progress)
			}
		}
		if fmt.Sprint(progress) != "[0 25 50 75]" || done.Status != haip.ToolDoneOK {
			t.Fatalf("sleep progress %v, done %+v", progress, done)
		}
	})
}

// Bad calls get a clear answer: an unknown tool its TOOL_DONE ERROR at
// once, bad params an ERROR result, and a tool name that would escape its
// subject a PROTOCOL_VIOLATION without being stored or queued; over each
// transport.
func TestToolCallErrors(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Tools("w1", 0)
	e := f.Edge(edge.Config{})
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Transport: tr})

		id := callTool(t, c, "nope", map[string]any{})
		_, done := toolEvents(t, c, id)
		if done.Status != haip.ToolDoneError || string(done.Result) != `{"error":"no live worker serves tool nope"}` {
			t.Fatalf("unknown tool: %+v %s", done, done.Result)
		}
		id = callTool(t, c, "add", map[string]any{"a": "two", "b": 3})
		_, done = toolEvents(t, c, id)
		if done.Status != haip.ToolDoneError {
			t.Fatalf("bad params: %+v %s", done, done.Result)
		}
		before := logLen(t, f, c.Session(), streams.In)
		for _, bad := range []string{"a.b", "*", ">", "a b", "haip.tools.echo"} {
			callTool(t, c, bad, map[string]any{})
			if ep := harness.ErrorPayload(t, harness.ReadControl(t, c, haip.TypeError, 5*time.Second)); ep.Code != haip.CodeProtocolViolation {
				t.Fatalf("tool %q: %+v", bad, ep)
			}
		}
		if after := logLen(t, f, c.Session(), streams.In); after != before {
			t.Fatalf("refused calls were stored: %d -> %d", before, after)
		}
	})
}

// Two workers share one tool's calls: each call is answered once.
func TestToolWorkersShareCalls(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Tools("w1", 0)
	f.Tools("w2", 0)
	e := f.Edge(edge.Config{})
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		c := f.Dial(e, client.Options{Token: f.Token(fmt.Sprintf("u%d", i), auth.RoleUser)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := callTool(t, c, "echo", map[string]string{"message": fmt.Sprint(i)})
			_, done := toolEvents(t, c, id)
			if done.Status != haip.ToolDoneOK || string(done.Result) != fmt.Sprintf(`{"echoed":"%d"}`, i) {
				t.Errorf("call %d: %+v %s", i, done, done.Result)
			}
			// Exactly one TOOL_DONE for the call in the log.
			count := 0
			for _, en := range logEntries(t, f, c.Session(), streams.Out) {
				if en.Type == string(haip.TypeToolDone) {
					count++
				}
			}
			if count != 1 {
				t.Errorf("call %d: %d TOOL_DONE", i, count)
			}
		}()
	}
	wg.Wait()
}

func cancelTool(t *testing.T, c *client.Conn, callID, reason string) {
	t.Helper()
	if _, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeToolCancel, haip.ToolCancelPayload{CallID: callID, Reason: reason}); err != nil {
		t.Fatal(err)
	}
}

// TOOL_CANCEL reaches the worker running the call: the client sees
// CANCELLING, then one TOOL_DONE CANCELLED, long before the call would
// have ended. A call still queued behind a busy worker is cancelled when
// a worker takes it, without running. Over each transport.
func TestToolCancel(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		f := newFabric(t, streams.Config{})
		f.Tools("w1", 1) // one call at a time: the second waits in the queue
		e := f.Edge(edge.Config{})
		c := f.Dial(e, client.Options{Transport: tr})

		running := callTool(t, c, "sleep", map[string]int{"ms": 20000, "steps": 100})
		queued := callTool(t, c, "sleep", map[string]int{"ms": 20000, "steps": 100})
		// Wait until the first reports progress: it is running.
		harness.ReadUntil(t, c, 10*time.Second, func(e *haip.Envelope) bool {
			var u haip.ToolUpdatePayload
			return e.Type == haip.TypeToolUpdate && e.DecodePayload(&u) == nil && u.CallID == running && u.Progress != nil && *u.Progress > 0
		})
		began := time.Now()
		cancelTool(t, c, queued, "changed my mind")
		cancelTool(t, c, running, "too slow")
		statuses := map[string][]string{}
		done := map[string]haip.ToolDonePayload{}
		harness.ReadUntil(t, c, 15*time.Second, func(e *haip.Envelope) bool {
			switch e.Type {
			case haip.TypeToolUpdate:
				var u haip.ToolUpdatePayload
				_ = e.DecodePayload(&u)
				if u.Status == haip.ToolStatusCancelling {
					statuses[u.CallID] = append(statuses[u.CallID], string(u.Status))
				}
			case haip.TypeToolDone:
				var d haip.ToolDonePayload
				_ = e.DecodePayload(&d)
				done[d.CallID] = d
			}
			return len(done) == 2
		})
		if took := time.Since(began); took > 10*time.Second {
			t.Fatalf("cancel took %s", took)
		}
		for id, reason := range map[string]string{running: "too slow", queued: "changed my mind"} {
			d := done[id]
			if d.Status != haip.ToolDoneCancelled || string(d.Result) != fmt.Sprintf(`{"reason":%q}`, reason) || len(statuses[id]) != 1 {
				t.Fatalf("call %s: done %+v %s, cancelling %v", id, d, d.Result, statuses[id])
			}
		}
		// The queued call never ran: it reported no progress.
		for _, en := range logEntries(t, f, c.Session(), streams.Out) {
			var env struct {
				Type    string                 `json:"type"`
				Payload haip.ToolUpdatePayload `json:"payload"`
			}
			_ = json.Unmarshal(en.Data, &env)
			if env.Type == string(haip.TypeToolUpdate) && env.Payload.CallID == queued && env.Payload.Status == haip.ToolStatusRunning {
				t.Fatalf("the queued call ran before its cancellation was seen")
			}
		}
	})
}

// Users discover tools from the registry: TOOL_LIST and TOOL_SCHEMA over
// the connection, on each transport (answered to the asker only), and GET
// /haip/tools.
func TestToolDiscovery(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Tools("w1", 0)
	e := f.Edge(edge.Config{})
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Transport: tr})
		ctx := context.Background()

		if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolList, haip.ToolListPayload{Tools: []haip.ToolInfo{}}); err != nil {
			t.Fatal(err)
		}
		var list haip.ToolListPayload
		if err := harness.ReadControl(t, c, haip.TypeToolList, 5*time.Second).DecodePayload(&list); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range list.Tools {
			names = append(names, tool.Name)
		}
		if fmt.Sprint(names) != "[add echo sleep]" {
			t.Fatalf("TOOL_LIST %v", names)
		}
		if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolSchema, haip.ToolSchemaPayload{Tool: "add", Schema: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
		var schema haip.ToolSchemaPayload
		if err := harness.ReadControl(t, c, haip.TypeToolSchema, 5*time.Second).DecodePayload(&schema); err != nil {
			t.Fatal(err)
		}
		var sch struct {
			Params struct {
				Required []string `json:"required"`
			} `json:"params"`
		}
		if err := json.Unmarshal(schema.Schema, &sch); err != nil || schema.Tool != "add" || fmt.Sprint(sch.Params.Required) != "[a b]" {
			t.Fatalf("TOOL_SCHEMA %+v %s (%v)", schema, schema.Schema, err)
		}
		// Questions are answered, not stored in the session.
		if n := logLen(t, f, c.Session(), streams.In); n != 0 {
			t.Fatalf("%d questions stored", n)
		}
	})
	req, _ := http.NewRequest(http.MethodGet, e.Base+"/haip/tools", nil)
	req.Header.Set("Authorization", "Bearer "+f.Token("alice", auth.RoleUser))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Tools []streams.ToolInfo `json:"tools"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Tools) != 3 || len(body.Tools[0].ParamsSchema) == 0 {
		t.Fatalf("GET /haip/tools: %d %+v %v", resp.StatusCode, body, err)
	}
	resp2, err := http.Get(e.Base + "/haip/tools")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /haip/tools without token: %d", resp2.StatusCode)
	}
}

// The demo agent calls a tool when asked ("add 2 3"), waits for its result
// through the session log, and answers with it; the user sees the whole
// exchange in one dense sequence, over each transport.
func TestDemoAgentCallsTool(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Tools("w1", 0)
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Transport: tr})
		if _, err := c.SendText(context.Background(), "add 2 3"); err != nil {
			t.Fatal(err)
		}
		got := harness.ReadUntil(t, c, 20*time.Second, harness.IsRunFinished)
		harness.AssertDense(t, got, 1)
		var kinds []string
		for _, env := range got {
			if env.Type != haip.TypeTextMessagePart {
				kinds = append(kinds, string(env.Type))
			}
		}
		if fmt.Sprint(kinds) != "[RUN_STARTED TOOL_CALL TOOL_UPDATE TOOL_UPDATE TOOL_DONE TEXT_MESSAGE_START TEXT_MESSAGE_END RUN_FINISHED]" {
			t.Fatalf("sequence %v", kinds)
		}
		done := haip.ToolDonePayload{CallID: "", Status: haip.ToolDoneOK, Result: json.RawMessage(`{"result":5}`)}
		if got, want := harness.AnswerText(t, got), demo.ToolAnswer("add", done); got != want {
			t.Fatalf("answer %q, want %q", got, want)
		}
	})
}
