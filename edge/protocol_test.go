package edge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// rawWS is a WebSocket client that writes frames exactly as a test builds
// them. Every frame it reads must be a text frame holding an envelope that
// haip.Decode accepts, on one of the five standard channels, with one of
// the 22 types: the official SDK drops anything else.
type rawWS struct {
	t       *testing.T
	ws      *websocket.Conn
	session string
	// seq is the last seq env used; envelopes are numbered 1, 2, 3, … by
	// default, Date.now() like the official SDK when sdkSeq is set.
	seq    uint64
	sdkSeq bool
}

// rawDial opens a WebSocket to url (which carries the token) without
// saying anything, on a fresh uuid session.
func rawDial(t *testing.T, url string) *rawWS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	ws.SetReadLimit(16 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &rawWS{t: t, ws: ws, session: haip.NewUUID()}
}

// tokenURL is the edge's WebSocket URL with tok in the query, as the
// official SDK builds it.
func tokenURL(e *testEdge, tok string) string { return e.WS + "?token=" + tok }

func (r *rawWS) nextSeq() uint64 {
	if r.sdkSeq {
		return uint64(time.Now().UnixMilli())
	}
	r.seq++
	return r.seq
}

// env builds an envelope on the client's session with the next seq.
func (r *rawWS) env(ch haip.Channel, typ haip.Type, payload any) *haip.Envelope {
	r.t.Helper()
	env, err := haip.New(r.session, ch, typ, payload)
	if err != nil {
		r.t.Fatalf("build %s: %v", typ, err)
	}
	env.Seq = haip.U64(r.nextSeq())
	return env
}

// write sends one frame as is.
func (r *rawWS) write(typ websocket.MessageType, data []byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.ws.Write(ctx, typ, data); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawWS) sendEnv(env *haip.Envelope) {
	r.t.Helper()
	r.write(websocket.MessageText, encode(r.t, env))
}

// send builds, numbers and sends one envelope, and returns it.
func (r *rawWS) send(ch haip.Channel, typ haip.Type, payload any) *haip.Envelope {
	r.t.Helper()
	env := r.env(ch, typ, payload)
	r.sendEnv(env)
	return env
}

// helloPayload is an HAI payload shaped like the official SDK's.
func helloPayload() haip.HelloPayload {
	credits, bytes := int64(10), int64(1<<20)
	binary, runs := true, 5
	return haip.HelloPayload{
		HaipVersion:  haip.Version,
		AcceptMajor:  []int{haip.Major},
		AcceptEvents: haip.AllTypes(),
		Capabilities: &haip.Capabilities{
			BinaryFrames:      &binary,
			FlowControl:       &haip.FlowControlCaps{InitialCreditMessages: &credits, InitialCreditBytes: &bytes},
			MaxConcurrentRuns: &runs,
		},
	}
}

// handshake sends HAI and waits for the server's; it returns the server
// HAI and what came before it.
func (r *rawWS) handshake() (*haip.Envelope, []*haip.Envelope) {
	r.t.Helper()
	p := helloPayload()
	if !r.sdkSeq {
		// A client that numbers from 1 has its advertised credit counted,
		// and these tests do not grant more: advertise plenty.
		plenty := int64(1_000_000)
		p.Capabilities.FlowControl.InitialCreditMessages = &plenty
	}
	r.send(haip.ChannelSystem, haip.TypeHAI, p)
	return r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeHAI })
}

// read returns the next envelope, checked; err is the transport error
// that ended the connection.
func (r *rawWS) read(ctx context.Context) (*haip.Envelope, error) {
	r.t.Helper()
	typ, data, err := r.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	return checkStandard(r.t, typ, data), nil
}

// checkStandard fails the test unless data is what the official SDK can
// take: a text frame, an envelope haip.Decode accepts, a standard channel
// and one of the 22 types.
func checkStandard(t *testing.T, typ websocket.MessageType, data []byte) *haip.Envelope {
	t.Helper()
	if typ != websocket.MessageText {
		t.Fatalf("edge sent a %v frame: %q", typ, data)
	}
	env, err := haip.Decode(data)
	if err != nil {
		t.Fatalf("edge sent an envelope haip.Decode refuses: %v: %s", err, data)
	}
	if !env.Channel.Standard() || !env.Type.Known() {
		t.Fatalf("edge sent channel %q type %q: %s", env.Channel, env.Type, data)
	}
	return env
}

