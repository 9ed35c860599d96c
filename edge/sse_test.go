package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/ndjson"
	"github.com/haipfabric/haipfabric/internal/sse"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// sseStream is a test client of GET /haip/sse.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	rd     *sse.Reader
	cancel context.CancelFunc
	lastID string
}

func openSSE(t *testing.T, hc *http.Client, url string, hdr http.Header) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	s := &sseStream{t: t, resp: resp, rd: sse.NewReader(resp.Body, 1<<20), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() { s.cancel(); s.resp.Body.Close() }

// events reads the stream on a goroutine of its own (ended by close) and
// hands each event over, for tests that must see that nothing arrived.
func (s *sseStream) events() <-chan sse.Event {
	ch := make(chan sse.Event, 64)
	go func() {
		defer close(ch)
		for {
			ev, err := s.rd.Next()
			if err != nil {
				return
			}
			ch <- ev
		}
	}()
	return ch
}

// next returns the next envelope; its event id must be its seq.
func (s *sseStream) next() *haip.Envelope {
	s.t.Helper()
	ev, err := s.rd.Next()
	if err != nil {
		s.t.Fatalf("sse: %v", err)
	}
	env, err := haip.Decode(ev.Data)
	if err != nil {
		s.t.Fatalf("sse event %q: %v", ev.Data, err)
	}
	if ev.Name != "" && ev.Name != "message" {
		s.t.Fatalf("event name %q: EventSource.onmessage would miss it", ev.Name)
	}
	if ev.ID != strconv.FormatUint(uint64(env.Seq), 10) {
		s.t.Fatalf("event id %q for seq %d", ev.ID, env.Seq)
	}
	s.lastID = ev.ID
	return env
}

// logUntil reads log messages (skipping control ones) until stop.
func (s *sseStream) logUntil(within time.Duration, stop func(*haip.Envelope) bool) []*haip.Envelope {
	s.t.Helper()
	timer := time.AfterFunc(within, s.cancel)
	defer timer.Stop()
	var got []*haip.Envelope
	for {
		env := s.next()
		if client.IsControl(env.Type) {
			continue
		}
		got = append(got, env)
		if stop(env) {
			return got
		}
	}
}

// helloEnvelope is a client HAI for session, accepting every type.
func helloEnvelope(session string) *haip.Envelope {
	env, _ := haip.New(session, haip.ChannelSystem, haip.TypeHAI, haip.HelloPayload{HaipVersion: haip.Version, AcceptMajor: []int{haip.Major}, AcceptEvents: haip.AllTypes()})
	return env
}

// userText builds the two envelopes that make the demo agent answer,
// numbered like the official SDK does.
func userText(t *testing.T, session, text string) [][]byte {
	t.Helper()
	return textEnvelopes(t, session, text, haip.NewUUID(), func(i int, env *haip.Envelope) {
		env.Seq = haip.U64(time.Now().UnixMilli() + int64(i)) // the SDK's timestamp seqs
	})
}

// textEnvelopes builds a user's text message, START with the text then
// END, each passed to edit (with its index) before it is encoded.
func textEnvelopes(t *testing.T, session, text, messageID string, edit func(i int, env *haip.Envelope)) [][]byte {
	t.Helper()
	var out [][]byte
	for i, p := range []struct {
		typ haip.Type
		p   any
	}{
		{haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: messageID, Text: text}},
		{haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: messageID}},
	} {
		env, err := haip.New(session, haip.ChannelUser, p.typ, p.p)
		if err != nil {
			t.Fatal(err)
		}
		edit(i, env)
		out = append(out, encode(t, env))
	}
	return out
}

// post sends envelopes to url as NDJSON (or one JSON envelope) and
// returns the results.
func post(t *testing.T, url, token string, hdr http.Header, records ...[]byte) (int, edge.PostResponse) {
	t.Helper()
	var body []byte
	ct := "application/json"
	if len(records) == 1 {
		body = records[0]
	} else {
		ct = "application/x-ndjson"
		body = bytes.Join(records, []byte("\n"))
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr edge.PostResponse
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &pr); err != nil {
			t.Fatalf("POST answer %s: %v", b, err)
		}
	} else {
		// A POST refused whole carries every envelope's result beside
		// its structured error.
		_ = json.Unmarshal(b, &pr)
	}
	return resp.StatusCode, pr
}

