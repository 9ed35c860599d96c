package edge_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// The tests in this file each pin one wire behaviour of the official
// TypeScript SDK, @haip/sdk 1.0.1 (HAIP.md §16), that the edge must serve.

// sdkDial connects as the SDK does: URL + "?token=" + token, a uuid v4
// session of its own, and seq = Date.now().
func sdkDial(t *testing.T, url, token string) *rawWS {
	t.Helper()
	r := rawDial(t, url+"?token="+token)
	r.sdkSeq = true
	return r
}

// rootURL is the edge's WebSocket URL at "/".
func rootURL(e *testEdge) string { return "ws" + strings.TrimPrefix(e.Base, "http") + "/" }

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// The SDK opens its WebSocket on the URL it is given, typically the server
// root, with only ?token= in the query.
func TestCompatRootPath(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	r := sdkDial(t, rootURL(e), f.Token("alice", auth.RoleUser))
	hai, _ := r.handshake()
	if hai.Session != r.session {
		t.Fatalf("server HAI on session %s, want %s", hai.Session, r.session)
	}
	r.pingPong("root")
}

// The SDK picks the session, sends HAI at once with a 13-digit Date.now()
// seq, and waits for FLOW_UPDATE on every channel before it sends more
// than 10 messages on it.
func TestCompatHandshake(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	r := sdkDial(t, e.WS, f.Token("alice", auth.RoleUser))
	if !uuidV4.MatchString(r.session) {
		t.Fatalf("session %s is not a uuid v4", r.session)
	}
	hello := r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload())
	if s := fmt.Sprint(uint64(hello.Seq)); len(s) != 13 {
		t.Fatalf("SDK seq %s is not 13 digits", s)
	}
	hai, before := r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeHAI })
	if len(before) != 0 {
		t.Fatalf("%s before the server HAI", types(before))
	}
	var p haip.HelloPayload
	if err := hai.DecodePayload(&p); err != nil {
		t.Fatal(err)
	}
	if hai.Channel != haip.ChannelSystem || hai.Session != r.session || p.HaipVersion != "1.1.2" || !containsMajor(p.AcceptMajor, 1) {
		t.Fatalf("server HAI on %s session %s payload %s", hai.Channel, hai.Session, hai.Payload)
	}
	granted := map[haip.Channel]int64{}
	for len(granted) < len(haip.AllChannels()) {
		env, skipped := r.expect(5*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeFlowUpdate })
		if len(skipped) != 0 {
			t.Fatalf("%s among the initial FLOW_UPDATEs", types(skipped))
		}
		var fu haip.FlowUpdatePayload
		if err := env.DecodePayload(&fu); err != nil {
			t.Fatal(err)
		}
		if fu.AddMessages == nil || *fu.AddMessages < 10 {
			t.Fatalf("FLOW_UPDATE %s grants too little", env.Payload)
		}
		granted[fu.Channel] += *fu.AddMessages
	}
	for _, ch := range []haip.Channel{haip.ChannelUser, haip.ChannelAgent, haip.ChannelSystem, haip.ChannelAudioIn, haip.ChannelAudioOut} {
		if granted[ch] < 10 {
			t.Fatalf("channel %s granted %d, want >= 10 (grants %v)", ch, granted[ch], granted)
		}
	}
}

func containsMajor(xs []int, v int) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

