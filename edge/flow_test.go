package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// agentWrite appends n agent messages on channel ch to a session's
// outbound log, each a TEXT_MESSAGE_PART of size bytes of text (AGENT) or
// an AUDIO_CHUNK with size bytes of audio (AUDIO_OUT).
func agentWrite(t *testing.T, lg *streams.Log, session string, ch haip.Channel, n, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgID := haip.NewUUID()
	for i := range n {
		var (
			env *haip.Envelope
			err error
			bin []byte
		)
		if ch == haip.ChannelAudioOut {
			env, err = haip.New(session, ch, haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: msgID, Mime: "audio/opus"})
			bin = bytes.Repeat([]byte{byte(i)}, size)
		} else {
			env, err = haip.New(session, ch, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: msgID, Text: strings.Repeat("x", size)})
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lg.AppendBinary(ctx, session, streams.Out, env, bin); err != nil {
			t.Fatal(err)
		}
	}
}

// logMessagesUntilPong sends a PING and reads until its PONG, returning
// the log messages read on the way: a barrier that shows what delivery
// the edge allowed.
func logMessagesUntilPong(t *testing.T, c *client.Conn) []*haip.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nonce := haip.NewUUID()
	if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	var got []*haip.Envelope
	for {
		env, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for PONG: %v", err)
		}
		if env.Type == haip.TypePong && pingNonce(t, env) == nonce {
			return got
		}
		if env.Type == haip.TypeError {
			t.Fatalf("ERROR: %s", env.Payload)
		}
		if !client.IsControl(env.Type) {
			got = append(got, env)
		}
	}
}

func grant(t *testing.T, c *client.Conn, ch haip.Channel, msgs, bytes int64) {
	t.Helper()
	p := haip.FlowUpdatePayload{Channel: ch}
	if msgs > 0 {
		p.AddMessages = &msgs
	}
	if bytes > 0 {
		p.AddBytes = &bytes
	}
	if _, err := c.Send(context.Background(), haip.ChannelSystem, haip.TypeFlowUpdate, p); err != nil {
		t.Fatal(err)
	}
}

func readN(t *testing.T, c *client.Conn, n int) []*haip.Envelope {
	t.Helper()
	if n == 0 {
		return nil
	}
	return harness.ReadUntil(t, c, 20*time.Second, func() func(*haip.Envelope) bool {
		k := 0
		return func(*haip.Envelope) bool { k++; return k == n }
	}())
}

// Message credit: the edge sends as many messages on a channel as the
// client granted, stops, and goes on when FLOW_UPDATE adds credit to that
// channel (credit on another channel does not help).
func TestCreditMessagesPerChannel(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	c := f.Dial(e, client.Options{Credit: 5, ManualCredit: true, LastRxSeq: harness.U64(0)})
	agentWrite(t, f.Log(), c.Session(), haip.ChannelAgent, 20, 10)

	got := readN(t, c, 5)
	if extra := logMessagesUntilPong(t, c); len(extra) != 0 {
		t.Fatalf("%d messages beyond the 5 of credit", len(extra))
	}
	grant(t, c, haip.ChannelAudioOut, 100, 0)
	if extra := logMessagesUntilPong(t, c); len(extra) != 0 {
		t.Fatalf("credit on AUDIO_OUT released %d AGENT messages", len(extra))
	}
	grant(t, c, haip.ChannelAgent, 3, 0)
	got = append(got, readN(t, c, 3)...)
	if extra := logMessagesUntilPong(t, c); len(extra) != 0 {
		t.Fatalf("%d messages beyond the 3 granted", len(extra))
	}
	grant(t, c, haip.ChannelAgent, 100, 0)
	got = append(got, readN(t, c, 12)...)
	harness.AssertDense(t, got, 1)
}

// Byte credit: messages go out while their size fits the byte credit.
func TestCreditBytes(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	// Audio chunks cost their binary size: 1,000 bytes each.
	c := f.Dial(e, client.Options{Credit: 1000, CreditBytes: 2500, ManualCredit: true, LastRxSeq: harness.U64(0), Binary: true})
	agentWrite(t, f.Log(), c.Session(), haip.ChannelAudioOut, 6, 1000)

	got := readN(t, c, 2)
	if extra := logMessagesUntilPong(t, c); len(extra) != 0 {
		t.Fatalf("%d chunks beyond 2,500 bytes of credit", len(extra))
	}
	grant(t, c, haip.ChannelAudioOut, 0, 600) // 1,100 left: one more
	got = append(got, readN(t, c, 1)...)
	if extra := logMessagesUntilPong(t, c); len(extra) != 0 {
		t.Fatalf("%d chunks beyond the byte credit", len(extra))
	}
	grant(t, c, haip.ChannelAudioOut, 0, 1<<20)
	got = append(got, readN(t, c, 3)...)
	harness.AssertDense(t, got, 1)
}

// PAUSE_CHANNEL stops a channel whatever its credit; RESUME_CHANNEL
// restarts it.
func TestPauseResumeChannel(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	c := f.Dial(e, client.Options{NoFlowControl: true})
	ctx := context.Background()
	if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePauseChannel, haip.ChannelControlPayload{Channel: haip.ChannelAgent}); err != nil {
		t.Fatal(err)
	}
	logMessagesUntilPong(t, c) // the pause is in effect behind this
	agentWrite(t, f.Log(), c.Session(), haip.ChannelAgent, 10, 10)
	if extra := logMessagesUntilPong(t, c); len(extra) != 0 {
		t.Fatalf("%d messages on a paused channel", len(extra))
	}
	if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypeResumeChannel, haip.ChannelControlPayload{Channel: haip.ChannelAgent}); err != nil {
		t.Fatal(err)
	}
	harness.AssertDense(t, readN(t, c, 10), 1)
}