// expect reads until match holds, within the deadline. It returns the
// matching envelope and every envelope skipped on the way.
func (r *rawWS) expect(within time.Duration, match func(*haip.Envelope) bool) (*haip.Envelope, []*haip.Envelope) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var skipped []*haip.Envelope
	for {
		env, err := r.read(ctx)
		if err != nil {
			r.t.Fatalf("read after %d envelopes (%s): %v", len(skipped), types(skipped), err)
		}
		if match(env) {
			return env, skipped
		}
		skipped = append(skipped, env)
	}
}

// expectError reads until an ERROR arrives and returns its payload.
func (r *rawWS) expectError(within time.Duration) haip.ErrorPayload {
	r.t.Helper()
	env, _ := r.expect(within, func(e *haip.Envelope) bool { return e.Type == haip.TypeError })
	return harness.ErrorPayload(r.t, env)
}

// expectClose reads until the edge closes the connection and returns the
// close status and the envelopes read before it.
func (r *rawWS) expectClose(within time.Duration) (websocket.StatusCode, []*haip.Envelope) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got []*haip.Envelope
	for {
		env, err := r.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				r.t.Fatalf("edge did not close within %s; got %s", within, types(got))
			}
			return websocket.CloseStatus(err), got
		}
		got = append(got, env)
	}
}

// pingPong sends a PING and reads until its PONG: a barrier behind which
// the edge has handled everything sent before. It fails on an ERROR read
// on the way and returns the other envelopes read.
func (r *rawWS) pingPong(nonce string) []*haip.Envelope {
	r.t.Helper()
	ping := r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: nonce})
	pong, skipped := r.expect(10*time.Second, func(e *haip.Envelope) bool {
		return e.Type == haip.TypePong && pingNonce(r.t, e) == nonce
	})
	if pong.Channel != haip.ChannelSystem || pong.Session != r.session {
		r.t.Fatalf("PONG on %s session %s, want SYSTEM %s", pong.Channel, pong.Session, r.session)
	}
	for _, e := range skipped {
		if e.Type == haip.TypeError {
			r.t.Fatalf("ERROR before the PONG to %s: %s", ping.ID, e.Payload)
		}
	}
	return skipped
}

func pingNonce(t *testing.T, e *haip.Envelope) string {
	t.Helper()
	var p haip.PingPayload
	if err := e.DecodePayload(&p); err != nil {
		t.Fatal(err)
	}
	return p.Nonce
}