// The SDK counts its own credit per channel (10 to start, plus every
// FLOW_UPDATE) and stalls silently when it runs out, so the edge must top
// credit up as it is used. This client behaves the same way: it sends only
// while it has credit and otherwise waits for FLOW_UPDATE, so a missing
// top-up shows as a stall.
func TestCompatFlowUpdateTopUp(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{ClientCreditMessages: 20})
	tok := f.Token("alice", auth.RoleUser)
	const sends = 50 // several times the grant
	for _, ch := range []haip.Channel{haip.ChannelUser, haip.ChannelSystem} {
		t.Run(string(ch), func(t *testing.T) {
			t.Parallel()
			r := sdkDial(t, e.WS, tok)
			credit := map[haip.Channel]int64{}
			for _, c := range haip.AllChannels() {
				credit[c] = 10
			}
			credit[haip.ChannelSystem]-- // the HAI
			r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload())
			topUps := 0
			take := func(env *haip.Envelope) {
				if env.Type == haip.TypeError {
					t.Fatalf("ERROR: %s", env.Payload)
				}
				if env.Type != haip.TypeFlowUpdate {
					return
				}
				var fu haip.FlowUpdatePayload
				if err := env.DecodePayload(&fu); err != nil {
					t.Fatal(err)
				}
				if fu.AddMessages != nil {
					credit[fu.Channel] += *fu.AddMessages
					if fu.Channel == ch {
						topUps++
					}
				}
			}
			msgID := haip.NewUUID()
			for i := range sends {
				for credit[ch] == 0 {
					env, skipped := r.expect(5*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeFlowUpdate })
					for _, s := range skipped {
						take(s)
					}
					take(env)
				}
				if ch == haip.ChannelUser {
					r.send(ch, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: msgID, Text: fmt.Sprint(i)})
				} else {
					r.send(ch, haip.TypePing, haip.PingPayload{Nonce: fmt.Sprint(i)})
				}
				credit[ch]--
			}
			// A final round trip; everything read on the way is counted.
			for _, env := range r.pingPong("done") {
				take(env)
			}
			if topUps < 2 { // the initial grant and at least one top-up
				t.Fatalf("%d FLOW_UPDATEs for %s for %d messages", topUps, ch, sends)
			}
		})
	}
}

// The SDK answers our PING with PONG and sends PINGs of its own; it also
// sends PONGs, which must not draw an ERROR.
func TestCompatPingPong(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	r := sdkDial(t, e.WS, f.Token("alice", auth.RoleUser))
	r.handshake()
	r.pingPong("sdk-nonce-1")
	r.send(haip.ChannelSystem, haip.TypePong, haip.PongPayload{Nonce: "unsolicited"})
	r.send(haip.ChannelSystem, haip.TypePong, haip.PongPayload{})
	r.pingPong("sdk-nonce-2") // fails on an ERROR before its PONG
}

// The SDK sends a user message as TEXT_MESSAGE_START (no text), PARTs and
// END, with no run_id and no RUN_STARTED: the server opens the run, and
// every message of it carries the run_id.
func TestCompatPlainUserText(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	r := sdkDial(t, e.WS, f.Token("alice", auth.RoleUser))
	r.handshake()
	msgID := haip.NewUUID()
	r.send(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID})
	for _, part := range []string{"Hel", "lo, ", "wor", "ld"} {
		r.send(haip.ChannelUser, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: msgID, Text: part})
	}
	r.send(haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msgID})
	last, skipped := r.expect(15*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeRunFinished })
	var run []*haip.Envelope
	for _, env := range append(skipped, last) {
		if env.Type == haip.TypeError {
			t.Fatalf("ERROR: %s", env.Payload)
		}
		if !client.IsControl(env.Type) {
			run = append(run, env)
		}
	}
	harness.AssertDense(t, run, 1)
	if run[0].Type != haip.TypeRunStarted || run[0].RunID == "" || !haip.ValidUUID(run[0].RunID) {
		t.Fatalf("first message %s run_id %q, want RUN_STARTED with a run_id", run[0].Type, run[0].RunID)
	}
	n := map[haip.Type]int{}
	for _, env := range run {
		n[env.Type]++
		if env.RunID != run[0].RunID {
			t.Fatalf("%s seq %d has run_id %q, want %s", env.Type, env.Seq, env.RunID, run[0].RunID)
		}
		if env.Session != r.session || (env.Channel != haip.ChannelAgent && env.Channel != haip.ChannelSystem) {
			t.Fatalf("%s on session %s channel %s", env.Type, env.Session, env.Channel)
		}
	}
	if n[haip.TypeRunStarted] != 1 || n[haip.TypeTextMessageStart] != 1 || n[haip.TypeTextMessagePart] == 0 ||
		n[haip.TypeTextMessageEnd] != 1 || n[haip.TypeRunFinished] != 1 {
		t.Fatalf("run messages %v", n)
	}
	var fin haip.RunFinishedPayload
	if err := last.DecodePayload(&fin); err != nil {
		t.Fatal(err)
	}
	if fin.Status != haip.RunStatusOK {
		t.Fatalf("RUN_FINISHED %s, want status OK", last.Payload)
	}
	if got, want := harness.AnswerText(t, run), demo.Answer("Hello, world"); got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
}

