package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// Every transport against one real edge (embedded nats-server, loopback
// sockets, a demo agent, the built-in tools): handshake and refusal, a
// streamed answer, a tool call, an error reply, PING and replay answers,
// a resume after a cut (on the next transport of the list) with nothing
// lost or twice, Dedupe, and flow control.
func TestTransports(t *testing.T) {
	t.Parallel()
	f := harness.New(t, streams.Config{})
	f.Agent(time.Millisecond)
	f.Tools("builtin", 4)
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	all := client.Transports()
	for i, tr := range all {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			// Refused before the stream starts: the edge's status and body.
			_, err := harness.TryDial(t, e, client.Options{Token: "not-a-token", Transport: tr})
			var he *client.HTTPError
			if !errors.As(err, &he) || he.Status != http.StatusUnauthorized || !strings.Contains(he.Body, `"code"`) {
				t.Fatalf("bad token: %v, want an HTTPError 401 with the JSON body", err)
			}

			// Handshake. A small credit window makes Read grant credit
			// back (FLOW_UPDATE) every other message.
			c := harness.Dial(t, e, client.Options{Token: tok, Transport: tr, Credit: 4})
			if c.Hello.HaipVersion != haip.Version || c.Transport() != tr || c.LastSeq() != 0 {
				t.Fatalf("after the handshake: version %q, transport %q, last seq %d", c.Hello.HaipVersion, c.Transport(), c.LastSeq())
			}

			// A streamed answer.
			if _, err := c.SendText(ctx, "hello over "+tr); err != nil {
				t.Fatal(err)
			}
			got := harness.ReadUntil(t, c, 20*time.Second, harness.IsRunFinished)
			harness.AssertDense(t, got, 1)
			if text := harness.AnswerText(t, got); text != demo.Answer("hello over "+tr) {
				t.Fatalf("answer %q", text)
			}
			if last := uint64(got[len(got)-1].Seq); c.LastSeq() != last {
				t.Fatalf("LastSeq %d after seq %d", c.LastSeq(), last)
			}

			// A tool call: QUEUED and RUNNING, then one TOOL_DONE.
			callID := haip.NewUUID()
			if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: callID, Tool: "add", Params: json.RawMessage(`{"a":2,"b":3}`)}); err != nil {
				t.Fatal(err)
			}
			before := c.LastSeq()
			var updates []haip.ToolStatus
			var done haip.ToolDonePayload
			tool := harness.ReadUntil(t, c, 20*time.Second, func(env *haip.Envelope) bool {
				switch env.Type {
				case haip.TypeToolUpdate:
					var u haip.ToolUpdatePayload
					if err := env.DecodePayload(&u); err == nil && u.CallID == callID {
						updates = append(updates, u.Status)
					}
				case haip.TypeToolDone:
					if err := env.DecodePayload(&done); err != nil {
						t.Fatal(err)
					}
					return done.CallID == callID
				}
				return false
			})
			harness.AssertDense(t, tool, before+1)
			if done.Status != haip.ToolDoneOK || string(done.Result) != `{"result":5}` || len(updates) < 2 {
				t.Fatalf("TOOL_DONE %s %s after updates %v", done.Status, done.Result, updates)
			}

			// An error reply: a refused envelope is answered with an ERROR
			// naming it (on SSE and stream-half, built from the POST's
			// result), and the connection goes on.
			bad, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: haip.NewUUID(), Tool: "no such tool!"})
			if err != nil {
				t.Fatal(err)
			}
			errEnv := harness.ReadControl(t, c, haip.TypeError, 10*time.Second)
			var ep haip.ErrorPayload
			if err := errEnv.DecodePayload(&ep); err != nil {
				t.Fatal(err)
			}
			if ep.Code != haip.CodeProtocolViolation || ep.RelatedID != bad.ID || uint64(errEnv.Seq) != c.LastSeq() {
				t.Fatalf("ERROR %+v with seq %d, want PROTOCOL_VIOLATION about %s with seq %d", ep, errEnv.Seq, bad.ID, c.LastSeq())
			}

			// PING is answered with PONG, through Read on every transport.
			if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "n-" + tr}); err != nil {
				t.Fatal(err)
			}
			if pong := harness.ReadControl(t, c, haip.TypePong, 10*time.Second); !strings.Contains(string(pong.Payload), `"n-`+tr+`"`) {
				t.Fatalf("PONG %s", pong.Payload)
			}

			// A replay comes with the original seqs and leaves LastSeq be.
			last := c.LastSeq()
			to := haip.U64(3)
			if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypeReplayRequest, haip.ReplayRequestPayload{FromSeq: 1, ToSeq: &to}); err != nil {
				t.Fatal(err)
			}
			replayed := harness.ReadUntil(t, c, 10*time.Second, func(env *haip.Envelope) bool { return env.Seq == 3 })
			harness.AssertDense(t, replayed, 1)
			if c.LastSeq() != last {
				t.Fatalf("LastSeq %d after a replay, want %d", c.LastSeq(), last)
			}

			// Resume after a cut, on the next transport: dense from the
			// first seq of the answer, its whole text, nothing twice.
			start := c.LastSeq()
			if _, err := c.SendText(ctx, "resume me"); err != nil {
				t.Fatal(err)
			}
			first := harness.ReadUntil(t, c, 20*time.Second, func(env *haip.Envelope) bool { return uint64(env.Seq) >= start+5 })
			if err := c.CloseNow(); err != nil {
				t.Fatal(err)
			}
			from := c.LastSeq()
			next := all[(i+1)%len(all)]
			r := harness.Dial(t, e, client.Options{Token: tok, Transport: next, Session: c.Session(), LastRxSeq: &from, Credit: 4})
			if r.LastSeq() != from {
				t.Fatalf("resumed at %d, asked %d", r.LastSeq(), from)
			}
			rest := harness.ReadUntil(t, r, 20*time.Second, harness.IsRunFinished)
			whole := append(first, rest...)
			harness.AssertDense(t, whole, start+1)
			if text := harness.AnswerText(t, whole); text != demo.Answer("resume me") {
				t.Fatalf("answer across the cut %q", text)
			}

			// Dedupe drops what was already received (here a replay); the
			// PONG after it still comes.
			d := harness.Dial(t, e, client.Options{Token: tok, Transport: tr, Session: c.Session(), LastRxSeq: &from, Dedupe: true})
			harness.ReadUntil(t, d, 20*time.Second, harness.IsRunFinished)
			if _, err := d.Send(ctx, haip.ChannelSystem, haip.TypeReplayRequest, haip.ReplayRequestPayload{FromSeq: 1, ToSeq: &to}); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "after-replay"}); err != nil {
				t.Fatal(err)
			}
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			for {
				env, err := d.Read(rctx)
				if err != nil {
					t.Fatalf("waiting for PONG: %v", err)
				}
				if env.Type == haip.TypePong {
					break
				}
				if !client.IsControl(env.Type) {
					t.Fatalf("Dedupe let seq %d (%s) through again", env.Seq, env.Type)
				}
			}
			rcancel()

			testFlowControl(t, e, tok, tr)
		})
	}
}

