package edge_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// A client drops in the middle of the agent's answer and resumes on a
// second edge from the last seq it got, over each transport: the union is
// dense, in order, with no duplicate, and the answer is whole.
func TestResumeOnSecondEdge(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(10 * time.Millisecond)
	e1, e2 := f.Edge(edge.Config{}), f.Edge(edge.Config{})
	eachTransport(t, func(t *testing.T, tr string) {
		c1 := harness.Dial(t, e1, client.Options{Transport: tr})
		if _, err := c1.SendText(context.Background(), "hello there"); err != nil {
			t.Fatal(err)
		}
		first := harness.ReadUntil(t, c1, 10*time.Second, func(*haip.Envelope) bool { return false || len0(c1) >= 8 })
		_ = c1.CloseNow() // like a lost network: no close handshake

		c2 := harness.Dial(t, e2, client.Options{Transport: tr, Session: c1.Session(), LastRxSeq: harness.U64(c1.LastSeq())})
		rest := harness.ReadUntil(t, c2, 20*time.Second, harness.IsRunFinished)
		all := append(first, rest...)
		harness.AssertDense(t, all, 1)
		if all[0].Type != haip.TypeRunStarted {
			t.Fatalf("first message %s, want RUN_STARTED", all[0].Type)
		}
		if got, want := harness.AnswerText(t, all), demo.Answer("hello there"); got != want {
			t.Fatalf("answer %q, want %q", got, want)
		}
	})
}

// len0 reports how many log messages c has received.
func len0(c *client.Conn) uint64 { return c.LastSeq() }

// The single-box edge restarted on its data dir (server, edge and agent
// all stopped mid-answer): the client resumes with nothing lost or
// repeated, and the interrupted run completes once.
func TestResumeAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFabricAt(t, dir, streams.Config{})
	stopAgent := f.Agent(30 * time.Millisecond)
	e := f.Edge(edge.Config{})
	c := f.Dial(e, client.Options{})
	if _, err := c.SendText(context.Background(), "survive a restart"); err != nil {
		t.Fatal(err)
	}
	first := harness.ReadUntil(t, c, 10*time.Second, func(*haip.Envelope) bool { return c.LastSeq() >= 6 })
	_ = c.CloseNow()
	e.Stop()
	stopAgent()
	f.Stop()

	f2 := newFabricAt(t, dir, streams.Config{})
	f2.Agent(time.Millisecond)
	e2 := f2.Edge(edge.Config{})
	c2 := f2.Dial(e2, client.Options{Session: c.Session(), LastRxSeq: harness.U64(c.LastSeq())})
	rest := harness.ReadUntil(t, c2, 30*time.Second, harness.IsRunFinished)
	all := append(first, rest...)
	harness.AssertDense(t, all, 1)
	if got, want := harness.AnswerText(t, all), demo.Answer("survive a restart"); got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
	// Only one RUN_STARTED and one RUN_FINISHED although the run ran twice.
	n := map[haip.Type]int{}
	for _, e := range all {
		n[e.Type]++
	}
	if n[haip.TypeRunStarted] != 1 || n[haip.TypeRunFinished] != 1 {
		t.Fatalf("run events %v", n)
	}
}

// Two agents on two edges write into one session at once, over each
// transport: the user sees one dense sequence with each writer's messages
// in their own order.
func TestTwoWritersDense(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e1, e2, e3 := f.Edge(edge.Config{}), f.Edge(edge.Config{}), f.Edge(edge.Config{})
	agentTokens := []string{f.Token("agent-0", auth.RoleAgent), f.Token("agent-1", auth.RoleAgent)}
	eachTransport(t, func(t *testing.T, tr string) {
		user := harness.Dial(t, e3, client.Options{})
		session := user.Session()
		const perWriter = 150
		var wg sync.WaitGroup
		for w, e := range []*testEdge{e1, e2} {
			ag := harness.Dial(t, e, client.Options{Transport: tr, Session: session, Token: agentTokens[w]})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					if _, err := ag.Send(context.Background(), haip.ChannelAgent, haip.TypeTextMessagePart,
						haip.TextMessagePartPayload{MessageID: haip.NameUUID("w", fmt.Sprint(w)), Text: fmt.Sprintf("%d:%d", w, i)}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		got := harness.ReadUntil(t, user, 30*time.Second, func(*haip.Envelope) bool { return user.LastSeq() >= 2*perWriter })
		wg.Wait()
		harness.AssertDense(t, got, 1)
		next := map[string]int{}
		for _, e := range got {
			var p haip.TextMessagePartPayload
			_ = e.DecodePayload(&p)
			var w, i int
			fmt.Sscanf(p.Text, "%d:%d", &w, &i)
			key := fmt.Sprint(w)
			if i != next[key] {
				t.Fatalf("writer %d message %d arrived when %d was due", w, i, next[key])
			}
			next[key]++
		}
	})
}

// REPLAY_REQUEST resends exactly the asked range with the original seqs
// and ids, over each transport; a range past the end is refused; older
// than retention is REPLAY_TOO_OLD.
func TestReplayRequest(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Transport: tr})
		ctx := context.Background()
		if _, err := c.SendText(ctx, "replay me"); err != nil {
			t.Fatal(err)
		}
		orig := harness.ReadUntil(t, c, 10*time.Second, harness.IsRunFinished)
		if len(orig) < 20 {
			t.Fatalf("only %d messages", len(orig))
		}
		cases := []struct {
			name     string
			from, to uint64
			want     []uint64 // seqs, or nil for an error
			code     haip.Code
		}{
			{name: "middle", from: 5, to: 9, want: []uint64{5, 6, 7, 8, 9}},
			{name: "one", from: 3, to: 3, want: []uint64{3}},
			{name: "open end", from: uint64(len(orig)) - 1, want: []uint64{uint64(len(orig)) - 1, uint64(len(orig))}},
			{name: "to past delivered is clamped", from: uint64(len(orig)), to: 1000, want: []uint64{uint64(len(orig))}},
			{name: "beyond the end", from: 999, code: haip.CodeProtocolViolation},
			{name: "to before from", from: 9, to: 5, code: haip.CodeProtocolViolation},
		}
		for _, tc := range cases {
			p := haip.ReplayRequestPayload{FromSeq: haip.U64(tc.from)}
			if tc.to != 0 {
				to := haip.U64(tc.to)
				p.ToSeq = &to
			}
			req, err := c.Send(ctx, haip.ChannelSystem, haip.TypeReplayRequest, p)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				errEnv := harness.ReadControl(t, c, haip.TypeError, 5*time.Second)
				ep := harness.ErrorPayload(t, errEnv)
				if ep.Code != tc.code || ep.RelatedID != req.ID {
					t.Fatalf("%s: error %+v, want %s related to %s", tc.name, ep, tc.code, req.ID)
				}
				continue
			}
			// A PING after the replay marks its end: the edge answers in order.
			ping, _ := c.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: tc.name})
			var got []uint64
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			for {
				env, err := c.Read(rctx)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if env.Type == haip.TypePong {
					break
				}
				if !client.IsControl(env.Type) {
					if env.ID != orig[env.Seq-1].ID {
						t.Fatalf("%s: replayed seq %d has id %s, originally %s", tc.name, env.Seq, env.ID, orig[env.Seq-1].ID)
					}
					got = append(got, uint64(env.Seq))
				}
			}
			cancel()
			_ = ping
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("%s: replayed %v, want %v", tc.name, got, tc.want)
			}
		}
	})
}