// After a drop the SDK opens two sockets for the same session: both are
// served at once, and each gets every message, with the same seqs and ids.
func TestCompatTwoConnections(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	c1 := f.Dial(e, client.Options{})
	c2 := f.Dial(e, client.Options{Session: c1.Session()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c1.SendText(ctx, "from the first socket"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.SendText(ctx, "from the second socket"); err != nil {
		t.Fatal(err)
	}
	twoRuns := func() func(*haip.Envelope) bool {
		n := 0
		return func(e *haip.Envelope) bool {
			if e.Type == haip.TypeRunFinished {
				n++
			}
			return n == 2
		}
	}
	got1 := harness.ReadUntil(t, c1, 20*time.Second, twoRuns())
	got2 := harness.ReadUntil(t, c2, 20*time.Second, twoRuns())
	harness.AssertDense(t, got1, 1)
	if len(got1) != len(got2) {
		t.Fatalf("first socket got %d messages, second %d", len(got1), len(got2))
	}
	for i := range got1 {
		if got1[i].ID != got2[i].ID || got1[i].Seq != got2[i].Seq {
			t.Fatalf("message %d: %s/%d on the first socket, %s/%d on the second", i, got1[i].ID, got1[i].Seq, got2[i].ID, got2[i].Seq)
		}
	}
	// The two runs may interleave; each answer is whole within its run.
	byRun := map[string][]*haip.Envelope{}
	for _, env := range got1 {
		byRun[env.RunID] = append(byRun[env.RunID], env)
	}
	answers := map[string]bool{}
	for _, envs := range byRun {
		answers[harness.AnswerText(t, envs)] = true
	}
	for _, text := range []string{"from the first socket", "from the second socket"} {
		if !answers[demo.Answer(text)] {
			t.Fatalf("no answer to %q in %v", text, answers)
		}
	}
}

// On reconnect the SDK sends last_rx_seq = the last ack it saw. From this
// edge that is its position (TestCompatResumeFromAck); an ack seen from an
// older edge is a Date.now() value far beyond any seq of ours: that is
// RESUME_FAILED, and the connection goes on live.
func TestCompatResumeFromTimestamp(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	c1 := f.Dial(e, client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c1.SendText(ctx, "before the drop"); err != nil {
		t.Fatal(err)
	}
	first := harness.ReadUntil(t, c1, 15*time.Second, harness.IsRunFinished)
	_ = c1.CloseNow()

	c2 := f.Dial(e, client.Options{Session: c1.Session(), LastRxSeq: harness.U64(uint64(time.Now().UnixMilli()))})
	ep := harness.ErrorPayload(t, harness.ReadControl(t, c2, haip.TypeError, 5*time.Second))
	if ep.Code != haip.CodeResumeFailed {
		t.Fatalf("ERROR %+v, want RESUME_FAILED", ep)
	}
	if _, err := c2.SendText(ctx, "after the drop"); err != nil {
		t.Fatal(err)
	}
	rest := harness.ReadUntil(t, c2, 15*time.Second, harness.IsRunFinished)
	harness.AssertDense(t, rest, uint64(len(first))+1)
	if got, want := harness.AnswerText(t, rest), demo.Answer("after the drop"); got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
}

// The SDK puts run_id in the RUN_FINISHED payload as well as on the
// envelope (gap G10): from an agent using the SDK, accepted without an
// error, and stored. (A user may not send RUN_FINISHED at all.)
func TestCompatRunFinishedPayloadRunID(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	r := sdkDial(t, e.WS, f.Token("bot", auth.RoleAgent))
	// An agent speaks only in a session a user has opened.
	u := rawDial(t, tokenURL(e, f.Token("alice", auth.RoleUser)))
	u.session = r.session
	u.handshake()
	r.handshake()
	runID := haip.NewUUID()
	env := r.env(haip.ChannelAgent, haip.TypeRunFinished, map[string]any{"run_id": runID, "status": "OK"})
	env.RunID = runID
	r.sendEnv(env)
	r.pingPong("after RUN_FINISHED")
	entries := logEntries(t, f, r.session, streams.Out)
	if len(entries) != 1 || entries[0].Type != string(haip.TypeRunFinished) || entries[0].MsgID != env.ID {
		t.Fatalf("stored %d entries %+v, want the RUN_FINISHED", len(entries), entries)
	}
}

// The SDK drops any channel but the five and any type but the 22. Over a
// varied session (errors before and after the handshake, a run, edge
// PINGs, a replay, a resume) every frame the edge sends is a text frame
// holding a valid envelope with a standard channel and type; rawWS.read
// checks each.
func TestCompatOnlyStandardEnvelopes(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{HeartbeatInterval: edge.Duration(100 * time.Millisecond)})
	tok := f.Token("alice", auth.RoleUser)
	r := sdkDial(t, e.WS, tok)
	seen := map[haip.Type]bool{}
	note := func(envs ...*haip.Envelope) {
		for _, env := range envs {
			seen[env.Type] = true
		}
	}

	r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "early"}) // before HAI
	env, skipped := r.expect(5*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeError })
	note(append(skipped, env)...)
	hai, skipped := r.handshake()
	note(append(skipped, hai)...)
	r.write(websocket.MessageText, []byte(`{"not":"an envelope"}`))
	env, skipped = r.expect(5*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeError })
	note(append(skipped, env)...)

	msgID := haip.NewUUID()
	r.send(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID, Text: "check the wire"})
	r.send(haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msgID})
	env, skipped = r.expect(15*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeRunFinished })
	note(append(skipped, env)...)
	// An edge PING (answered, as the SDK does).
	ping, skipped := r.expect(5*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypePing })
	note(append(skipped, ping)...)
	r.send(haip.ChannelSystem, haip.TypePong, haip.PongPayload{Nonce: pingNonce(t, ping)})
	r.send(haip.ChannelSystem, haip.TypeReplayRequest, haip.ReplayRequestPayload{FromSeq: 1})
	note(r.pingPong("after replay")...)
	seen[haip.TypePong] = true // pingPong read it
	last := env.Seq

	// A resume on a second socket, from the middle of the run.
	r2 := sdkDial(t, e.WS, tok)
	r2.session = r.session
	p := helloPayload()
	p.LastRxSeq = "2"
	r2.send(haip.ChannelSystem, haip.TypeHAI, p)
	env, skipped = r2.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Seq == last && !client.IsControl(e.Type) })
	note(append(skipped, env)...)

	for _, typ := range []haip.Type{haip.TypeHAI, haip.TypeError, haip.TypeFlowUpdate, haip.TypePing, haip.TypePong,
		haip.TypeRunStarted, haip.TypeTextMessageStart, haip.TypeTextMessagePart, haip.TypeTextMessageEnd, haip.TypeRunFinished} {
		if !seen[typ] {
			t.Errorf("never saw %s", typ)
		}
	}
}
