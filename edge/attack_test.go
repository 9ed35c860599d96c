package edge_test

// Regression suite of attacks on a real edge: each test reproduces one
// way a user tried to reach another user, outlive a credential, or make
// the edge pay more than a request is worth, and checks it is refused.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// sessionExists reads a session's record.
func sessionExists(t *testing.T, f *fabric, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sessions, err := streams.OpenSessions(ctx, f.JS)
	if err != nil {
		t.Fatal(err)
	}
	_, found, err := sessions.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// Session ids can be neither probed nor squatted: a read of another
// user's session and of a free id answer alike and create nothing; a
// request refused for a full edge claims nothing; an agent cannot write
// into a session no user has opened.
func TestAttackSessionSquatting(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	aliceTok, bobTok := f.Token("alice", auth.RoleUser), f.Token("bob", auth.RoleUser)
	alice := rawDial(t, tokenURL(e, aliceTok))
	alice.handshake()

	t.Run("reads tell a taken id from a free one by nothing, and create nothing", func(t *testing.T) {
		free := haip.NewUUID()
		st1, b1 := runsCall(t, e, bobTok, http.MethodGet, alice.session+"/runs")
		st2, b2 := runsCall(t, e, bobTok, http.MethodGet, free+"/runs")
		norm := func(b []byte, id string) string { return strings.ReplaceAll(string(b), id, "ID") }
		if st1 != http.StatusNotFound || st1 != st2 || norm(b1, alice.session) != norm(b2, free) {
			t.Fatalf("taken id: %d %s; free id: %d %s; want the same 404", st1, b1, st2, b2)
		}
		if !strings.Contains(string(b1), string(haip.CodeSessionNotFound)) {
			t.Fatalf("answer %s, want SESSION_NOT_FOUND", b1)
		}
		if st, _ := postCancel(t, e, bobTok, free, haip.NewUUID()); st != http.StatusNotFound {
			t.Fatalf("cancel in a free session: %d, want 404", st)
		}
		if sessionExists(t, f, free) {
			t.Fatal("a read created the session")
		}
		// The id is still free for whoever opens it.
		carol := rawDial(t, tokenURL(e, f.Token("carol", auth.RoleUser)))
		carol.session = free
		carol.handshake()
	})

	t.Run("a request refused for a full edge claims nothing", func(t *testing.T) {
		full := f.Edge(edge.Config{MaxConnections: 1})
		first := rawDial(t, tokenURL(full, aliceTok))
		first.handshake()
		free := haip.NewUUID()
		status, body, raw := refusal(t, tokenURL(full, bobTok)+"&session="+free, nil)
		if status != http.StatusServiceUnavailable || body.Code != string(haip.CodeTooManyConnections) {
			t.Fatalf("HTTP %d %s, want 503", status, raw)
		}
		if sessionExists(t, f, free) {
			t.Fatal("a refused request claimed its ?session=")
		}
	})

	t.Run("an agent cannot plant messages in a session nobody opened", func(t *testing.T) {
		free := haip.NewUUID()
		agentTok := f.Token("svc", auth.RoleAgent)
		plant, err := haip.New(free, haip.ChannelAgent, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: haip.NewUUID(), Text: "planted"})
		if err != nil {
			t.Fatal(err)
		}
		status, pr := post(t, e.Base+"/haip/messages", agentTok, nil, encode(t, plant))
		if status == http.StatusOK && (len(pr.Results) != 1 || pr.Results[0].Error == nil || pr.Results[0].Error.Code != haip.CodeSessionNotFound) {
			t.Fatalf("POST as agent into a free session: %d %+v, want SESSION_NOT_FOUND", status, pr)
		}
		r := rawDial(t, tokenURL(e, agentTok))
		r.session = free
		r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload())
		code, got := r.expectClose(10 * time.Second)
		if code != websocket.StatusPolicyViolation || len(got) == 0 || harness.ErrorPayload(t, got[0]).Code != haip.CodeSessionNotFound {
			t.Fatalf("agent HAI into a free session: close %v after %s, want SESSION_NOT_FOUND then 1008", code, types(got))
		}
		if sessionExists(t, f, free) || logLen(t, f, free, streams.Out) != 0 {
			t.Fatal("the agent's attempt left a trace")
		}
		// Its first user finds it empty and theirs.
		u := rawDial(t, tokenURL(e, bobTok))
		u.session = free
		u.handshake()
		if n := logLen(t, f, free, streams.Out); n != 0 {
			t.Fatalf("%d messages waiting in a new session", n)
		}
	})
}

