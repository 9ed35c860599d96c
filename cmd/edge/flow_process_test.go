package main_test

import (
	"bufio"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/streams"
)

// pausedBacklog is how many messages the agent side writes to the paused
// client.
const pausedBacklog = 100_000

// A client pauses the AGENT channel while an agent writes 100,000
// messages to its session. The edge (its own process, so that its heap is
// its own) reads nothing for it meanwhile: its heap stays flat while the
// backlog grows in JetStream. After RESUME_CHANNEL the client gets all of
// it, in order, densely.
func TestPausedClientBoundedEdgeHeap(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	dir := t.TempDir()
	// The secret a first edge would have made there: an edge joining a
	// NATS uses it, and prints tokens minted with it.
	if _, _, err := auth.LoadOrCreateSecret(filepath.Join(dir, "jwt-secret")); err != nil {
		t.Fatal(err)
	}
	e := startEdge(t, dir, map[string]string{"NATS_URL": ns.ClientURL(), "DEMO_AGENT": "false", "BUILTIN_TOOLS": "false"})
	base := "http" + strings.TrimPrefix(strings.TrimSuffix(e.ws, "/haip/websocket"), "ws")

	c := dial(t, e, client.Options{NoFlowControl: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePauseChannel, haip.ChannelControlPayload{Channel: haip.ChannelAgent}); err != nil {
		t.Fatal(err)
	}
	pingBarrier(t, ctx, c)

	before := edgeHeap(t, base)
	peak := before
	nc := natstest.Conn(t, ns)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	payloadBytes := writeBacklog(t, ctx, js, c.Session(), func() {
		if h := edgeHeap(t, base); h > peak {
			peak = h
		}
	})
	if h := edgeHeap(t, base); h > peak {
		peak = h
	}
	growth := peak - before
	t.Logf("edge heap in use: %.1f MB before, %.1f MB peak while %d messages (%.1f MB) were written to the paused client: growth %.1f MB (%.1f%% of the backlog)",
		mb(before), mb(peak), pausedBacklog, mb(payloadBytes), mb(growth), 100*growth/payloadBytes)
	if growth > payloadBytes/4 {
		t.Fatalf("edge heap grew %.1f MB for a %.1f MB backlog to a paused client", mb(growth), mb(payloadBytes))
	}

	if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypeResumeChannel, haip.ChannelControlPayload{Channel: haip.ChannelAgent}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	next := uint64(1)
	for next <= pausedBacklog {
		env, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", next-1, err)
		}
		if client.IsControl(env.Type) {
			continue
		}
		if uint64(env.Seq) != next {
			t.Fatalf("seq %d, want %d", env.Seq, next)
		}
		next++
	}
	t.Logf("after RESUME_CHANNEL: %d messages in order in %s", pausedBacklog, time.Since(began).Round(time.Millisecond))
}

func mb(b float64) float64 { return b / (1 << 20) }

func pingBarrier(t *testing.T, ctx context.Context, c *client.Conn) {
	t.Helper()
	nonce := haip.NewUUID()
	if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	for {
		env, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if env.Type == haip.TypeError {
			t.Fatalf("ERROR: %s", env.Payload)
		}
		if env.Type == haip.TypePong {
			return
		}
	}
}

// writeBacklog stores pausedBacklog agent messages in a session's
// outbound log as a fast writer would: pipelined publishes of envelopes
// numbered 1..N. sample is called every few thousand messages.
func writeBacklog(t *testing.T, ctx context.Context, js jetstream.JetStream, session string, sample func()) float64 {
	t.Helper()
	subj, err := streams.LogSubject(session, streams.Out)
	if err != nil {
		t.Fatal(err)
	}
	msgID := haip.NewUUID()
	total := 0
	text := strings.Repeat("w", 200)
	for seq := 1; seq <= pausedBacklog; seq++ {
		env, err := haip.New(session, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: msgID, Text: text})
		if err != nil {
			t.Fatal(err)
		}
		env.Seq = haip.U64(uint64(seq))
		data, err := haip.Encode(env)
		if err != nil {
			t.Fatal(err)
		}
		total += len(data)
		m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
		m.Header.Set(streams.HeaderSeq, strconv.Itoa(seq))
		m.Header.Set(streams.HeaderType, string(haip.TypeTextMessagePart))
		m.Header.Set(streams.HeaderChannel, string(haip.ChannelAgent))
		// A loaded machine makes the writer wait for acks rather than fail.
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if seq%5000 == 0 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				t.Fatal("publishes not acknowledged")
			}
			sample()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishes not acknowledged")
	}
	return float64(total)
}

// edgeHeap reads the edge process's Go heap in use from its /metrics.
func edgeHeap(t *testing.T, base string) float64 {
	t.Helper()
	resp := scrape(t, base, "/metrics")
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	t.Fatal("no go_memstats_heap_inuse_bytes on /metrics")
	return 0
}