// testFlowControl: with 2 messages of credit per channel, the edge sends
// the answer up to the first message that does not fit, one more for each
// message of credit granted by hand, and nothing else.
func testFlowControl(t *testing.T, e *harness.Edge, tok, tr string) {
	t.Helper()
	const credit = 2
	fc := harness.Dial(t, e, client.Options{Token: tok, Transport: tr, Credit: credit, ManualCredit: true})
	obs := harness.Dial(t, e, client.Options{Token: tok, Session: fc.Session(), NoFlowControl: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fc.SendText(ctx, "flow"); err != nil {
		t.Fatal(err)
	}
	// The whole answer, as a client without credit limits sees it.
	run := harness.ReadUntil(t, obs, 20*time.Second, harness.IsRunFinished)
	left := map[haip.Channel]int{}
	for _, ch := range haip.AllChannels() {
		left[ch] = credit
	}
	fits := func(from int) int { // how many of run[from:] the credit lets through
		n := from
		for n < len(run) && left[run[n].Channel] > 0 {
			left[run[n].Channel]--
			n++
		}
		return n
	}
	n := fits(0)
	if n == len(run) {
		t.Fatalf("the credit of %d per channel covers the whole answer (%d messages)", credit, len(run))
	}
	got := harness.ReadUntil(t, fc, 10*time.Second, func(env *haip.Envelope) bool { return env.Seq == run[n-1].Seq })
	harness.AssertDense(t, got, 1)

	// One more message of credit on the waiting message's channel.
	add := int64(1)
	if _, err := fc.Send(ctx, haip.ChannelSystem, haip.TypeFlowUpdate, haip.FlowUpdatePayload{Channel: run[n].Channel, AddMessages: &add}); err != nil {
		t.Fatal(err)
	}
	left[run[n].Channel] += int(add)
	m := fits(n)
	more := harness.ReadUntil(t, fc, 10*time.Second, func(env *haip.Envelope) bool { return env.Seq == run[m-1].Seq })
	harness.AssertDense(t, more, uint64(n)+1)

	// Nothing else comes: the next message waits for credit. (A Read cut
	// by its context closes the connection; that is fine here.)
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	for {
		env, err := fc.Read(wctx)
		if err != nil {
			if wctx.Err() == nil {
				t.Fatalf("read: %v", err)
			}
			break
		}
		if !client.IsControl(env.Type) {
			t.Fatalf("seq %d (%s) came without credit", env.Seq, env.Type)
		}
	}
	if fc.LastSeq() != uint64(run[m-1].Seq) {
		t.Fatalf("LastSeq %d, want %d", fc.LastSeq(), run[m-1].Seq)
	}
}

// A drain (Server.Shutdown) ends every connection with 1001 and the seq
// to resume from, on every transport: the WebSocket close frame, the SSE
// close comment, and on NDJSON streams (which carry no close reason) the
// SERVER_SHUTDOWN ERROR the edge sends before it closes.
func TestDrainCloseReason(t *testing.T) {
	t.Parallel()
	f := harness.New(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	want := map[string]websocket.StatusCode{
		client.TransportWebSocket:  websocket.StatusGoingAway,
		client.TransportSSE:        websocket.StatusGoingAway,
		client.TransportStream:     websocket.StatusGoingAway,
		client.TransportStreamHalf: websocket.StatusGoingAway,
	}
	conns := map[string]*client.Conn{}
	for _, tr := range client.Transports() {
		c := harness.Dial(t, e, client.Options{Token: tok, Transport: tr})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := c.SendText(ctx, "before the drain"); err != nil {
			t.Fatal(err)
		}
		cancel()
		harness.ReadUntil(t, c, 20*time.Second, harness.IsRunFinished)
		conns[tr] = c
	}
	e.Shutdown(t)
	for _, tr := range client.Transports() {
		c := conns[tr]
		err := harness.ReadEnd(t, c, 10*time.Second)
		code, reason := client.CloseStatus(err)
		if code != want[tr] {
			t.Errorf("%s: ended with %v (close %d %q), want close %d", tr, err, code, reason, want[tr])
			continue
		}
		if code != -1 && !strings.Contains(reason, fmt.Sprintf("resume from seq %d", c.LastSeq())) {
			t.Errorf("%s: close reason %q does not name seq %d", tr, reason, c.LastSeq())
		}
	}
}

// A connection whose token expires ends with 4002 on every transport: the
// close frame, the SSE close comment, or the AUTHENTICATION_FAILED ERROR
// an NDJSON stream ends with.
func TestTokenExpiredCloseReason(t *testing.T) {
	t.Parallel()
	f := harness.New(t, streams.Config{})
	e := f.EdgeWith(nil, edge.Config{}, func(d *edge.Deps) { d.Verifier = f.Verifier(time.Millisecond) })
	const ttl = 3 * time.Second
	conns := map[string]*client.Conn{}
	for _, tr := range client.Transports() {
		conns[tr] = harness.Dial(t, e, client.Options{Token: f.TokenTTL("alice", auth.RoleUser, ttl), Transport: tr})
	}
	for _, tr := range client.Transports() {
		err := harness.ReadEnd(t, conns[tr], ttl+10*time.Second)
		if code, reason := client.CloseStatus(err); code != client.StatusTokenExpired || !strings.Contains(reason, "token expired") {
			t.Errorf("%s: ended with %v (close %d %q), want close %d", tr, err, code, reason, client.StatusTokenExpired)
		}
	}
}

// The client's close codes are the edge's.
func TestCloseCodesMatchTheEdge(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		client websocket.StatusCode
		edge   edge.CloseCode
	}{
		{client.StatusSlowConsumer, edge.CloseSlowConsumer},
		{client.StatusHeartbeatTimeout, edge.CloseHeartbeatTimeout},
		{client.StatusTokenExpired, edge.CloseTokenExpired},
	} {
		if int(c.client) != int(c.edge) {
			t.Errorf("client close code %d, edge %d", c.client, c.edge)
		}
	}
}

// An unknown transport is refused before anything is dialled.
func TestUnknownTransport(t *testing.T) {
	t.Parallel()
	_, err := client.Dial(context.Background(), client.Options{URL: "ws://127.0.0.1:1/haip/websocket", Transport: "carrier-pigeon"})
	if err == nil || !strings.Contains(err.Error(), "carrier-pigeon") {
		t.Fatalf("got %v", err)
	}
}
