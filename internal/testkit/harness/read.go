package harness

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// ReadUntil reads envelopes until stop says so, within the deadline, and
// returns the log messages (control messages are skipped, ERRORs logged).
func ReadUntil(t testing.TB, c *client.Conn, within time.Duration, stop func(*haip.Envelope) bool) []*haip.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got []*haip.Envelope
	for {
		env, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read after %d log messages: %v", len(got), err)
		}
		if client.IsControl(env.Type) {
			if env.Type == haip.TypeError {
				t.Logf("ERROR from the edge: %s", env.Payload)
			}
			continue
		}
		got = append(got, env)
		if stop(env) {
			return got
		}
	}
}

// ReadControl reads until an envelope of type typ arrives.
func ReadControl(t testing.TB, c *client.Conn, typ haip.Type, within time.Duration) *haip.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		env, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if env.Type == typ {
			return env
		}
	}
}

// ReadEnd reads until the connection ends and returns why.
func ReadEnd(t testing.TB, c *client.Conn, within time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if _, err := c.Read(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the connection did not end within %s", within)
			}
			return err
		}
	}
}

// ErrorPayload decodes the payload of an ERROR.
func ErrorPayload(t testing.TB, env *haip.Envelope) haip.ErrorPayload {
	t.Helper()
	var p haip.ErrorPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// IsRunFinished is a ReadUntil stop: the run's RUN_FINISHED.
func IsRunFinished(e *haip.Envelope) bool { return e.Type == haip.TypeRunFinished }

// AssertDense checks that the envelopes' seqs run first, first+1, … with
// no gap or repeat.
func AssertDense(t testing.TB, envs []*haip.Envelope, first uint64) {
	t.Helper()
	seqs := make([]uint64, len(envs))
	for i, e := range envs {
		seqs[i] = uint64(e.Seq)
	}
	AssertDenseSeqs(t, seqs, first)
}

// AssertDenseSeqs checks that seqs run first, first+1, … with no gap or
// repeat; a failure also shows detail (what the seqs were read from).
func AssertDenseSeqs(t testing.TB, seqs []uint64, first uint64, detail ...string) {
	t.Helper()
	for i, s := range seqs {
		if want := first + uint64(i); s != want {
			t.Fatalf("message %d has seq %d, want %d; seqs %v\n%s", i, s, want, seqs, strings.Join(detail, "\n"))
		}
	}
}

// AnswerText joins the TEXT_MESSAGE_PART texts.
func AnswerText(t testing.TB, envs []*haip.Envelope) string {
	t.Helper()
	var b strings.Builder
	for _, e := range envs {
		if e.Type == haip.TypeTextMessagePart {
			var p haip.TextMessagePartPayload
			if err := e.DecodePayload(&p); err != nil {
				t.Fatal(err)
			}
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// U64 points at v (for client.Options.LastRxSeq).
func U64(v uint64) *uint64 { return &v }

// CheckAnswer checks a whole session log read from seq 1: dense, one run
// (one RUN_STARTED, one RUN_FINISHED), and the demo agent's whole answer
// to text.
func CheckAnswer(t testing.TB, all []*haip.Envelope, text string) {
	t.Helper()
	AssertDense(t, all, 1)
	kinds := map[haip.Type]int{}
	for _, e := range all {
		kinds[e.Type]++
	}
	if got, want := AnswerText(t, all), demo.Answer(text); got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
	if kinds[haip.TypeRunStarted] != 1 || kinds[haip.TypeRunFinished] != 1 {
		t.Fatalf("run events %v", kinds)
	}
}
