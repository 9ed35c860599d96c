package edge_test

// Regression suite of attacks on a real edge: each test reproduces one
// way a user tried to reach another user, outlive a credential, or make
// the edge pay more than a request is worth, and checks it is refused.

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/streams"
)

// sessionExists reads a session's record.
func sessionExists(t *testing.T, f *fabric, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sessions, err := streams.OpenSessions(ctx, f.js)
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
	e := f.edge(edge.Config{})
	aliceTok, bobTok := f.token("alice", auth.RoleUser), f.token("bob", auth.RoleUser)
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
		carol := rawDial(t, tokenURL(e, f.token("carol", auth.RoleUser)))
		carol.session = free
		carol.handshake()
	})

	t.Run("a request refused for a full edge claims nothing", func(t *testing.T) {
		full := f.edge(edge.Config{MaxConnections: 1})
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
		agentTok := f.token("svc", auth.RoleAgent)
		plant, err := haip.New(free, haip.ChannelAgent, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: haip.NewUUID(), Text: "planted"})
		if err != nil {
			t.Fatal(err)
		}
		status, pr := post(t, e.base+"/haip/messages", agentTok, nil, encode(t, plant))
		if status == http.StatusOK && (len(pr.Results) != 1 || pr.Results[0].Error == nil || pr.Results[0].Error.Code != haip.CodeSessionNotFound) {
			t.Fatalf("POST as agent into a free session: %d %+v, want SESSION_NOT_FOUND", status, pr)
		}
		r := rawDial(t, tokenURL(e, agentTok))
		r.session = free
		r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload())
		code, got := r.expectClose(10 * time.Second)
		if code != websocket.StatusPolicyViolation || len(got) == 0 || errorPayload(t, got[0]).Code != haip.CodeSessionNotFound {
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
	nc := natstest.Conn(t, f.ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret, Leeway: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := edge.NewServer(ctx, edge.Config{}, edge.Deps{NC: nc, JS: js, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		hs.Close()
	})
	short, err := f.signer.Mint(auth.MintOptions{Subject: "alice", Role: auth.RoleUser, TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second)

	r := rawDial(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/haip/websocket?token="+short)
	r.handshake()
	r.pingPong("before expiry")
	code, got := r.expectClose(15 * time.Second)
	if code != websocket.StatusCode(edge.CloseTokenExpired) {
		t.Fatalf("close %v after %s, want %d", code, types(got), edge.CloseTokenExpired)
	}
	if time.Now().Before(exp) {
		t.Fatalf("closed before the token expired")
	}
	if len(got) == 0 || got[len(got)-1].Type != haip.TypeError || errorPayload(t, got[len(got)-1]).Code != haip.CodeAuthenticationFailed {
		t.Fatalf("closed after %s, want an AUTHENTICATION_FAILED ERROR last", types(got))
	}

	short, err = f.signer.Mint(auth.MintOptions{Subject: "alice", Role: auth.RoleUser, TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, hs.URL+"/haip/sse?session="+haip.NewUUID()+"&token="+short, nil)
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
	e := f.edge(edge.Config{WriteTimeout: edge.Duration(time.Second)})
	tok := f.token("alice", auth.RoleUser)

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
	if n := e.srv.Stats(ctx).SlowConsumerDisconnect; n != 1 {
		t.Fatalf("%d slow-consumer disconnects, want 1 (the client that did not read)", n)
	}
}
