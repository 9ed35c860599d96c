package edge_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
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

// fill appends n agent messages of about size bytes to a session's
// outbound log, as a fast agent would.
func (f *fabric) fill(t *testing.T, session string, n, size int) {
	t.Helper()
	ctx := context.Background()
	lg := f.Log()
	text := strings.Repeat("x", size)
	msgID := haip.NewUUID()
	for i := range n {
		env, err := haip.New(session, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: msgID, Text: text})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lg.AppendEnvelope(ctx, session, streams.Out, env); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// heapInUse is the heap in use after a collection, less what the embedded
// nats-server allocated: its block cache, reloaded whenever a block was
// idle for 10 s, made the process figure vary from 4 % to over 100 % of
// the test's backlog whatever the edge did. It is estimated from the
// runtime's heap profile (sampled, scaled back as pprof does) by leaving
// out allocations made under the nats-server package.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // the profile shows the heap as of the last completed cycle
	n, _ := runtime.MemProfile(nil, false)
	var recs []runtime.MemProfileRecord
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, false); ok {
			recs = recs[:n]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	var total float64
	for _, r := range recs {
		objs, bytes := r.InUseObjects(), r.InUseBytes()
		if objs <= 0 || allocatedByServer(r.Stack()) {
			continue
		}
		avg := float64(bytes) / float64(objs)
		total += float64(bytes) / (1 - math.Exp(-avg/rate))
	}
	return uint64(total)
}

// allocatedByServer reports an allocation made under the nats-server
// package.
func allocatedByServer(stack []uintptr) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, "nats-io/nats-server/") {
			return true
		}
		if !more {
			return false
		}
	}
}

// A client that never reads: the edge pulls from JetStream only what the
// socket takes, its memory stays bounded, and after WRITE_TIMEOUT the
// client is cut with a reason. It then resumes and gets everything, once.
//
// Not parallel: it measures the process heap, and forcing collections for
// that would slow every other test down.
func TestSlowClientBounded(t *testing.T) {
	const (
		backlog = 24000
		size    = 1024
	)
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{WriteTimeout: edge.Duration(500 * time.Millisecond), CatchupBytes: 64 << 10})
	session := haip.NewUUID()
	// The session must be the caller's before anything is written to it.
	owner := f.Dial(e, client.Options{Session: session})
	_ = owner.Close()
	f.fill(t, session, backlog, size)

	before := heapInUse()
	ctx := context.Background()
	// Loopback receive buffers autotune up to tcp_rmem's maximum (32 MiB
	// on some machines), which could swallow the whole backlog; a fixed
	// SO_RCVBUF turns autotuning off, as a slow mobile link would.
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	ws, _, err := websocket.Dial(ctx, e.WS+"?token="+f.Token("alice", auth.RoleUser), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	hello, _ := haip.New(session, haip.ChannelSystem, haip.TypeHAI, haip.HelloPayload{
		HaipVersion: haip.Version, AcceptMajor: []int{1}, AcceptEvents: haip.AllTypes(), LastRxSeq: "0"})
	hello.Seq = 1
	data, _ := haip.Encode(hello)
	if err := ws.Write(ctx, websocket.MessageText, data); err != nil {
		t.Fatal(err)
	}
	// Never read; watch the edge's memory until it gives up on us.
	var peak uint64
	var polls int
	testkit.Eventually(t, 60*time.Second, func() bool {
		if polls++; polls%20 == 1 { // a forced GC every ~200 ms, not every poll
			if h := heapInUse(); h > peak {
				peak = h
			}
		}
		return e.Srv.Stats(ctx).SlowConsumerDisconnect >= 1
	}, "never-reading client was not cut", func() string { return fmt.Sprintf("stats %+v", e.Srv.Stats(ctx)) })
	if h := heapInUse(); h > peak {
		peak = h
	}
	growth := int64(peak) - int64(before)
	backlogBytes := backlog * size
	t.Logf("backlog %d bytes; heap growth at peak %d bytes (%.1f%% of backlog)", backlogBytes, growth, 100*float64(growth)/float64(backlogBytes))
	// Below the backlog, the log was not buffered whole. The reads below
	// bound the edge exactly.
	if growth > int64(backlogBytes) {
		t.Fatalf("process heap grew by %d bytes for a %d-byte backlog: the log was buffered", growth, backlogBytes)
	}

	// What the socket had taken is still readable, then the close.
	var last uint64
	var closeErr error
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			closeErr = err
			break
		}
		env, err := haip.Decode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !client.IsControl(env.Type) {
			if uint64(env.Seq) != last+1 {
				t.Fatalf("seq %d after %d", env.Seq, last)
			}
			last = uint64(env.Seq)
		}
	}
	t.Logf("client had received %d of %d before the cut (%v)", last, backlog, closeErr)
	// The edge pulled from JetStream only what the socket took, plus the
	// batch in hand: each read is at most CatchupBytes (64 KiB, about 60
	// of these messages).
	reads := e.Srv.Stats(ctx).CatchupReads
	sample, _ := haip.New(session, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: strings.Repeat("x", size)})
	enc, _ := haip.Encode(sample)
	const overhead = 256 // subject and headers of a stored message, generously
	perRead := uint64(64<<10) / uint64(len(enc)+overhead)
	t.Logf("edge made %d catch-up reads (at least %d messages each) for %d messages taken", reads, perRead, last)
	if reads > last/perRead+8 {
		t.Fatalf("edge read %d batches from JetStream for %d messages the client took: it read ahead of the socket", reads, last)
	}
	if last >= backlog {
		t.Fatalf("client got everything (%d); the test needs a backlog larger than the socket buffers", last)
	}
	if code, reason := client.CloseStatus(closeErr); code != -1 && (code != websocket.StatusCode(edge.CloseSlowConsumer) || !strings.Contains(reason, "slow consumer")) {
		t.Fatalf("closed with %d %q, want %d slow consumer", code, reason, edge.CloseSlowConsumer)
	}

	// Resume: the rest arrives, dense, once.
	c := f.Dial(e, client.Options{Session: session, LastRxSeq: harness.U64(last)})
	rest := harness.ReadUntil(t, c, 60*time.Second, func(*haip.Envelope) bool { return c.LastSeq() >= backlog })
	harness.AssertDense(t, rest, last+1)
}