// A connection ends when its token expires (plus the verifier's leeway),
// with close 4002 and an ERROR saying to come back with a fresh token; an
// SSE stream ends the same way.
func TestAttackTokenOutlivesExpiry(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.EdgeWith(nil, edge.Config{}, func(d *edge.Deps) { d.Verifier = f.Verifier(time.Millisecond) })
	short, err := f.Signer.Mint(auth.MintOptions{Subject: "alice", Role: auth.RoleUser, TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second)

	r := rawDial(t, e.WS+"?token="+short)
	r.handshake()
	r.pingPong("before expiry")
	code, got := r.expectClose(15 * time.Second)
	if code != websocket.StatusCode(edge.CloseTokenExpired) {
		t.Fatalf("close %v after %s, want %d", code, types(got), edge.CloseTokenExpired)
	}
	if time.Now().Before(exp) {
		t.Fatalf("closed before the token expired")
	}
	if len(got) == 0 || got[len(got)-1].Type != haip.TypeError || harness.ErrorPayload(t, got[len(got)-1]).Code != haip.CodeAuthenticationFailed {
		t.Fatalf("closed after %s, want an AUTHENTICATION_FAILED ERROR last", types(got))
	}

	short, err = f.Signer.Mint(auth.MintOptions{Subject: "alice", Role: auth.RoleUser, TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, e.Base+"/haip/sse?session="+haip.NewUUID()+"&token="+short, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE: HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	var last string
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			last = line
		}
	}
	if sctx.Err() != nil {
		t.Fatal("the SSE stream outlived its token")
	}
	if !strings.HasPrefix(last, ": close 4002 token expired") {
		t.Fatalf("SSE stream ended with %q, want the close comment 4002", last)
	}
}

// A client that reads everything promptly but sends control requests in
// a burst is answered in order, not cut as slow; one that never reads
// what it asks for is cut as a slow consumer (the right reason).
func TestAttackControlBurst(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{WriteTimeout: edge.Duration(time.Second)})
	tok := f.Token("alice", auth.RoleUser)

	r := rawDial(t, tokenURL(e, tok))
	r.handshake()
	const burst = 300
	var frames [][]byte
	for i := range burst {
		frames = append(frames, encode(t, r.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "n" + strconv.Itoa(i)})))
	}
	writeErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, b := range frames {
			if err := r.ws.Write(ctx, websocket.MessageText, b); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	for i := range burst {
		pong, skipped := r.expect(20*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypePong })
		for _, s := range skipped {
			if s.Type == haip.TypeError {
				t.Fatalf("ERROR during the burst: %s", s.Payload)
			}
		}
		if got, want := pingNonce(t, pong), "n"+strconv.Itoa(i); got != want {
			t.Fatalf("PONG %d answers %q, want %q", i, got, want)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("burst write: %v", err)
	}
	r.pingPong("still open")

	// A client that never reads is slow, and told so.
	q := rawDial(t, tokenURL(e, tok))
	q.handshake()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ping := encode(t, q.env(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: strings.Repeat("x", 1000)}))
	for i := 0; i < 200_000; i++ {
		if err := q.ws.Write(ctx, websocket.MessageText, ping); err != nil {
			break // the edge stopped reading, then closed
		}
	}
	// Its socket buffers are full, so the close frame may not reach it;
	// the edge counts it as what it is.
	code, _ := q.expectClose(30 * time.Second)
	if code != websocket.StatusCode(edge.CloseSlowConsumer) && code != -1 {
		t.Fatalf("non-reading client closed with %v, want %d", code, edge.CloseSlowConsumer)
	}
	if n := e.Srv.Stats(ctx).SlowConsumerDisconnect; n != 1 {
		t.Fatalf("%d slow-consumer disconnects, want 1 (the client that did not read)", n)
	}
}

// fillBig stores n TOOL_DONE envelopes of size bytes each in a session's
// outbound log, as a user's own large tool results would be.
func fillBig(t *testing.T, f *fabric, session string, n, size int) {
	t.Helper()
	lg := f.Log()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	blob, _ := json.Marshal(map[string]string{"echo": strings.Repeat("x", size)})
	for range n {
		env, err := haip.New(session, haip.ChannelAgent, haip.TypeToolDone, haip.ToolDonePayload{CallID: haip.NewUUID(), Status: haip.ToolDoneOK, Result: blob})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lg.AppendEnvelope(ctx, session, streams.Out, env); err != nil {
			t.Fatal(err)
		}
	}
}