func encode(t *testing.T, env *haip.Envelope) []byte {
	t.Helper()
	data, err := haip.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mutate re-encodes env as a JSON object changed by fn, to build
// envelopes that haip.Encode would not write.
func mutate(t *testing.T, env *haip.Envelope, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(encode(t, env), &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func types(envs []*haip.Envelope) string {
	s := make([]string, len(envs))
	for i, e := range envs {
		s[i] = string(e.Type)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// logLen is the highest seq written to a session's log in direction d.
func logLen(t *testing.T, f *fabric, session string, d streams.Direction) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := f.Log().Bounds(ctx, session, d)
	if err != nil {
		t.Fatal(err)
	}
	return b.Last.Seq
}

// logEntries reads a session's log in direction d from its start.
func logEntries(t *testing.T, f *fabric, session string, d streams.Direction) []streams.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entries, _, err := f.Log().Read(ctx, session, d, 1, 1000, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// Malformed or misplaced envelopes get an ERROR with the right code, and
// related_id when the offending id was a valid uuid; the connection stays
// usable (a PING after gets its PONG).
func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	url := tokenURL(e, f.Token("alice", auth.RoleUser))

	type frame struct {
		data    []byte
		related string // the id the ERROR must name; "" for none
	}
	sendsEnv := func(env *haip.Envelope, t *testing.T) frame { return frame{encode(t, env), env.ID} }
	cases := []struct {
		name      string
		beforeHAI bool // send the frame before the handshake
		build     func(t *testing.T, r *rawWS) frame
		code      haip.Code
	}{
		{name: "message before HAI", beforeHAI: true, code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				return sendsEnv(r.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "early"}), t)
			}},
		{name: "invalid JSON before HAI", beforeHAI: true, code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame { return frame{data: []byte(`{"id": "x", `)} }},
		{name: "invalid JSON", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame { return frame{data: []byte(`{"id": "x", `)} }},
		{name: "not an object", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame { return frame{data: []byte(`["PING"]`)} }},
		{name: "missing ts", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				env := r.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{})
				return frame{mutate(t, env, func(m map[string]any) { delete(m, "ts") }), env.ID}
			}},
		{name: "missing payload field", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				env := r.env(haip.ChannelUser, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "x"})
				return frame{mutate(t, env, func(m map[string]any) { delete(m["payload"].(map[string]any), "message_id") }), env.ID}
			}},
		{name: "seq as JSON number", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				env := r.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{})
				return frame{mutate(t, env, func(m map[string]any) { m["seq"] = 7 }), env.ID}
			}},
		{name: "channel audio-in", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				env := r.env(haip.ChannelAudioIn, haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: haip.NewUUID(), Mime: "audio/opus", Data: "AAAA"})
				return frame{mutate(t, env, func(m map[string]any) { m["channel"] = "audio-in" }), env.ID}
			}},
		{name: "id not a uuid", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				env := r.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{})
				return frame{mutate(t, env, func(m map[string]any) { m["id"] = "not-a-uuid" }), ""}
			}},
		{name: "unknown type", code: haip.CodeUnsupportedType,
			build: func(t *testing.T, r *rawWS) frame {
				env := r.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{})
				return frame{mutate(t, env, func(m map[string]any) { m["type"] = "NOPE" }), env.ID}
			}},
		{name: "unknown field with crit", code: haip.CodeUnsupportedType,
			build: func(t *testing.T, r *rawWS) frame {
				env := r.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{})
				return frame{mutate(t, env, func(m map[string]any) { m["crit"] = true; m["signature"] = "x" }), env.ID}
			}},
		{name: "TOOL_SCHEMA of a tool no worker serves", code: haip.CodeToolNotFound,
			build: func(t *testing.T, r *rawWS) frame {
				return sendsEnv(r.env(haip.ChannelUser, haip.TypeToolSchema, haip.ToolSchemaPayload{Tool: "x", Schema: json.RawMessage(`{}`)}), t)
			}},
		{name: "second HAI", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				return sendsEnv(r.env(haip.ChannelSystem, haip.TypeHAI, helloPayload()), t)
			}},
		{name: "another session after the handshake", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				env := r.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{})
				env.Session = haip.NewUUID()
				return sendsEnv(env, t)
			}},
		{name: "user on channel AGENT", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				return sendsEnv(r.env(haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "x"}), t)
			}},
		{name: "user on channel AUDIO_OUT", code: haip.CodeProtocolViolation,
			build: func(t *testing.T, r *rawWS) frame {
				return sendsEnv(r.env(haip.ChannelAudioOut, haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: haip.NewUUID(), Mime: "audio/opus", Data: "AAAA"}), t)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := rawDial(t, url)
			if !tc.beforeHAI {
				r.handshake()
			}
			fr := tc.build(t, r)
			r.write(websocket.MessageText, fr.data)
			ep := r.expectError(5 * time.Second)
			if ep.Code != tc.code || ep.RelatedID != fr.related || ep.Message == "" {
				t.Fatalf("ERROR %+v, want code %s related_id %q", ep, tc.code, fr.related)
			}
			if tc.beforeHAI {
				hai, _ := r.handshake()
				if hai.Session != r.session {
					t.Fatalf("server HAI on session %s, want %s", hai.Session, r.session)
				}
			}
			r.pingPong("still-usable")
		})
	}
}