// SIGTERM-style drain: every connection is closed with 1001 and the seq
// to resume from, which is exactly the last seq it received.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e1, e2 := f.Edge(edge.Config{}), f.Edge(edge.Config{})
	c := f.Dial(e1, client.Options{})
	ctx := context.Background()
	if _, err := c.SendText(ctx, "before shutdown"); err != nil {
		t.Fatal(err)
	}
	first := harness.ReadUntil(t, c, 10*time.Second, harness.IsRunFinished)
	go e1.Stop()
	var readErr error
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for readErr == nil {
		_, readErr = c.Read(rctx)
	}
	code, reason := client.CloseStatus(readErr)
	if code != websocket.StatusGoingAway || !strings.Contains(reason, fmt.Sprintf("resume from seq %d", c.LastSeq())) {
		t.Fatalf("closed with %d %q after seq %d", code, reason, c.LastSeq())
	}
	if _, err := f.TryDial(e1, client.Options{}); err == nil {
		t.Fatal("a draining edge accepted a connection")
	}
	c2 := f.Dial(e2, client.Options{Session: c.Session(), LastRxSeq: harness.U64(c.LastSeq())})
	if _, err := c2.SendText(ctx, "after shutdown"); err != nil {
		t.Fatal(err)
	}
	rest := harness.ReadUntil(t, c2, 10*time.Second, harness.IsRunFinished)
	harness.AssertDense(t, append(first, rest...), 1)
}

// Clients that never answer the close frame do not hold a drain past its
// deadline: Shutdown cuts them when its context ends.
func TestShutdownCutsStuckPeers(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	for range 3 {
		f.Dial(e, client.Options{}) // never read again: no close reply
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	err := e.Srv.Shutdown(ctx)
	took := time.Since(began)
	t.Logf("Shutdown returned after %s: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with stuck peers: %v, want the deadline", err)
	}
	// The WebSocket library waits 5 s for a close reply on its own.
	if took > 3*time.Second {
		t.Fatalf("Shutdown took %s with a 1 s budget", took)
	}
}

// /health answers 503 while JetStream is unreachable, and 200 again when
// it is back.
func TestHealthFollowsJetStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFabricAt(t, dir, streams.Config{})
	e := f.Edge(edge.Config{})
	status := func() int {
		resp, err := http.Get(e.Base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	if s := status(); s != http.StatusOK {
		t.Fatalf("health %d with JetStream up", s)
	}
	f.NS.Shutdown()
	f.NS.WaitForShutdown()
	testkit.Eventually(t, 20*time.Second, func() bool { return status() == http.StatusServiceUnavailable }, "health stayed 200 with JetStream down")
}

// A message read from a client before a drain is cut is stored before
// Shutdown returns (and so before the process lets go of NATS): Shutdown
// aborts connections a little before its deadline and waits for the
// stores their readers are making.
func TestShutdownWaitsForStoresOfAbortedConnections(t *testing.T) {
	t.Parallel()
	b := newBehindProxy(t)
	b.f.Dial(b.e, client.Options{}) // never reads: holds the drain to its deadline
	writer := b.f.Dial(b.e, client.Options{})
	b.proxy.Partition() // the edge cannot reach JetStream: a store waits
	ctx := context.Background()
	stats := func() edge.Stats {
		// (Stats also counts sessions in JetStream, out of reach here.)
		qctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		return b.e.Srv.Stats(qctx)
	}
	before := stats().TotalMessagesIn
	part, err := writer.Send(ctx, haip.ChannelUser, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "in flight"})
	if err != nil {
		t.Fatal(err)
	}
	// Read by the edge (so now being stored), before the drain starts: a
	// frame still in the socket when the drain closes it is not read,
	// not acknowledged, and so the client's to send again.
	testkit.Eventually(t, 10*time.Second, func() bool { return stats().TotalMessagesIn > before }, "the edge never read the message")
	sctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	returned := make(chan error, 1)
	go func() { returned <- b.e.Srv.Shutdown(sctx) }()
	// The drain is cut when the connections that were not storing are
	// gone; the one storing stays until its store is over.
	testkit.Eventually(t, 10*time.Second, func() bool { return stats().ActiveConnections <= 1 }, "drain never cut")
	select {
	case err := <-returned:
		t.Fatalf("Shutdown returned (%v) while a connection was still storing what it read", err)
	default:
	}
	b.proxy.Resume()
	if err := <-returned; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := logLen(t, b.f, writer.Session(), streams.In); n != 1 {
		t.Fatalf("%d messages stored when Shutdown returned, want the one read (%s)", n, part.ID)
	}
}