func mustAccept(t *testing.T, pr edge.PostResponse, n int) {
	t.Helper()
	if len(pr.Results) != n {
		t.Fatalf("%d results, want %d: %+v", len(pr.Results), n, pr)
	}
	for _, r := range pr.Results {
		if r.Status != "accepted" {
			t.Fatalf("result %+v", r)
		}
	}
}

// An answer read over SSE, cut in the middle, resumed on a second edge
// with Last-Event-ID (what a browser EventSource sends by itself): dense,
// in order, nothing twice.
func TestSSEResumeOnSecondEdge(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(10 * time.Millisecond)
	e1, e2 := f.Edge(edge.Config{}), f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()

	s1 := openSSE(t, nil, e1.Base+"/haip/sse?token="+tok+"&session="+session+"&last_rx_seq=0", nil)
	if hai := s1.next(); hai.Type != haip.TypeHAI || hai.Session != session {
		t.Fatalf("first event %s on %s", hai.Type, hai.Session)
	}
	code, pr := post(t, e2.Base+"/haip/messages", tok, nil, userText(t, session, "over sse")...)
	if code != http.StatusOK {
		t.Fatalf("POST %d", code)
	}
	mustAccept(t, pr, 2)
	first := s1.logUntil(10*time.Second, func(e *haip.Envelope) bool { return e.Seq >= 6 })
	s1.close()

	hdr := http.Header{"Last-Event-Id": {s1.lastID}}
	s2 := openSSE(t, nil, e2.Base+"/haip/sse?token="+tok+"&session="+session+"&last_rx_seq=0", hdr)
	rest := s2.logUntil(20*time.Second, harness.IsRunFinished)
	all := append(first, rest...)
	harness.AssertDense(t, all, 1)
	if got, want := harness.AnswerText(t, all), demo.Answer("over sse"); got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
}

