package edge

import (
	"testing"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// entries makes log messages seqs from..to on channel AGENT, at stream
// seqs 10 apart (other sessions' messages between them).
func entries(from, to uint64, typ haip.Type) []streams.Entry {
	var out []streams.Entry
	for s := from; s <= to; s++ {
		out = append(out, streams.Entry{Position: streams.Position{Seq: s, StreamSeq: 10 * s}, Type: string(typ),
			Channel: string(haip.ChannelAgent), Data: []byte(`{}`)})
	}
	return out
}

// newTestDelivery starts a delivery at seq 1 with msgs messages of credit
// on every channel (unlimited bytes), taking every type but PING.
func newTestDelivery(msgs int64) *delivery {
	o := &outCredit{}
	for i := range o.ch {
		o.ch[i] = credit{msgs: msgs, bytes: unlimited, counted: msgs != unlimited}
	}
	d := &delivery{credit: o, accept: func(t string) bool { return t != string(haip.TypePing) }}
	d.start(position{next: 1, streamSeq: 1})
	return d
}

func kinds(steps []step) []stepKind {
	var out []stepKind
	for _, s := range steps {
		out = append(out, s.kind)
	}
	return out
}

// The delivery state machine, with no JetStream: catching up goes live at
// the end of the log, blocks on spent credit and goes on when credit
// comes, reports what retention dropped, skips what the client does not
// take, and checks every live message is the next.
func TestDeliveryStates(t *testing.T) {
	t.Run("catch up, then live", func(t *testing.T) {
		d := newTestDelivery(unlimited)
		if d.state != catchingUp {
			t.Fatalf("state %s after start", d.state)
		}
		steps := d.take(entries(1, 3, haip.TypeTextMessagePart), false)
		if len(steps) != 3 || d.state != live || d.next != 4 || d.streamSeq != 31 {
			t.Fatalf("%v, state %s, next %d at %d", kinds(steps), d.state, d.next, d.streamSeq)
		}
		// Live: the next is taken, an old one ignored, a gap goes back
		// to the log.
		if st, ok := d.offer(entries(4, 4, haip.TypeTextMessagePart)[0]); !ok || st.kind != stepSend || d.next != 5 {
			t.Fatalf("live seq 4: %v %v, next %d", st, ok, d.next)
		}
		if _, ok := d.offer(entries(2, 2, haip.TypeTextMessagePart)[0]); ok || d.state != live {
			t.Fatalf("an old live message was taken (state %s)", d.state)
		}
		if _, ok := d.offer(entries(7, 7, haip.TypeTextMessagePart)[0]); ok || d.state != catchingUp {
			t.Fatalf("a gap: state %s, want catching up", d.state)
		}
		d.take(entries(5, 7, haip.TypeTextMessagePart), false)
		d.overflow()
		if d.state != catchingUp {
			t.Fatalf("overflow: state %s", d.state)
		}
	})
	t.Run("credit blocks and frees", func(t *testing.T) {
		d := newTestDelivery(2)
		steps := d.take(entries(1, 5, haip.TypeTextMessagePart), true)
		if len(steps) != 2 || d.state != blocked || d.held == nil || d.held.Seq != 3 || d.next != 3 || d.streamSeq != 30 {
			t.Fatalf("%v, state %s, held %v, next %d at %d", kinds(steps), d.state, d.held, d.next, d.streamSeq)
		}
		d.credited() // nothing new yet
		if d.state != blocked {
			t.Fatalf("went on without credit: %s", d.state)
		}
		d.credit.apply(flowMsg{typ: haip.TypeFlowUpdate, ch: 1, msgs: 10}, CreditOn)
		d.credited()
		if d.state != catchingUp || d.held != nil {
			t.Fatalf("after FLOW_UPDATE: state %s", d.state)
		}
		// A batch with nothing to send for: blocked before reading.
		e := newTestDelivery(0)
		if n := e.batchSize(256); n != 0 || e.state != blocked || e.held != nil {
			t.Fatalf("no credit: batch %d, state %s", n, e.state)
		}
	})
	t.Run("retention gap and skipped types", func(t *testing.T) {
		d := newTestDelivery(0) // no credit at all
		batch := append(entries(4, 4, haip.TypePing), entries(5, 5, haip.TypeTextMessagePart)...)
		steps := d.take(batch, false)
		// 1-3 are gone: told; PING is not the client's: skipped though
		// there is no credit; 5 waits for credit.
		if got := kinds(steps); len(got) != 2 || got[0] != stepLost || steps[0].lostFrom != 1 || got[1] != stepSkip || d.state != blocked || d.next != 5 {
			t.Fatalf("%v (lost from %d), state %s, next %d", got, steps[0].lostFrom, d.state, d.next)
		}
	})
	t.Run("a replay's hold keeps the cursor", func(t *testing.T) {
		d := newTestDelivery(1)
		d.take(entries(1, 1, haip.TypeTextMessagePart), false) // live, credit spent
		held := entries(1, 1, haip.TypeTextMessagePart)[0]
		d.holdFor(&held)
		if d.state != blocked || d.next != 2 {
			t.Fatalf("replay hold: state %s, next %d", d.state, d.next)
		}
		d.credit.apply(flowMsg{typ: haip.TypeFlowUpdate, ch: 1, msgs: 1}, CreditOn)
		d.credited()
		if d.state != live || d.next != 2 {
			t.Fatalf("after credit: state %s, next %d; want live at 2", d.state, d.next)
		}
		// Live messages dropped while blocked are read from the log once
		// the block ends, even if no later message shows the gap.
		d.holdFor(&held)
		d.overflow()
		d.credit.apply(flowMsg{typ: haip.TypeFlowUpdate, ch: 1, msgs: 1}, CreditOn)
		d.credited()
		if d.state != catchingUp {
			t.Fatalf("overflow while blocked, then credit: state %s, want catching up", d.state)
		}
	})
}
