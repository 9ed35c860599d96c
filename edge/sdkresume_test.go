package edge_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// The v1 SDK resumes with last_rx_seq = the last ack it saw. For its
// dialect (Date.now() seqs) every envelope the edge sends carries the log
// position as ack, so a socket cut in the middle of an answer resumes, on
// another edge, exactly after the last message the SDK took: no
// RESUME_FAILED, nothing lost, nothing twice.
func TestCompatResumeFromAck(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	e1 := f.Edge(edge.Config{})
	e2 := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)

	r := sdkDial(t, e1.WS, tok)
	r.handshake()
	msgID := haip.NewUUID()
	const text = "resume me exactly where I was cut"
	r.send(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID, Text: text})
	r.send(haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msgID})

	var lastAck string
	var got []*haip.Envelope
	take := func(envs ...*haip.Envelope) {
		for _, env := range envs {
			if env.Ack != nil {
				lastAck = strconv.FormatUint(uint64(*env.Ack), 10)
			}
			if client.IsControl(env.Type) {
				continue
			}
			if env.Ack == nil || *env.Ack != env.Seq {
				t.Fatalf("log message seq %d carries ack %v, want its seq", env.Seq, env.Ack)
			}
			got = append(got, env)
		}
	}
	// Read into the answer, then cut the socket.
	env, skipped := r.expect(15*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeTextMessagePart })
	take(append(skipped, env)...)
	_ = r.ws.CloseNow()
	if lastAck == "" {
		t.Fatal("no ack seen before the cut")
	}

	r2 := sdkDial(t, e2.WS, tok)
	r2.session = r.session
	p := helloPayload()
	p.LastRxSeq = lastAck
	r2.send(haip.ChannelSystem, haip.TypeHAI, p)
	env, skipped = r2.expect(20*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeRunFinished })
	for _, s := range append(skipped, env) {
		if s.Type == haip.TypeError {
			t.Fatalf("ERROR on resume: %s", s.Payload)
		}
	}
	take(append(skipped, env)...)
	harness.AssertDense(t, got, 1)
	if got, want := harness.AnswerText(t, got), demo.Answer(text); got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
}
