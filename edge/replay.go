package edge

import (
	"context"
	"errors"
	"strconv"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// REPLAY_REQUEST (HAIP §9) resends part of the log a client has already
// been sent. It is paced like any delivery, so that a small request
// cannot make the edge send or hold more than it would for the log
// itself:
//
//   - reads take their turn among the edge's CATCHUP_READS;
//   - on a connection, the writer serves one replay at a time, a batch
//     per turn, spending the client's credit (a replay waits for credit
//     like the log does), and at most maxPendingReplays wait behind it;
//   - one request returns at most REPLAY_MAX_BYTES (all the replays of one
//     POST together); past that it stops and says from which seq to ask
//     again (detail next_seq);
//   - a user's replays spend USER_REPLAY_BYTES_PER_MINUTE.

// maxPendingReplays is how many REPLAY_REQUESTs may wait behind the one a
// connection's writer is serving; more are refused with RATE_LIMITED.
const maxPendingReplays = 4

// maxBehindReplay bounds the control items (answers, errors, replays)
// that wait, in order, behind a replay in progress; past it the replay is
// cut short (saying where to ask again) so that they go out.
const maxBehindReplay = 4 * ctrlQueue

// replaying is one REPLAY_REQUEST the writer is serving. Writer-owned.
type replaying struct {
	req     replayRequest
	started bool   // the range has been checked and located
	next    uint64 // next seq to resend
	end     uint64 // last seq to resend
	cursor  uint64 // stream seq to read from
	sent    int    // bytes resent so far
}

// The writer keeps the client's requests in order around a replay: what
// it is asked after a REPLAY_REQUEST (a PONG, another replay) goes out
// after the replay, while flow control takes effect at once (the replay
// may be waiting for it). replay is the replay in progress (nil: none);
// behind holds what came after it, in order. Writer-owned.

// queueOutbound takes one control item from the reader: at once when no
// replay is in progress, else in order behind it.
func (c *conn) queueOutbound(o *outbound) error {
	if c.inReplay == nil {
		if o.replay != nil {
			c.inReplay = &replaying{req: *o.replay}
			return nil
		}
		return c.writeControl(o.env)
	}
	if o.replay != nil && c.pendingReplays() >= maxPendingReplays {
		// Refused at once (the ERROR names the request it answers), not
		// after the replays it would have waited for.
		return c.writeError(c.srv.refuseLimit(limitReplaysWaiting, "too many REPLAY_REQUESTs waiting on this connection", 0).
			WithRelated(o.replay.relatedID).WithDetail("max_pending", maxPendingReplays))
	}
	c.behind = append(c.behind, o)
	if len(c.behind) > maxBehindReplay {
		return c.replayDone(haip.Errorf(haip.CodeRateLimited, "replay cut short: too many requests waiting behind it; ask again from seq %d", c.inReplay.next).
			WithDetail("next_seq", strconv.FormatUint(c.inReplay.next, 10)).WithDetail("limit", string(limitReplaysWaiting)))
	}
	return nil
}

// pendingReplays counts the replays waiting behind the one in progress.
func (c *conn) pendingReplays() int {
	n := 0
	for _, o := range c.behind {
		if o.replay != nil {
			n++
		}
	}
	return n
}

// replayDone ends the replay in progress, after writing herr (if any),
// and sends what waited behind it up to the next replay, which starts.
func (c *conn) replayDone(herr *haip.Error) error {
	rp := c.inReplay
	c.inReplay = nil
	if herr != nil {
		if err := c.writeError(herr.WithRelated(rp.req.relatedID)); err != nil {
			return err
		}
	}
	for len(c.behind) > 0 {
		o := c.behind[0]
		c.behind[0] = nil
		c.behind = c.behind[1:]
		if o.replay != nil {
			c.inReplay = &replaying{req: *o.replay}
			return nil
		}
		if err := c.writeControl(o.env); err != nil {
			return err
		}
	}
	c.behind = nil
	return nil
}

// replayStep serves one batch of the replay at the head of the queue: it
// resends the range with the original seqs, never past what this
// connection was delivered (later messages come by normal delivery).
func (c *conn) replayStep(d *delivery) error {
	rp := c.inReplay
	ctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
	defer cancel()
	if !rp.started {
		first, end, cursor, herr := c.srv.replayStart(ctx, c.session, c.readDir, rp.req.from, rp.req.to, c.delivered.Load(), 0)
		if herr != nil || first > end {
			return c.replayDone(herr)
		}
		rp.started, rp.next, rp.end, rp.cursor = true, first, end, cursor
	}
	entries, more, err := c.srv.readLog(ctx, c.session, c.readDir, rp.cursor)
	if err != nil {
		if c.ctx.Err() != nil {
			return peerClosed()
		}
		return c.replayDone(haip.Errorf(haip.CodeInternalError, "replay interrupted at seq %d; ask again from there", rp.next).
			WithDetail("next_seq", strconv.FormatUint(rp.next, 10)))
	}
	for i := range entries {
		e := &entries[i]
		if e.Seq < rp.next {
			rp.cursor = e.StreamSeq + 1
			continue
		}
		if e.Seq > rp.end {
			return c.replayDone(nil)
		}
		if e.Type != "" && !c.accepts.has(haip.Type(e.Type)) {
			rp.next, rp.cursor = e.Seq+1, e.StreamSeq+1
			continue
		}
		size := entrySize(e)
		if !c.out.allows(entryChannel(e), size) {
			d.holdFor(e) // the replay reads it again once credit comes
			c.srv.metrics.creditWaits.Inc()
			return nil
		}
		if herr := c.srv.replayBudget(c.ident, &rp.sent, size, e.Seq); herr != nil {
			return c.replayDone(herr)
		}
		c.out.spend(entryChannel(e), size)
		if err := c.writeLog(*e); err != nil {
			return err
		}
		c.srv.metrics.replayBytes.Add(float64(size))
		rp.next, rp.cursor = e.Seq+1, e.StreamSeq+1
	}
	if !more || len(entries) == 0 || rp.next > rp.end {
		return c.replayDone(nil)
	}
	return nil
}

// replayBudget spends size bytes of a replay that has sent *sent bytes so
// far (one request: REPLAY_MAX_BYTES; the user: its bytes per minute).
// The first message of a request always fits the request's budget. A
// refusal names the seq to ask again from.
func (s *Server) replayBudget(id auth.Identity, sent *int, size int, seq uint64) *haip.Error {
	next := strconv.FormatUint(seq, 10)
	if *sent > 0 && *sent+size > s.cfg.MaxReplayBytes {
		return haip.Errorf(haip.CodeMessageTooLarge, "replay stopped after %d bytes (REPLAY_MAX_BYTES %d); ask again from seq %d", *sent, s.cfg.MaxReplayBytes, seq).
			WithDetail("next_seq", next).WithDetail("max_bytes", s.cfg.MaxReplayBytes)
	}
	if ok, wait := s.limits.allow(id, limitReplay, size); !ok {
		return s.refuseLimit(limitReplay, "replay of seq "+next+" and after", wait).WithDetail("next_seq", next)
	}
	*sent += size
	return nil
}

// readLog reads one batch of a session log from a stream seq, in its
// turn among the edge's CATCHUP_READS.
func (s *Server) readLog(ctx context.Context, session string, dir streams.Direction, cursor uint64) ([]streams.Entry, bool, error) {
	select {
	case s.catchupSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	defer func() { <-s.catchupSlots }()
	s.metrics.catchups.Inc()
	s.metrics.catchupN.Add(1)
	return s.log.Read(ctx, session, dir, cursor, s.cfg.CatchupBatch, s.cfg.CatchupBytes)
}

// replayStart checks a replay range from..to of a session log (to 0: the
// last), clamped to upTo (0: no bound), and locates its start. A from
// past the end is PROTOCOL_VIOLATION; a from that retention dropped is
// REPLAY_TOO_OLD. With maxMsgs > 0, a range of more messages is refused.
// first > end means there is nothing to send.
func (s *Server) replayStart(ctx context.Context, session string, dir streams.Direction, from, to, upTo uint64, maxMsgs int) (first, end, cursor uint64, herr *haip.Error) {
	if from == 0 {
		from = 1
	}
	if to != 0 && to < from {
		return 0, 0, 0, haip.Errorf(haip.CodeProtocolViolation, "to_seq %d is before from_seq %d", to, from)
	}
	b, err := s.log.Bounds(ctx, session, dir)
	if err != nil {
		return 0, 0, 0, haip.Errorf(haip.CodeInternalError, "session log unavailable; retry")
	}
	switch {
	case from > b.Last.Seq:
		return 0, 0, 0, haip.Errorf(haip.CodeProtocolViolation, "from_seq %d is beyond the last seq %d", from, b.Last.Seq).
			WithDetail("last_seq", strconv.FormatUint(b.Last.Seq, 10))
	case from < b.First.Seq:
		return 0, 0, 0, haip.Errorf(haip.CodeReplayTooOld, "from_seq %d is past retention; the oldest kept is %d", from, b.First.Seq).
			WithDetail("first_available", strconv.FormatUint(b.First.Seq, 10))
	}
	end = b.Last.Seq
	if to != 0 && to < end {
		end = to
	}
	if upTo != 0 && upTo < end {
		end = upTo
	}
	if from > end {
		return from, end, 0, nil
	}
	if maxMsgs > 0 && end-from+1 > uint64(maxMsgs) {
		return 0, 0, 0, haip.Errorf(haip.CodeProtocolViolation, "range of %d messages is over the %d one request may return; resume the stream from seq %d instead", end-from+1, maxMsgs, from-1)
	}
	p, err := s.log.Find(ctx, session, dir, from)
	if errors.Is(err, streams.ErrTooOld) {
		return 0, 0, 0, haip.Errorf(haip.CodeReplayTooOld, "from_seq %d is past retention", from)
	}
	if err != nil {
		return 0, 0, 0, haip.Errorf(haip.CodeInternalError, "session log unavailable; retry")
	}
	return from, end, p.StreamSeq, nil
}

// postReplay answers a POSTed REPLAY_REQUEST: the messages of the range
// inlined (binary as base64), within what is left of the POST's byte
// budget (*sent bytes spent by its earlier replays). A replay that stops
// early returns the seq to ask again from (next, 0 when complete); one
// that could send nothing at all is refused.
func (s *Server) postReplay(ctx context.Context, a admission, session string, p haip.ReplayRequestPayload, sent *int) (replies [][]byte, next uint64, herr *haip.Error) {
	readDir, _ := directions(a.id.Role)
	to := uint64(0)
	if p.ToSeq != nil {
		to = uint64(*p.ToSeq)
	}
	first, end, cursor, herr := s.replayStart(ctx, session, readDir, uint64(p.FromSeq), to, 0, maxPostReplay)
	if herr != nil || first > end {
		return nil, 0, herr
	}
	// want is the next seq to send; stop, a refusal of the budget at want.
	want := first
	var stop *haip.Error
	paced := func(ctx context.Context, cursor uint64) ([]streams.Entry, bool, error) {
		return s.readLog(ctx, session, readDir, cursor)
	}
	err := s.log.Scan(ctx, session, readDir, first, streams.ScanOptions{Start: streams.Position{Seq: first, StreamSeq: cursor}, Read: paced}, func(e streams.Entry) bool {
		if e.Seq > end {
			return false
		}
		b := inlineEntry(e)
		if herr := s.replayBudget(a.id, sent, len(b), e.Seq); herr != nil {
			want, stop = e.Seq, herr
			return false
		}
		replies = append(replies, b)
		s.metrics.replayBytes.Add(float64(len(b)))
		want = e.Seq + 1
		return want <= end
	})
	switch {
	case (stop != nil || err != nil) && len(replies) > 0:
		return replies, want, nil
	case stop != nil:
		return nil, 0, stop
	case err != nil:
		return nil, 0, haip.Errorf(haip.CodeInternalError, "replay interrupted; retry")
	}
	return replies, 0, nil
}