// Bad input on the SSE and POST endpoints gets a clear refusal, and the
// good envelopes of a POST are taken despite a bad one among them.
func TestSSEAndPostBadInput(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{MaxMessageBytes: 4096})
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()
	_ = f.Dial(e, client.Options{Session: session}) // alice owns it

	get := func(url string, hdr http.Header) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sseURL := e.Base + "/haip/sse?session=" + session + "&token="
	for name, tc := range map[string]struct {
		url  string
		hdr  http.Header
		want int
	}{
		"bad token":           {sseURL + "nope", nil, http.StatusUnauthorized},
		"foreign session":     {sseURL + f.Token("bob", auth.RoleUser), nil, http.StatusForbidden},
		"bad session id":      {e.Base + "/haip/sse?session=a.b&token=" + tok, nil, http.StatusBadRequest},
		"bad Last-Event-ID":   {sseURL + tok, http.Header{"Last-Event-Id": {"-3"}}, http.StatusBadRequest},
		"bad last_rx_seq":     {sseURL + tok + "&last_rx_seq=x", nil, http.StatusBadRequest},
		"huge Last-Event-ID":  {sseURL + tok, http.Header{"Last-Event-Id": {"18446744073709551616"}}, http.StatusBadRequest},
		"empty Last-Event-ID": {sseURL + tok, http.Header{"Last-Event-Id": {""}}, http.StatusOK},
	} {
		if got := get(tc.url, tc.hdr); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}

	good := userText(t, session, "mixed")
	big := []byte(`{"id":"` + haip.NewUUID() + `","pad":"` + strings.Repeat("x", 5000) + `"}`)
	code, pr := post(t, e.Base+"/haip/messages", tok, nil, good[0], []byte("{not json"), big, []byte(`{"id":"x"}`), good[1])
	if code != http.StatusOK || len(pr.Results) != 5 {
		t.Fatalf("POST %d %+v", code, pr)
	}
	wantCodes := []haip.Code{"", haip.CodeProtocolViolation, haip.CodeMessageTooLarge, haip.CodeProtocolViolation, ""}
	for i, r := range pr.Results {
		got := haip.Code("")
		if r.Error != nil {
			got = r.Error.Code
		}
		if got != wantCodes[i] {
			t.Errorf("result %d: %+v, want code %q", i, r, wantCodes[i])
		}
	}
	// Same envelopes again: stored once.
	_, pr = post(t, e.Base+"/haip/sse", tok, http.Header{"X-Haip-Message": {"true"}}, good...)
	if !pr.Results[0].Duplicate || !pr.Results[1].Duplicate {
		t.Fatalf("resend not de-duplicated: %+v", pr)
	}
	if code, _ := post(t, e.Base+"/haip/messages", f.Token("bob", auth.RoleUser), nil, good[0]); code != http.StatusForbidden {
		t.Fatalf("foreign POST: %d, want 403 (every envelope refused)", code)
	} else if _, pr := post(t, e.Base+"/haip/messages", f.Token("bob", auth.RoleUser), nil, good[0]); pr.Results[0].Error == nil || pr.Results[0].Error.Code != haip.CodeSessionForbidden {
		t.Fatalf("foreign POST result %+v", pr)
	}
	if code, _ := post(t, e.Base+"/haip/messages", "bad", nil, good[0]); code != http.StatusUnauthorized {
		t.Fatalf("bad token POST: %d", code)
	}
	if code, _ := post(t, e.Base+"/haip/messages", tok, http.Header{"X-Haip-Binary": {"true"}}, good[0]); code != http.StatusUnsupportedMediaType {
		t.Fatalf("binary POST: %d", code)
	}
	var many [][]byte
	for range 80 {
		many = append(many, bytes.Repeat([]byte(" "), 1000))
	}
	if code, _ := post(t, e.Base+"/haip/messages", tok, nil, many...); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("huge POST: %d", code)
	}
	// PING by POST is answered in the result.
	ping, _ := haip.New(session, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "n1"})
	pb, _ := haip.Encode(ping)
	_, pr = post(t, e.Base+"/haip/messages", tok, nil, pb)
	if len(pr.Results) != 1 || len(pr.Results[0].Replies) != 1 || !strings.Contains(string(pr.Results[0].Replies[0]), `"nonce":"n1"`) {
		t.Fatalf("PING by POST: %+v", pr)
	}
}

// The official SDK's HTTP-streaming transport: GET /haip/stream?stream=true
// with no session, then its HAI POSTed to the same URL (here through
// another edge) binds the stream to the SDK's session.
func TestSDKStreamBoundByPostedHAI(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e1, e2 := f.Edge(edge.Config{}), f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()
	s := openSSE(t, nil, e1.Base+"/haip/stream?token="+tok+"&stream=true", http.Header{"Accept": {"text/event-stream"}})

	hello := helloEnvelope(session)
	hb, _ := haip.Encode(hello)
	var pr edge.PostResponse
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, pr = post(t, e2.Base+"/haip/stream", tok, http.Header{"X-Haip-Message": {"true"}}, hb)
		return len(pr.Results) == 1 && pr.Results[0].Bound != nil && *pr.Results[0].Bound
	}, "posted HAI never bound the waiting stream")
	if hai := s.next(); hai.Type != haip.TypeHAI || hai.Session != session {
		t.Fatalf("stream's first event %s on %s", hai.Type, hai.Session)
	}
	for _, m := range userText(t, session, "sdk stream") {
		_, pr = post(t, e2.Base+"/haip/stream", tok, http.Header{"X-Haip-Message": {"true"}}, m)
		mustAccept(t, pr, 1)
	}
	got := s.logUntil(10*time.Second, harness.IsRunFinished)
	harness.AssertDense(t, got, 1)
	if harness.AnswerText(t, got) != demo.Answer("sdk stream") {
		t.Fatal("wrong answer")
	}
}

// ndjsonStream is a test client of POST /haip/stream.
type ndjsonStream struct {
	t    *testing.T
	w    *io.PipeWriter
	rd   *ndjson.Reader
	resp *http.Response
}