// A small REPLAY_REQUEST cannot make the edge build or send more than a
// bounded amount: a POST of many replays answers at most REPLAY_MAX_BYTES
// (and says where to go on), and replays over a WebSocket spend the
// client's byte credit and queue one behind the other.
func TestAttackReplayAmplification(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	r := rawDial(t, tokenURL(e, tok))
	r.handshake()
	const big, n = 500 << 10, 12 // 6 MB of the user's own results
	fillBig(t, f, r.session, n, big)

	t.Run("POST", func(t *testing.T) {
		var reqs [][]byte
		for range 10 {
			env, _ := haip.New(r.session, haip.ChannelSystem, haip.TypeReplayRequest, haip.ReplayRequestPayload{FromSeq: 1})
			reqs = append(reqs, encode(t, env))
		}
		body := bytes.Join(reqs, []byte("\n"))
		req, _ := http.NewRequest(http.MethodPost, e.Base+"/haip/messages", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			t.Fatal(err)
		}
		// Before: 10 × 6 MB. Now: the budget (1 MiB), plus the one
		// message that may cross it, plus the per-envelope results.
		if len(answer) > edge.DefaultMaxReplayBytes+2*big {
			t.Fatalf("%d request bytes answered with %d bytes", len(body), len(answer))
		}
		t.Logf("a POST of %d bytes (10 replays of a %d-byte log) answered with %d bytes", len(body), n*big, len(answer))
		var pr edge.PostResponse
		if err := json.Unmarshal(answer, &pr); err != nil {
			t.Fatal(err)
		}
		first := pr.Results[0]
		if first.Status != "accepted" || len(first.Replies) == 0 || first.NextSeq == 0 {
			t.Fatalf("first replay: %d replies, next_seq %d, status %s", len(first.Replies), first.NextSeq, first.Status)
		}
		// The rest of the range is there for the asking, from next_seq.
		env, _ := haip.New(r.session, haip.ChannelSystem, haip.TypeReplayRequest, haip.ReplayRequestPayload{FromSeq: haip.U64(first.NextSeq)})
		if _, more := post(t, e.Base+"/haip/messages", tok, nil, encode(t, env)); len(more.Results) != 1 || len(more.Results[0].Replies) == 0 {
			t.Fatalf("asking again from next_seq: %+v", more)
		}
	})

	t.Run("WebSocket", func(t *testing.T) {
		// The client granted 1 MiB of byte credit in its HAI and no more.
		for range 10 {
			r.send(haip.ChannelSystem, haip.TypeReplayRequest, haip.ReplayRequestPayload{FromSeq: 1})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		received, limited := 0, 0
		for {
			typ, data, err := r.ws.Read(ctx)
			if err != nil {
				break // the quiet period is over
			}
			received += len(data)
			if env := checkStandard(t, typ, data); env.Type == haip.TypeError && harness.ErrorPayload(t, env).Code == haip.CodeRateLimited {
				limited++
			}
		}
		// Before: 10 × 6 MB sent at once.
		if received > 1<<20+big {
			t.Fatalf("10 replay requests made the edge send %d bytes past the client's credit", received)
		}
		if limited == 0 {
			t.Fatal("no replay was refused for too many waiting")
		}
		t.Logf("10 replay requests over a WebSocket: %d bytes sent in 3 s, %d refused for too many waiting", received, limited)
	})
}

// A user cannot take what the edge has for everyone: connections,
// sessions, messages, runs and tool calls each have a per-user limit,
// refused with RATE_LIMITED (HTTP 429), while another user goes on.
func TestAttackUserLimits(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{UserMaxConnections: 3, UserSessionsPerMinute: 4, UserMessagesPerSecond: 20,
		UserRunsPerMinute: 2, UserToolCallsPerMinute: 2})
	mal, bob := f.Token("mallory", auth.RoleUser), f.Token("bob", auth.RoleUser)

	t.Run("connections", func(t *testing.T) {
		var held []*rawWS
		for range 3 {
			held = append(held, rawDial(t, tokenURL(e, mal)))
		}
		status, body, raw := refusal(t, tokenURL(e, mal), nil)
		if status != http.StatusTooManyRequests || body.Code != string(haip.CodeRateLimited) {
			t.Fatalf("4th connection: HTTP %d %s, want 429 RATE_LIMITED", status, raw)
		}
		other := rawDial(t, tokenURL(e, bob))
		other.handshake()
		for _, h := range held {
			_ = h.ws.CloseNow()
		}
		testkit.Eventually(t, 10*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, tokenURL(e, mal), nil)
			if err == nil {
				_ = ws.CloseNow()
			}
			return err == nil
		}, "slots not given back when the connections closed")
	})

	t.Run("sessions, messages, runs, tool calls", func(t *testing.T) {
		opened := 0
		for i := range 6 {
			r := rawDial(t, tokenURL(e, mal))
			r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload())
			env, _ := r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeHAI || e.Type == haip.TypeError })
			if env.Type == haip.TypeHAI {
				opened++
				_ = r.ws.CloseNow()
				continue
			}
			if p := harness.ErrorPayload(t, env); p.Code != haip.CodeRateLimited || i < 4 {
				t.Fatalf("session %d: %+v", i, p)
			}
			_ = r.ws.CloseNow()
		}
		if opened != 4 {
			t.Fatalf("%d new sessions opened in a burst, want 4", opened)
		}

		// Messages: a burst of 100 stores at most 40 (two seconds' worth).
		r := rawDial(t, tokenURL(e, f.Token("mallory2", auth.RoleUser)))
		r.handshake()
		for range 100 {
			r.send(haip.ChannelUser, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "x"})
		}
		r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "after the flood"})
		r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypePong })
		if n := logLen(t, f, r.session, streams.In); n > 45 || n < 20 {
			t.Fatalf("%d of 100 flooded messages stored, want about 40", n)
		}
		// bob is not slowed by mallory's flood.
		b := rawDial(t, tokenURL(e, bob))
		b.handshake()
		b.send(haip.ChannelUser, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "hi"})
		b.pingPong("bob")
		if n := logLen(t, f, b.session, streams.In); n != 1 {
			t.Fatalf("bob's message: %d stored", n)
		}

		// Runs and tool calls: two each per minute.
		q := rawDial(t, tokenURL(e, f.Token("mallory3", auth.RoleUser)))
		q.handshake()
		refused := func(typ haip.Type, payload func() any) int {
			n := 0
			for range 3 {
				env := q.send(haip.ChannelUser, typ, payload())
				q.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "p" + env.ID})
				_, got := q.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypePong })
				for _, g := range got {
					if g.Type == haip.TypeError && harness.ErrorPayload(t, g).Code == haip.CodeRateLimited {
						n++
					}
				}
			}
			return n
		}
		if n := refused(haip.TypeTextMessageEnd, func() any { return haip.TextMessageEndPayload{MessageID: haip.NewUUID()} }); n != 1 {
			t.Fatalf("%d of 3 runs refused, want 1", n)
		}
		if n := refused(haip.TypeToolCall, func() any { return haip.ToolCallPayload{CallID: haip.NewUUID(), Tool: "echo"} }); n != 1 {
			t.Fatalf("%d of 3 tool calls refused, want 1", n)
		}
	})
}

