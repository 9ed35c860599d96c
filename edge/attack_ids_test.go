package edge_test

import (
	"context"
	"encoding/json"
	"strings"
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

// Ids a client chooses (envelope ids, call ids) are its session's own:
// another user who picks the same ids, by accident or on purpose, neither
// reaches into the session nor has his own messages swallowed by it.

// callToolID sends a TOOL_CALL with the call id the client chose.
func callToolID(t *testing.T, c *client.Conn, callID, tool string, params any) {
	t.Helper()
	raw, _ := json.Marshal(params)
	if _, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: callID, Tool: tool, Params: raw}); err != nil {
		t.Fatal(err)
	}
}

// waitCancelling reads c's log until the edge tells the session that call
// callID is CANCELLING: the cancellation has been handed on.
func waitCancelling(t *testing.T, c *client.Conn, callID string) {
	t.Helper()
	harness.ReadUntil(t, c, 10*time.Second, func(e *haip.Envelope) bool {
		var u haip.ToolUpdatePayload
		return e.Type == haip.TypeToolUpdate && e.DecodePayload(&u) == nil && u.CallID == callID && u.Status == haip.ToolStatusCancelling
	})
}

// outLogText is a session's whole outbound log, for searching.
func outLogText(t *testing.T, f *fabric, session string) string {
	t.Helper()
	var b strings.Builder
	for _, e := range logEntries(t, f, session, streams.Out) {
		b.Write(e.Data)
		b.WriteByte('\n')
	}
	return b.String()
}

// Bob's TOOL_CANCEL of a call id alice is running, sent in his own
// session, does not touch her call: it ends OK with its real result, and
// nothing of bob's cancel reaches her log.
func TestAttackToolCancelOfAnotherSessionsCall(t *testing.T) {
	t.Parallel()
	f, alice, bob := twoUsersWithTools(t)

	// Long enough for a cancel to land (on the cancel subject at once, by
	// the worker's heartbeat within AckWait/3) before it ends by itself.
	const sleepMS = 3000
	callID := callTool(t, alice, "sleep", map[string]int{"ms": sleepMS, "steps": 30})
	harness.ReadUntil(t, alice, 10*time.Second, func(e *haip.Envelope) bool {
		var u haip.ToolUpdatePayload
		return e.Type == haip.TypeToolUpdate && e.DecodePayload(&u) == nil && u.CallID == callID && u.Progress != nil && *u.Progress > 0
	})
	const reason = "bob-was-here"
	cancelTool(t, bob, callID, reason)
	waitCancelling(t, bob, callID)

	_, done := toolEvents(t, alice, callID)
	if done.Status != haip.ToolDoneOK || string(done.Result) != `{"slept_ms":3000}` {
		t.Fatalf("alice's call: %+v %s, want OK {\"slept_ms\":%d}", done, done.Result, sleepMS)
	}
	if log := outLogText(t, f, alice.Session()); strings.Contains(log, reason) || strings.Contains(log, string(haip.ToolStatusCancelling)) {
		t.Fatalf("bob's cancel reached alice's log:\n%s", log)
	}
}

// A cancel bob sends for a call id nobody has used yet does not cancel
// alice's later call with that id; it still cancels bob's own later call
// with it (a cancel may come before its call, within one session).
func TestAttackPreemptiveToolCancelOfAnotherSessionsCall(t *testing.T) {
	t.Parallel()
	f, alice, bob := twoUsersWithTools(t)

	callID := haip.NewUUID()
	const reason = "poisoned-by-bob"
	cancelTool(t, bob, callID, reason)
	waitCancelling(t, bob, callID)

	callToolID(t, alice, callID, "echo", map[string]string{"message": "alice"})
	_, done := toolEvents(t, alice, callID)
	if done.Status != haip.ToolDoneOK || string(done.Result) != `{"echoed":"alice"}` {
		t.Fatalf("alice's call: %+v %s, want OK", done, done.Result)
	}
	if log := outLogText(t, f, alice.Session()); strings.Contains(log, reason) {
		t.Fatalf("bob's cancel reached alice's log:\n%s", log)
	}

	callToolID(t, bob, callID, "echo", map[string]string{"message": "bob"})
	_, done = toolEvents(t, bob, callID)
	if done.Status != haip.ToolDoneCancelled || string(done.Result) != `{"reason":"`+reason+`"}` {
		t.Fatalf("bob's own call after his cancel: %+v %s, want CANCELLED", done, done.Result)
	}
}

// textWithIDs builds a user's text message (START with the text, END) with
// the envelope ids and message id the client chose, numbered 1 and 2.
func textWithIDs(t *testing.T, session, text, messageID string, ids [2]string) [][]byte {
	t.Helper()
	return textEnvelopes(t, session, text, messageID, func(i int, env *haip.Envelope) {
		env.ID = ids[i]
		env.Seq = haip.U64(uint64(i + 1))
	})
}