// openStream POSTs to /haip/stream with body (a pipe the test keeps
// writing to, or a finished body for half duplex) and returns once the
// response headers are in.
func openStream(t *testing.T, hc *http.Client, url, token string, body io.Reader, w *io.PipeWriter) *ndjsonStream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, body)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+token)
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST stream: %d %s", resp.StatusCode, b)
	}
	t.Cleanup(func() {
		if w != nil {
			w.Close()
		}
		resp.Body.Close()
	})
	return &ndjsonStream{t: t, w: w, resp: resp, rd: ndjson.NewReader(resp.Body, 1<<20)}
}

func (s *ndjsonStream) send(b []byte) {
	s.t.Helper()
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		s.t.Fatal(err)
	}
}

func (s *ndjsonStream) next() *haip.Envelope {
	s.t.Helper()
	line, err := s.rd.Next()
	if err != nil {
		s.t.Fatalf("stream: %v", err)
	}
	env, err := haip.Decode(line)
	if err != nil {
		s.t.Fatalf("stream line %q: %v", line, err)
	}
	return env
}

// logUntilFinished reads log messages (skipping control ones) up to
// RUN_FINISHED.
func (s *ndjsonStream) logUntilFinished() []*haip.Envelope {
	s.t.Helper()
	var got []*haip.Envelope
	for {
		env := s.next()
		if client.IsControl(env.Type) {
			continue
		}
		got = append(got, env)
		if harness.IsRunFinished(env) {
			return got
		}
	}
}

func (s *ndjsonStream) nextOf(typ haip.Type) *haip.Envelope {
	s.t.Helper()
	for {
		if env := s.next(); env.Type == typ {
			return env
		}
	}
}

// Full-duplex NDJSON on one request: handshake, bad lines answered and
// skipped, PING/PONG, and a whole run.
func TestStreamFullDuplex(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{MaxMessageBytes: 4096})
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()

	pr, pw := io.Pipe()
	go func() {
		hello := helloEnvelope(session)
		b, _ := haip.Encode(hello)
		_, _ = pw.Write(append(b, '\n'))
	}()
	s := openStream(t, nil, e.Base+"/haip/stream", tok, pr, pw)
	if hai := s.next(); hai.Type != haip.TypeHAI || hai.Session != session {
		t.Fatalf("first line %s", hai.Type)
	}
	s.send([]byte("{broken"))
	if ep := harness.ErrorPayload(t, s.nextOf(haip.TypeError)); ep.Code != haip.CodeProtocolViolation {
		t.Fatalf("bad line: %+v", ep)
	}
	s.send(bytes.Repeat([]byte("x"), 5000))
	if ep := harness.ErrorPayload(t, s.nextOf(haip.TypeError)); ep.Code != haip.CodeMessageTooLarge {
		t.Fatalf("long line: %+v", ep)
	}
	ping, _ := haip.New(session, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "dup"})
	pb, _ := haip.Encode(ping)
	s.send(pb)
	if pong := s.nextOf(haip.TypePong); !strings.Contains(string(pong.Payload), `"dup"`) {
		t.Fatalf("pong %s", pong.Payload)
	}
	for _, m := range userText(t, session, "duplex") {
		s.send(m)
	}
	got := s.logUntilFinished()
	harness.AssertDense(t, got, 1)
	if harness.AnswerText(t, got) != demo.Answer("duplex") {
		t.Fatal("wrong answer")
	}
}

// Half duplex: a client that cannot stream its body opens the stream with
// ?session= and an empty body, and sends by POST.
func TestStreamHalfDuplex(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{HeartbeatInterval: edge.Duration(100 * time.Millisecond), HeartbeatTimeout: edge.Duration(100 * time.Millisecond)})
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()
	s := openStream(t, nil, e.Base+"/haip/stream?session="+session, tok, strings.NewReader(""), nil)
	if hai := s.next(); hai.Type != haip.TypeHAI || hai.Session != session {
		t.Fatalf("first line %s", hai.Type)
	}
	// The body has ended: silence is not death. Several heartbeats pass.
	for range 4 {
		s.nextOf(haip.TypePing)
	}
	_, pr := post(t, e.Base+"/haip/messages", tok, nil, userText(t, session, "half")...)
	mustAccept(t, pr, 2)
	got := s.logUntilFinished()
	harness.AssertDense(t, got, 1)
}