// The v1 SDK dialect (timestamp seqs) advertises 10 messages and never
// grants more: its credit is not counted until it sends FLOW_UPDATE.
func TestCreditSDKDialectNotCounted(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	r := sdkDial(t, e.WS, f.Token("alice", auth.RoleUser))
	r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload())
	r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeHAI })
	agentWrite(t, f.Log(), r.session, haip.ChannelAgent, 30, 10)
	n := 0
	r.expect(10*time.Second, func(e *haip.Envelope) bool {
		if e.Type == haip.TypeTextMessagePart {
			n++
		}
		return n == 30
	})
}

// A client that sends beyond the credit the edge granted gets
// FLOW_CONTROL_VIOLATION and its message is dropped. The edge stops
// granting while the work queues are full (no agent takes the runs), and
// grants again once an agent drains them.
func TestClientCreditFromBackPressure(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{ClientCreditMessages: 8, MaxQueueDepth: 3, PressureInterval: edge.Duration(20 * time.Millisecond), MaxConcurrentRuns: 100})
	r := rawDial(t, tokenURL(e, f.Token("alice", auth.RoleUser)))
	r.handshake()
	r.pingPong("granted") // the initial FLOW_UPDATEs are behind this

	// Three text messages queue three runs that nobody takes: the work
	// queue is full.
	for i := range 3 {
		id := haip.NewUUID()
		r.send(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: id, Text: fmt.Sprint("m", i)})
		r.send(haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: id})
	}
	r.pingPong("queued")
	testkit.Eventually(t, 10*time.Second, func() bool { return metricValue(t, e, "haip_edge_work_queue_depth") >= 3 }, "queue depth not sampled")

	// Keep sending until the edge refuses: it grants no more now.
	accepted, violation := 6, false
	for i := 0; i < 100 && !violation; i++ {
		env := r.env(haip.ChannelUser, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: fmt.Sprint("p", i)})
		r.sendEnv(env)
		nonce := haip.NewUUID()
		r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: nonce})
		_, skipped := r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypePong && pingNonce(t, e) == nonce })
		for _, s := range skipped {
			if s.Type == haip.TypeError {
				p := harness.ErrorPayload(t, s)
				if p.Code != haip.CodeFlowControlViolation || p.RelatedID != env.ID {
					t.Fatalf("error %+v", p)
				}
				violation = true
			}
		}
		if !violation {
			accepted++
		}
	}
	if !violation {
		t.Fatal("the edge kept granting credit with its work queue full")
	}
	if n := logLen(t, f, r.session, streams.In); n != uint64(accepted) {
		t.Fatalf("%d messages stored, want the %d accepted: the refused one must not be stored", n, accepted)
	}
	t.Logf("refused after %d accepted messages (8 granted at first)", accepted)

	// An agent drains the queue: credit comes back.
	f.Agent(-1)
	r.expect(30*time.Second, func(e *haip.Envelope) bool {
		if e.Type != haip.TypeFlowUpdate {
			return false
		}
		var p haip.FlowUpdatePayload
		_ = e.DecodePayload(&p)
		return p.Channel == haip.ChannelUser
	})
	r.send(haip.ChannelUser, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "again"})
	r.pingPong("accepted again")
}

// A one-way stream (SSE) is paused and resumed by flow control the same
// user POSTs for the session.
func TestSSEPausedByPost(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()
	events := openSSE(t, nil, e.Base+"/haip/sse?session="+session+"&last_rx_seq=0&token="+tok, nil).events()
	// The stream's HAI comes first.
	waitEvent(t, events, func(ev sse.Event) bool { return strings.Contains(string(ev.Data), `"type":"HAI"`) })

	control := func(typ haip.Type) {
		env, _ := haip.New(session, haip.ChannelSystem, typ, haip.ChannelControlPayload{Channel: haip.ChannelAgent})
		body, _ := haip.Encode(env)
		status, pr := post(t, e.Base+"/haip/messages", tok, nil, body)
		if status != http.StatusOK {
			t.Fatalf("POST %s: %d", typ, status)
		}
		mustAccept(t, pr, 1)
	}
	control(haip.TypePauseChannel)
	testkit.Eventually(t, 10*time.Second, func() bool { return metricValue(t, e, "haip_edge_paused_channels") == 1 }, "pause not applied")
	agentWrite(t, f.Log(), session, haip.ChannelAgent, 5, 10)
	testkit.Eventually(t, 10*time.Second, func() bool { return metricValue(t, e, "haip_edge_credit_waits_total") >= 1 }, "delivery did not wait")
	select {
	case ev := <-events:
		if ev.ID != "" && ev.ID != "0" {
			t.Fatalf("event %q on a paused stream: %s", ev.ID, ev.Data)
		}
	default:
	}
	control(haip.TypeResumeChannel)
	for want := 1; want <= 5; want++ {
		ev := waitEvent(t, events, func(ev sse.Event) bool { return strings.Contains(string(ev.Data), "TEXT_MESSAGE_PART") })
		if ev.ID != fmt.Sprint(want) {
			t.Fatalf("event id %q, want %d", ev.ID, want)
		}
	}
}

func waitEvent(t *testing.T, events <-chan sse.Event, match func(sse.Event) bool) sse.Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("no matching event")
		}
	}
}

// metricValue reads one unlabelled series from the edge's /metrics.
func metricValue(t *testing.T, e *testEdge, name string) float64 {
	t.Helper()
	resp := harness.OperatorGet(t, e.Base, "/metrics")
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}