// twoUsersWithTools is a fabric with a tool worker and an edge, and alice
// and bob connected to it, each in a session of their own.
func twoUsersWithTools(t *testing.T) (f *fabric, alice, bob *client.Conn) {
	t.Helper()
	f = newFabric(t, streams.Config{})
	f.Tools("w1", 0)
	e := f.Edge(edge.Config{})
	return f, f.Dial(e, client.Options{Token: f.Token("alice", auth.RoleUser)}), f.Dial(e, client.Options{Token: f.Token("bob", auth.RoleUser)})
}

// Alice's envelopes with the ids (and message id) bob already used in his
// session are stored in hers, with her own seqs, and the agent answers
// them; a re-sent envelope is still stored once within a session, and an
// agent's envelope with an id the user used is stored in the other
// direction.
func TestAttackEnvelopeIDOfAnotherSession(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	aliceTok, bobTok := f.Token("alice", auth.RoleUser), f.Token("bob", auth.RoleUser)
	alice := f.Dial(e, client.Options{Token: aliceTok})
	bob := f.Dial(e, client.Options{Token: bobTok})

	ids, mid := [2]string{haip.NewUUID(), haip.NewUUID()}, haip.NewUUID()
	_, pr := post(t, e.Base+"/haip/messages", bobTok, nil, textWithIDs(t, bob.Session(), "words of bob", mid, ids)...)
	mustAccept(t, pr, 2)
	if got := harness.AnswerText(t, harness.ReadUntil(t, bob, 20*time.Second, harness.IsRunFinished)); got != demo.Answer("words of bob") {
		t.Fatalf("bob's answer %q", got)
	}

	aliceMsgs := textWithIDs(t, alice.Session(), "words of alice", mid, ids)
	_, pr = post(t, e.Base+"/haip/messages", aliceTok, nil, aliceMsgs...)
	if len(pr.Results) != 2 {
		t.Fatalf("alice's POST: %+v", pr)
	}
	for i, r := range pr.Results {
		if r.Status != "accepted" || r.Duplicate || r.Seq != uint64(i+1) || r.ID != ids[i] {
			t.Fatalf("alice's envelope %d: %+v (error %+v), want stored at her seq %d", i, r, r.Error, i+1)
		}
	}
	if got := harness.AnswerText(t, harness.ReadUntil(t, alice, 20*time.Second, harness.IsRunFinished)); got != demo.Answer("words of alice") {
		t.Fatalf("alice's answer %q", got)
	}
	in := logEntries(t, f, alice.Session(), streams.In)
	if len(in) != 2 || in[0].MsgID != ids[0] || in[1].MsgID != ids[1] || !strings.Contains(string(in[0].Data), "words of alice") {
		t.Fatalf("alice's inbound log: %+v", in)
	}

	// Within alice's session, a re-sent envelope is stored once.
	_, pr = post(t, e.Base+"/haip/messages", aliceTok, nil, aliceMsgs[0])
	mustAccept(t, pr, 1)
	if r := pr.Results[0]; !r.Duplicate || r.Seq != 1 {
		t.Fatalf("alice's re-sent envelope: %+v, want a duplicate of seq 1", r)
	}

	// An agent's envelope with an id alice used goes to the outbound log.
	env, err := haip.New(alice.Session(), haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	env.ID = ids[0]
	before := logLen(t, f, alice.Session(), streams.Out)
	_, pr = post(t, e.Base+"/haip/messages", f.Token("agent-1", auth.RoleAgent), nil, encode(t, env))
	mustAccept(t, pr, 1)
	if r := pr.Results[0]; r.Duplicate || r.Seq != before+1 {
		t.Fatalf("agent's envelope: %+v, want stored at outbound seq %d", r, before+1)
	}
}

// Alice's call with a call id bob used first gets its QUEUED and its
// TOOL_DONE with her own result.
func TestAttackToolCallIDOfAnotherSession(t *testing.T) {
	t.Parallel()
	_, alice, bob := twoUsersWithTools(t)

	callID := haip.NewUUID()
	callToolID(t, bob, callID, "echo", map[string]string{"message": "bob"})
	if _, done := toolEvents(t, bob, callID); done.Status != haip.ToolDoneOK {
		t.Fatalf("bob's call: %+v %s", done, done.Result)
	}

	callToolID(t, alice, callID, "echo", map[string]string{"message": "alice"})
	updates, done := toolEvents(t, alice, callID)
	if len(updates) == 0 || updates[0].Status != haip.ToolStatusQueued {
		t.Fatalf("alice's call updates %+v, want QUEUED first", updates)
	}
	if done.Status != haip.ToolDoneOK || string(done.Result) != `{"echoed":"alice"}` {
		t.Fatalf("alice's call: %+v %s, want OK", done, done.Result)
	}
}