// A user's runs and tool calls queued or running at once are capped,
// over every edge (JetStream counts them in the queues): one user cannot
// fill the shared queues, nor delay without bound another user who
// shares its shard.
func TestAttackUserWorkInFlight(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	cfg := edge.Config{UserMaxRuns: 2, UserMaxToolCalls: 2}
	e1, e2 := f.Edge(cfg), f.Edge(cfg)
	f.Agent(time.Second) // a word a second: runs stay running
	f.Tools("tools", 1)
	mal, bob := f.Token("mallory", auth.RoleUser), f.Token("bob", auth.RoleUser)

	refused := func(r *rawWS, env *haip.Envelope) bool {
		t.Helper()
		r.sendEnv(env)
		r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "after " + env.ID})
		_, got := r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypePong })
		for _, g := range got {
			if g.Type == haip.TypeError {
				p := harness.ErrorPayload(t, g)
				if p.Code != haip.CodeRateLimited {
					t.Fatalf("ERROR %+v", p)
				}
				return true
			}
		}
		return false
	}
	text := func(r *rawWS) *haip.Envelope {
		return r.env(haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: haip.NewUUID()})
	}
	// Two runs through one edge, the third through the other: refused.
	var rs []*rawWS
	for i, e := range []*testEdge{e1, e1, e2} {
		r := rawDial(t, tokenURL(e, mal))
		r.handshake()
		rs = append(rs, r)
		if got := refused(r, text(r)); got != (i == 2) {
			t.Fatalf("run %d: refused %v", i, got)
		}
	}
	// Tool calls: one running, one queued, the third refused.
	params, _ := json.Marshal(map[string]int{"ms": 30_000})
	for i := range 3 {
		call := rs[0].env(haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: haip.NewUUID(), Tool: "sleep", Params: params})
		if got := refused(rs[0], call); got != (i == 2) {
			t.Fatalf("tool call %d: refused %v", i, got)
		}
	}
	// Another user is not held to mallory's count.
	b := rawDial(t, tokenURL(e2, bob))
	b.handshake()
	if refused(b, text(b)) {
		t.Fatal("bob's run refused")
	}
}

// A refused full-duplex stream request is answered at once, though its
// body never ends (the client gets its 401 instead of a hang).
func TestStreamRefusalDoesNotWaitForTheBody(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Headers, then one chunk of a body that never ends.
	req := "POST /haip/stream HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer not-a-token\r\n" +
		"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\n\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer while the body was still open: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("HTTP %d, want 401", resp.StatusCode)
	}
}