// One session read over SSE on one edge, written by POST on a second, and
// watched over WebSocket on a third: all see the same dense seqs.
func TestTransportsShareOneSession(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e1, e2, e3 := f.Edge(edge.Config{}), f.Edge(edge.Config{}), f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	ws := f.Dial(e3, client.Options{})
	session := ws.Session()
	s := openSSE(t, nil, e1.Base+"/haip/sse?token="+tok+"&session="+session, nil)
	s.next() // HAI
	_, pr := post(t, e2.Base+"/haip/messages", tok, nil, userText(t, session, "everywhere")...)
	mustAccept(t, pr, 2)
	var viaSSE, viaWS []*haip.Envelope
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		viaWS = harness.ReadUntil(t, ws, 10*time.Second, harness.IsRunFinished)
	}()
	viaSSE = s.logUntil(10*time.Second, harness.IsRunFinished)
	wg.Wait()
	harness.AssertDense(t, viaSSE, 1)
	if len(viaSSE) != len(viaWS) {
		t.Fatalf("sse %d messages, websocket %d", len(viaSSE), len(viaWS))
	}
	for i := range viaSSE {
		if viaSSE[i].ID != viaWS[i].ID || viaSSE[i].Seq != viaWS[i].Seq {
			t.Fatalf("message %d differs: %s/%d vs %s/%d", i, viaSSE[i].ID, viaSSE[i].Seq, viaWS[i].ID, viaWS[i].Seq)
		}
	}
}

// HTTP/2 without TLS (h2c): many SSE streams on one connection, and a
// full-duplex NDJSON stream.
func TestHTTP2ManyStreamsOneConnection(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP1(true)
	var conns sync.Map
	hs := httptest.NewUnstartedServer(e.Srv.Handler())
	hs.Config.Protocols = &protocols
	hs.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Store(c, true)
		}
	}
	hs.Start()
	t.Cleanup(hs.Close) // after the streams' own cleanups (LIFO)
	var clientProtocols http.Protocols
	clientProtocols.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &clientProtocols, TLSClientConfig: &tls.Config{}}}
	tok := f.Token("alice", auth.RoleUser)
	const n = 10
	var ss []*sseStream
	for range n {
		s := openSSE(t, hc, hs.URL+"/haip/sse?token="+tok+"&session="+haip.NewUUID(), nil)
		if s.resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s", s.resp.Proto)
		}
		s.next() // HAI
		ss = append(ss, s)
	}
	count := 0
	conns.Range(func(any, any) bool { count++; return true })
	if count != 1 {
		t.Fatalf("%d TCP connections for %d SSE streams", count, n)
	}
	// A full-duplex stream over the same kind of connection.
	pr, pw := io.Pipe()
	session := haip.NewUUID()
	go func() {
		hello := helloEnvelope(session)
		b, _ := haip.Encode(hello)
		_, _ = pw.Write(append(b, '\n'))
	}()
	st := openStream(t, hc, hs.URL+"/haip/stream", tok, pr, pw)
	if st.resp.ProtoMajor != 2 {
		t.Fatalf("stream protocol %s", st.resp.Proto)
	}
	st.nextOf(haip.TypeHAI)
	for _, m := range userText(t, session, "h2") {
		st.send(m)
	}
	st.nextOf(haip.TypeRunFinished)
	_ = ss
}

// A POST whose body stalls is answered 408 after POST_TIMEOUT instead of
// holding the edge.
func TestPostBodyStallTimesOut(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{PostTimeout: edge.Duration(300 * time.Millisecond)})
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte(`{"id":"`)) }() // and then nothing
	req, _ := http.NewRequest(http.MethodPost, e.Base+"/haip/messages", pr)
	req.Header.Set("Authorization", "Bearer "+f.Token("alice", auth.RoleUser))
	req.Header.Set("Content-Type", "application/json")
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(began) > 10*time.Second {
		t.Fatalf("stalled POST: %d after %s", resp.StatusCode, time.Since(began))
	}
}