// Fatal cases end the connection with a close code saying why.
func TestProtocolClose(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	tok := f.Token("alice", auth.RoleUser)
	cases := []struct {
		name  string
		cfg   edge.Config
		query string
		act   func(t *testing.T, r *rawWS)
		code  websocket.StatusCode
		err   haip.Code // the ERROR that must come before the close; "" for none
	}{
		{name: "HAI with accept_major 2", code: websocket.StatusPolicyViolation, err: haip.CodeVersionIncompatible,
			act: func(t *testing.T, r *rawWS) {
				p := helloPayload()
				p.AcceptMajor = []int{2}
				r.send(haip.ChannelSystem, haip.TypeHAI, p)
			}},
		{name: "binary frame", code: websocket.StatusUnsupportedData, err: haip.CodeProtocolViolation,
			act: func(t *testing.T, r *rawWS) {
				r.handshake()
				r.write(websocket.MessageBinary, []byte{0, 1, 2, 3})
			}},
		{name: "binary frame before HAI", code: websocket.StatusUnsupportedData, err: haip.CodeProtocolViolation,
			act: func(t *testing.T, r *rawWS) { r.write(websocket.MessageBinary, []byte("{}")) }},
		{name: "frame over MaxMessageBytes", cfg: edge.Config{MaxMessageBytes: 4096}, code: websocket.StatusMessageTooBig,
			act: func(t *testing.T, r *rawWS) {
				r.handshake()
				r.pingPong(strings.Repeat("n", 3000)) // under the limit: fine
				r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: strings.Repeat("n", 5000)})
			}},
		{name: "no HAI within HandshakeTimeout", cfg: edge.Config{HandshakeTimeout: edge.Duration(300 * time.Millisecond)},
			code: websocket.StatusPolicyViolation, err: haip.CodeProtocolViolation,
			act: func(t *testing.T, r *rawWS) {}},
		{name: "HAI naming another session than ?session=", query: "&session=" + haip.NewUUID(),
			code: websocket.StatusPolicyViolation, err: haip.CodeProtocolViolation,
			act: func(t *testing.T, r *rawWS) { r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload()) }},
	}
	for _, tc := range cases {
		e := f.Edge(tc.cfg)
		url := tokenURL(e, tok) + tc.query
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := rawDial(t, url)
			tc.act(t, r)
			code, got := r.expectClose(10 * time.Second)
			if code != tc.code {
				t.Fatalf("close status %v, want %v (read %s)", code, tc.code, types(got))
			}
			if tc.err == "" {
				return
			}
			for _, env := range got {
				if env.Type == haip.TypeError {
					if ep := harness.ErrorPayload(t, env); ep.Code == tc.err {
						return
					}
				}
			}
			t.Fatalf("no ERROR %s before the close; read %s", tc.err, types(got))
		})
	}
}

// Heartbeats: a peer that stops answering PINGs is dropped with 4001; a
// client that answers them stays connected, over each transport that
// carries PINGs.
func TestProtocolHeartbeat(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	const interval = 200 * time.Millisecond
	cfg := edge.Config{HeartbeatInterval: edge.Duration(interval), HeartbeatTimeout: edge.Duration(interval)}
	tok := f.Token("alice", auth.RoleUser)
	eMute, eQuiet, eLive := f.Edge(cfg), f.Edge(cfg), f.Edge(cfg)

	t.Run("reads but never answers PING", func(t *testing.T) {
		t.Parallel()
		r := rawDial(t, tokenURL(eMute, tok))
		r.handshake()
		code, got := r.expectClose(10 * time.Second)
		pings := 0
		for _, env := range got {
			if env.Type == haip.TypePing {
				pings++
			}
		}
		if code != websocket.StatusCode(edge.CloseHeartbeatTimeout) || pings == 0 {
			t.Fatalf("close %v after %d PINGs, want %d after at least one", code, pings, edge.CloseHeartbeatTimeout)
		}
	})
	t.Run("never reads nor sends", func(t *testing.T) {
		t.Parallel()
		r := rawDial(t, tokenURL(eQuiet, tok))
		r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload())
		testkit.Eventually(t, 5*time.Second, func() bool { return eQuiet.Srv.Stats(context.Background()).ActiveConnections == 1 }, "never counted")
		testkit.Eventually(t, 20*time.Second, func() bool { return eQuiet.Srv.Stats(context.Background()).ActiveConnections == 0 },
			"a silent client that never reads is still connected")
	})
	for _, tr := range client.Transports() {
		if tr == client.TransportSSE {
			// SSE's keep-alives are comments, not PINGs (its client
			// cannot send on the stream): no PING to answer there.
			continue
		}
		t.Run("client.Conn answers and stays/"+tr, func(t *testing.T) {
			t.Parallel()
			c := harness.Dial(t, eLive, client.Options{Token: tok, Transport: tr})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// PINGs keep coming, so this ends once both hold.
			start := time.Now()
			for pings := 0; pings < 3 || time.Since(start) <= 4*interval; {
				env, err := c.Read(ctx) // answers each PING
				if err != nil {
					t.Fatalf("after %d PINGs and %s: %v", pings, time.Since(start), err)
				}
				if env.Type == haip.TypePing {
					pings++
				}
			}
			if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "alive"}); err != nil {
				t.Fatal(err)
			}
			for {
				env, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("waiting for PONG: %v", err)
				}
				if env.Type == haip.TypePong && pingNonce(t, env) == "alive" {
					return
				}
			}
		})
	}
}

