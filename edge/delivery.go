package edge

import (
	"context"

	"github.com/haipfabric/haipfabric/streams"
)

// logReader is what delivery reads a session log through: a batch from a
// stream seq (streams.Reader is one). Unit tests give it a slice.
type logReader interface {
	Read(ctx context.Context, from uint64, max, maxBytes int) (entries []streams.Entry, more bool, err error)
	Close(ctx context.Context)
}

var _ logReader = (*streams.Reader)(nil)

// deliveryState is where a connection's delivery of its session log is.
type deliveryState uint8

const (
	// handshaking: no HAI yet, nothing to deliver.
	handshaking deliveryState = iota
	// catchingUp: reading the log from the cursor, a bounded batch at a
	// time, as far as the client's credit allows.
	catchingUp
	// live: taking live messages from the hub, each checked to be the
	// next; a gap or an overflow goes back to catchingUp.
	live
	// blocked: the client's credit (or a paused channel) stops delivery;
	// nothing is read meanwhile and the log keeps the backlog. Credit
	// that allows the held message returns to the state before.
	blocked
)

func (s deliveryState) String() string {
	return [...]string{"handshaking", "catching up", "live", "blocked"}[s]
}

// delivery is a connection's cursor in its session log and the state
// around it: where it is, what it waits for, and the client's credit (the
// writer owns it; it does no I/O but reads through its logReader, and
// decides; the writer writes what it decided). See writer.go.
type delivery struct {
	state     deliveryState
	resume    deliveryState // where blocked returns to
	next      uint64        // next seq to deliver
	streamSeq uint64        // where in the stream to look for it
	// held is the message blocked waits for credit for (nil when no
	// channel had any credit: nothing was read).
	held *streams.Entry
	// credit is what the client lets the edge send (conn.out).
	credit *outCredit
	// accept reports whether the client takes a type; one it does not is
	// skipped, its seq counted as delivered.
	accept func(typ string) bool
	// reader serves the catch-up in progress (nil when none).
	reader logReader
}

// stepKind says what the writer must do for one step.
type stepKind uint8

const (
	stepSend stepKind = iota // write the entry (its credit is spent)
	stepSkip                 // a type the client does not take: counted as delivered, not written
	stepLost                 // retention dropped lostFrom..entry.Seq-1 before the client saw them: tell it
)

// step is one thing the writer does, in order, for a catch-up batch or a
// live message.
type step struct {
	kind     stepKind
	entry    streams.Entry
	lostFrom uint64
}

// start leaves handshaking: delivery begins at p, from the log.
func (d *delivery) start(p position) {
	d.next, d.streamSeq = p.next, max(p.streamSeq, 1)
	d.state = catchingUp
}

// batchSize is how many messages the next catch-up read may usefully
// fetch. Zero blocks delivery until credit comes: nothing is read.
func (d *delivery) batchSize(limit int) int {
	n := d.credit.budget(limit)
	if n == 0 {
		d.block(nil, catchingUp)
	}
	return n
}

// take plans a catch-up batch, read from streamSeq: the steps to carry
// out, in order. It moves the cursor past them, and the state: blocked at
// the first message the credit does not allow (the rest of the batch is
// read again once credit comes), live when the batch reached the end of
// the log (more false).
func (d *delivery) take(entries []streams.Entry, more bool) []step {
	var steps []step
	for _, e := range entries {
		if e.Seq < d.next {
			d.streamSeq = e.StreamSeq + 1
			continue
		}
		if e.Seq > d.next {
			steps = append(steps, step{kind: stepLost, entry: e, lostFrom: d.next})
			d.next = e.Seq
		}
		s, ok := d.pass(e, catchingUp)
		if !ok {
			return steps
		}
		steps = append(steps, s)
	}
	if !more {
		d.state = live
	}
	return steps
}

// offer takes a live message. ok: carry out the step now. Not ok: nothing
// to write (delivered already), or delivery went back to the log (a gap)
// or is blocked (no credit).
func (d *delivery) offer(e streams.Entry) (s step, ok bool) {
	switch {
	case e.Seq < d.next:
		return step{}, false
	case e.Seq > d.next:
		d.state = catchingUp // the log has what was missed
		return step{}, false
	}
	return d.pass(e, catchingUp)
}

// overflow: live messages were dropped; read them from the log (at once,
// or when a block for a replay's message ends).
func (d *delivery) overflow() {
	switch {
	case d.state == live:
		d.state = catchingUp
	case d.state == blocked && d.resume == live:
		d.resume = catchingUp
	}
}

// pass moves the cursor past e, spending its credit, unless the credit
// does not allow it: then delivery blocks on e (returning to resume).
func (d *delivery) pass(e streams.Entry, resume deliveryState) (step, bool) {
	if e.Type != "" && !d.accept(e.Type) {
		d.advance(e)
		return step{kind: stepSkip, entry: e}, true
	}
	ch, size := entryChannel(&e), entrySize(&e)
	if !d.credit.allows(ch, size) {
		d.block(&e, resume)
		return step{}, false
	}
	d.credit.spend(ch, size)
	d.advance(e)
	return step{kind: stepSend, entry: e}, true
}

func (d *delivery) advance(e streams.Entry) {
	d.next, d.streamSeq = e.Seq+1, e.StreamSeq+1
}

// block stops delivery until the credit allows e (nil: until any credit
// comes), then returns to resume. When e is on the cursor's path (not a
// replay's), delivery restarts from e, read again from the log.
func (d *delivery) block(e *streams.Entry, resume deliveryState) {
	d.state, d.resume, d.held = blocked, resume, nil
	if e == nil {
		return
	}
	held := *e
	held.Data = append([]byte(nil), e.Data...) // not the whole batch's buffer
	held.Bin = nil
	if e.Bin != nil {
		held.Bin = make([]byte, len(e.Bin)) // only its size matters
	}
	d.held = &held
	if resume == catchingUp && e.Seq >= d.next {
		d.next, d.streamSeq = e.Seq, e.StreamSeq
	}
}

// holdFor blocks delivery for a message that is not on the cursor's path
// (a replay's): the cursor stays, and delivery returns to where it was.
func (d *delivery) holdFor(e *streams.Entry) {
	resume := d.state
	if resume == blocked {
		resume = d.resume
	}
	held := *e
	held.Data = append([]byte(nil), e.Data...)
	held.Bin = nil
	if e.Bin != nil {
		held.Bin = make([]byte, len(e.Bin))
	}
	d.state, d.resume, d.held = blocked, resume, &held
}

// credited is called after the client's flow control changed the credit:
// a blocked delivery goes on when the held message is now allowed.
func (d *delivery) credited() {
	if d.state != blocked {
		return
	}
	if d.held != nil && !d.credit.allows(entryChannel(d.held), entrySize(d.held)) {
		return
	}
	d.state, d.held = d.resume, nil
}

// closeReader ends the catch-up read, if any.
func (d *delivery) closeReader(ctx context.Context) {
	if d.reader != nil {
		d.reader.Close(ctx)
		d.reader = nil
	}
}