// Messages dropped by retention: a replay or a resume asking for them
// gets REPLAY_TOO_OLD, never silence, over each transport.
func TestReplayTooOld(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{MaxAge: time.Second, DuplicateWindow: 500 * time.Millisecond})
	f.Agent(-1)
	e := f.Edge(edge.Config{})
	lg := f.Log()
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Transport: tr})
		ctx := context.Background()
		if _, err := c.SendText(ctx, "soon gone"); err != nil {
			t.Fatal(err)
		}
		orig := harness.ReadUntil(t, c, 10*time.Second, harness.IsRunFinished)
		testkit.Eventually(t, 20*time.Second, func() bool {
			b, err := lg.Bounds(ctx, c.Session(), streams.Out)
			return err == nil && b.Empty()
		}, "retention never dropped the log")

		req, _ := c.Send(ctx, haip.ChannelSystem, haip.TypeReplayRequest, haip.ReplayRequestPayload{FromSeq: 1})
		ep := harness.ErrorPayload(t, harness.ReadControl(t, c, haip.TypeError, 5*time.Second))
		if ep.Code != haip.CodeReplayTooOld || ep.RelatedID != req.ID {
			t.Fatalf("replay: %+v", ep)
		}

		// Resume from the middle of what expired.
		c2, err := harness.TryDial(t, e, client.Options{Transport: tr, Session: c.Session(), LastRxSeq: harness.U64(2)})
		if err != nil {
			t.Fatal(err)
		}
		ep = harness.ErrorPayload(t, harness.ReadControl(t, c2, haip.TypeError, 5*time.Second))
		if ep.Code != haip.CodeReplayTooOld || ep.Detail["first_available"] != fmt.Sprint(len(orig)+1) {
			t.Fatalf("resume: %+v", ep)
		}
		// The session goes on with the next number, not 1.
		if _, err := c2.SendText(ctx, "again"); err != nil {
			t.Fatal(err)
		}
		more := harness.ReadUntil(t, c2, 10*time.Second, harness.IsRunFinished)
		harness.AssertDense(t, more, uint64(len(orig))+1)
	})
}

// Many connections catching up at once share CATCHUP_READS read slots:
// with a single slot, twenty clients resuming the same 2,000-message
// backlog in batches of 50 each get all of it, dense and once (a slot
// kept by any path would stop the rest), after a client that left at
// once.
func TestCatchupReadsTakeTurns(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{CatchupReads: 1, CatchupBatch: 50})
	owner := f.Dial(e, client.Options{})
	session := owner.Session()
	const backlog = 2000
	f.fill(t, session, backlog, 32)

	zero := uint64(0)
	quitter := f.Dial(e, client.Options{Session: session, LastRxSeq: &zero})
	_ = quitter.CloseNow()
	const clients = 20
	errs := make(chan error, clients)
	for range clients {
		go func() {
			c, err := f.TryDial(e, client.Options{Session: session, LastRxSeq: &zero})
			if err != nil {
				errs <- err
				return
			}
			defer c.CloseNow() //nolint:errcheck
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for next := uint64(1); next <= backlog; {
				env, err := c.Read(ctx)
				if err != nil {
					errs <- fmt.Errorf("after seq %d: %w", next-1, err)
					return
				}
				if client.IsControl(env.Type) {
					continue
				}
				if uint64(env.Seq) != next {
					errs <- fmt.Errorf("seq %d, want %d", env.Seq, next)
					return
				}
				next++
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