// With StrictSeq a client seq must be the previous one plus one; without
// it (the default) the official SDK's Date.now() seqs, equal or jumping,
// are accepted and every message is stored.
func TestProtocolStrictSeq(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	tok := f.Token("alice", auth.RoleUser)
	strict, lax := f.Edge(edge.Config{StrictSeq: true}), f.Edge(edge.Config{})

	t.Run("on", func(t *testing.T) {
		t.Parallel()
		r := rawDial(t, tokenURL(strict, tok))
		r.handshake() // seq 1
		r.pingPong("2")
		r.pingPong("3")
		r.seq = 4 // skip 4
		bad := r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "5"})
		ep := r.expectError(5 * time.Second)
		if ep.Code != haip.CodeSeqViolation || ep.RelatedID != bad.ID {
			t.Fatalf("ERROR %+v, want SEQ_VIOLATION related to %s", ep, bad.ID)
		}
		r.seq = 3
		r.pingPong("4") // the expected seq still works
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		r := rawDial(t, tokenURL(lax, tok))
		r.sdkSeq = true
		now := uint64(time.Now().UnixMilli())
		hello := r.env(haip.ChannelSystem, haip.TypeHAI, helloPayload())
		hello.Seq = haip.U64(now)
		r.sendEnv(hello)
		r.expect(5*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeHAI })
		msgID := haip.NewUUID()
		for _, m := range []struct {
			seq uint64
			typ haip.Type
			p   any
		}{
			{now, haip.TypePing, haip.PingPayload{Nonce: "same"}},
			{now, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID, Text: "a"}},
			{now, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: msgID, Text: "b"}},
			{now + 5000, haip.TypePing, haip.PingPayload{Nonce: "jump"}},
			{now + 5000, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msgID}},
		} {
			ch := haip.ChannelUser
			if m.typ == haip.TypePing {
				ch = haip.ChannelSystem
			}
			env := r.env(ch, m.typ, m.p)
			env.Seq = haip.U64(m.seq)
			r.sendEnv(env)
		}
		r.pingPong("barrier") // fails on any ERROR before it
		if n := logLen(t, f, r.session, streams.In); n != 3 {
			t.Fatalf("%d messages stored, want 3 (START, PART, END)", n)
		}
	})
}

// A client message sent twice (same id: a retry after a drop) is stored
// once and opens one run.
func TestProtocolDedupeByID(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	r := rawDial(t, tokenURL(e, f.Token("alice", auth.RoleUser)))
	r.handshake()
	msgID := haip.NewUUID()
	start := encode(t, r.env(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID, Text: "only once"}))
	end := encode(t, r.env(haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msgID}))
	for range 2 {
		r.write(websocket.MessageText, start)
		r.write(websocket.MessageText, end)
	}
	seen := r.pingPong("after the retry")
	if n := logLen(t, f, r.session, streams.In); n != 2 {
		t.Fatalf("%d messages stored, want 2", n)
	}
	// A second message, and its whole run, bound the first one's run: if
	// the retry had opened another, it would show up before this ends.
	second := haip.NewUUID()
	r.send(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: second, Text: "second"})
	r.send(haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: second})
	finished := 0
	for _, env := range seen {
		if env.Type == haip.TypeRunFinished {
			finished++
		}
	}
	for finished < 2 {
		env, skipped := r.expect(15*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeRunFinished })
		seen = append(append(seen, skipped...), env)
		finished++
	}
	started := map[string]int{}
	for _, env := range seen {
		if env.Type == haip.TypeRunStarted {
			started[env.RunID]++
		}
	}
	if len(started) != 2 {
		t.Fatalf("runs started %v, want one for each of the 2 messages", started)
	}
	for id, n := range started {
		if n != 1 {
			t.Fatalf("run %s started %d times", id, n)
		}
	}
}

// MaxConnections refuses further connections before the upgrade with 503;
// a slot freed by a close can be used again.
func TestProtocolMaxConnections(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{MaxConnections: 2})
	c1 := f.Dial(e, client.Options{})
	f.Dial(e, client.Options{})
	_, err := f.TryDial(e, client.Options{})
	var he *client.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("third dial: %v, want HTTP 503", err)
	}
	body := decodeHTTPError(t, []byte(he.Body))
	if body.Code != string(haip.CodeTooManyConnections) || body.Error == "" || body.Message == "" {
		t.Fatalf("body %+v, want code TOO_MANY_CONNECTIONS", body)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return e.Srv.Stats(context.Background()).ActiveConnections < 2 },
		"closed connection still counted")
	c3 := f.Dial(e, client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c3.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "x"}); err != nil {
		t.Fatal(err)
	}
	harness.ReadControl(t, c3, haip.TypePong, 5*time.Second)
}

