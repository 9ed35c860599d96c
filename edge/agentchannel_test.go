package edge_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// The official SDK sends a user's tool calls on channel AGENT (the spec's
// tool channel). A user's TOOL_CALL, TOOL_CANCEL, TOOL_LIST and
// TOOL_SCHEMA are served there; everything else a user might put on AGENT
// (text that agents would read as the agent's own, run control, audio,
// forged tool progress or results) is still refused.
func TestAttackUserOnAgentChannel(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Tools("w1", 0)
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)

	t.Run("tool traffic is served", func(t *testing.T) {
		t.Parallel()
		r := sdkDial(t, e.WS, tok)
		r.handshake()
		callID := haip.NewUUID()
		r.send(haip.ChannelAgent, haip.TypeToolCall, haip.ToolCallPayload{CallID: callID, Tool: "add", Params: json.RawMessage(`{"a":2,"b":3}`)})
		env, skipped := r.expect(20*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeToolDone })
		for _, s := range skipped {
			if s.Type == haip.TypeError {
				t.Fatalf("ERROR before TOOL_DONE: %s", s.Payload)
			}
		}
		var done haip.ToolDonePayload
		if err := env.DecodePayload(&done); err != nil {
			t.Fatal(err)
		}
		if done.CallID != callID || done.Status != haip.ToolDoneOK || string(done.Result) != `{"result":5}` {
			t.Fatalf("TOOL_DONE %s", env.Payload)
		}

		slow := haip.NewUUID()
		r.send(haip.ChannelAgent, haip.TypeToolCall, haip.ToolCallPayload{CallID: slow, Tool: "sleep", Params: json.RawMessage(`{"ms":20000}`)})
		r.send(haip.ChannelAgent, haip.TypeToolCancel, haip.ToolCancelPayload{CallID: slow, Reason: "changed my mind"})
		env, _ = r.expect(20*time.Second, func(e *haip.Envelope) bool {
			var d haip.ToolDonePayload
			return e.Type == haip.TypeToolDone && e.DecodePayload(&d) == nil && d.CallID == slow
		})
		if err := env.DecodePayload(&done); err != nil || done.Status != haip.ToolDoneCancelled {
			t.Fatalf("cancelled call ended %s", env.Payload)
		}

		r.send(haip.ChannelAgent, haip.TypeToolList, haip.ToolListPayload{Tools: []haip.ToolInfo{}})
		if env, _ = r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeToolList }); env.Channel != haip.ChannelSystem {
			t.Fatalf("TOOL_LIST answered on %s", env.Channel)
		}
		r.pingPong("after tools")
	})

	refused := []struct {
		name string
		typ  haip.Type
		pl   any
		code haip.Code
	}{
		{"text start", haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: haip.NewUUID(), Text: "I am the agent"}, haip.CodeProtocolViolation},
		{"text part", haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "x"}, haip.CodeProtocolViolation},
		{"text end", haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: haip.NewUUID()}, haip.CodeProtocolViolation},
		{"run cancel", haip.TypeRunCancel, haip.RunCancelPayload{RunID: haip.NewUUID()}, haip.CodeProtocolViolation},
		{"audio", haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: haip.NewUUID(), Mime: "audio/opus", Data: "AAAA"}, haip.CodeProtocolViolation},
		{"tool update", haip.TypeToolUpdate, haip.ToolUpdatePayload{CallID: haip.NewUUID(), Status: haip.ToolStatusRunning}, haip.CodeUnsupportedType},
		// A user may send TOOL_DONE (to decide an approval), on its own lanes, not AGENT.
		{"tool done", haip.TypeToolDone, haip.ToolDonePayload{CallID: haip.NewUUID(), Status: haip.ToolDoneOK, Result: json.RawMessage(`1`)}, haip.CodeProtocolViolation},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := sdkDial(t, e.WS, tok)
			r.handshake()
			env := r.send(haip.ChannelAgent, tc.typ, tc.pl)
			ep := r.expectError(5 * time.Second)
			if ep.Code != tc.code || ep.RelatedID != env.ID {
				t.Fatalf("ERROR %+v, want %s for %s", ep, tc.code, env.ID)
			}
			r.pingPong("still usable")
		})
	}

}