// Control envelopes carry ack: the highest client seq received so far.
func TestProtocolCumulativeAck(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	r := rawDial(t, tokenURL(e, f.Token("alice", auth.RoleUser)))
	hai, _ := r.handshake() // seq 1
	checkAck(t, hai, 1)
	for _, step := range []struct{ seq, ack uint64 }{{7, 7}, {3, 7}, {8, 8}} {
		r.seq = step.seq - 1
		nonce := fmt.Sprint(step.seq)
		r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: nonce})
		pong, _ := r.expect(5*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypePong })
		if got := pingNonce(t, pong); got != nonce {
			t.Fatalf("PONG nonce %q, want %q", got, nonce)
		}
		checkAck(t, pong, step.ack)
	}
}

func checkAck(t *testing.T, env *haip.Envelope, want uint64) {
	t.Helper()
	if env.Ack == nil || uint64(*env.Ack) != want {
		t.Fatalf("%s has ack %v, want %d", env.Type, env.Ack, want)
	}
}

// httpErrorBody is the JSON body of a refused request.
type httpErrorBody struct {
	Error   string         `json:"error"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

func decodeHTTPError(t *testing.T, body []byte) httpErrorBody {
	t.Helper()
	var b httpErrorBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("error body is not JSON: %v: %q", err, body)
	}
	return b
}

// The plain HTTP endpoints around the WebSocket.
func TestProtocolHTTPEndpoints(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	// The connection counted below is not read while the parallel
	// subtests wait for their turn: no heartbeat may cut it meanwhile.
	e := f.Edge(edge.Config{HeartbeatInterval: edge.Duration(time.Hour)})
	fresh := f.Edge(edge.Config{})   // never connected to
	c := f.Dial(e, client.Options{}) // one connection and one session to count
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "x"}); err != nil {
		t.Fatal(err)
	}
	harness.ReadControl(t, c, haip.TypePong, 5*time.Second)

	get := func(t *testing.T, path string) (int, http.Header, []byte) {
		t.Helper()
		resp := harness.OperatorGet(t, e.Base, path) // the operator's token opens every one
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, body
	}
	jsonBody := func(t *testing.T, h http.Header, body []byte) map[string]any {
		t.Helper()
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("Content-Type %q", ct)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, body)
		}
		return m
	}
	t.Run("health", func(t *testing.T) {
		t.Parallel()
		status, h, body := get(t, "/health")
		if m := jsonBody(t, h, body); status != http.StatusOK || m["status"] != "ok" {
			t.Fatalf("HTTP %d %s", status, body)
		}
	})
	t.Run("stats", func(t *testing.T) {
		t.Parallel()
		status, h, body := get(t, "/stats")
		m := jsonBody(t, h, body)
		if status != http.StatusOK {
			t.Fatalf("HTTP %d %s", status, body)
		}
		for _, k := range []string{"activeConnections", "totalConnections", "sessions", "messagesPerSecond", "uptime"} {
			if _, ok := m[k].(float64); !ok {
				t.Fatalf("%s is %v, want a number: %s", k, m[k], body)
			}
		}
		if m["activeConnections"].(float64) < 1 || m["totalConnections"].(float64) < 1 || m["sessions"].(float64) < 1 {
			t.Fatalf("counts too low: %s", body)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		t.Parallel()
		status, _, body := get(t, "/metrics")
		if status != http.StatusOK || !strings.Contains(string(body), "haip_edge_connections_total") {
			t.Fatalf("HTTP %d, no haip_edge_connections_total in:\n%s", status, body)
		}
	})
	t.Run("metrics before any connection", func(t *testing.T) {
		t.Parallel()
		resp := harness.OperatorGet(t, fresh.Base, "/metrics")
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "haip_edge_connections_total") {
			t.Fatalf("no haip_edge_connections_total on a fresh edge:\n%s", body)
		}
	})
	t.Run("unknown path", func(t *testing.T) {
		t.Parallel()
		status, h, body := get(t, "/nope")
		jsonBody(t, h, body)
		b := decodeHTTPError(t, body)
		if status != http.StatusNotFound || b.Error == "" || b.Code == "" || b.Message == "" {
			t.Fatalf("HTTP %d %s, want 404 with {error, code, message}", status, body)
		}
	})
}
