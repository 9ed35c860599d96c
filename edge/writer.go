package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// writeLoop owns every write to the transport. It returns why the
// connection ends (a *disconnect); the caller closes the transport
// accordingly.
func (c *conn) writeLoop() error {
	cfg := c.srv.cfg
	clock := newWriterClock(time.Duration(cfg.HeartbeatInterval), time.Duration(cfg.HandshakeTimeout), c.validUntil())
	defer clock.stop()

	d := &delivery{credit: &c.out}
	defer func() {
		// The catch-up read in progress, if any, ends with the connection.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), resolveTimeout)
		d.closeReader(ctx)
		cancel()
	}()
	for {
		switch {
		case d.state == handshaking, d.state == blocked:
		case c.inReplay != nil:
			// A replay goes before further delivery, a batch per turn.
			if err := c.flushControl(); err != nil {
				return err
			}
			if err := c.replayStep(d); err != nil {
				return err
			}
			continue
		case d.state == catchingUp:
			if err := c.flushControl(); err != nil {
				return err
			}
			if err := c.catchUp(d); err != nil {
				return err
			}
			continue
		}
		// Live messages are taken only when live: before the handshake
		// none may be dropped, and while blocked nothing is taken, so the
		// hub's queue overflows and the log keeps the backlog.
		var liveCh <-chan *streams.Entry
		if d.state == live {
			liveCh = c.live
		}
		select {
		case <-c.ctx.Done():
			return peerClosed()
		case <-c.drainCh:
			return c.drainClose(d.state != handshaking)
		case end := <-c.closeReq:
			// The reader's ERROR goes out before the close.
			if err := c.flushControl(); err != nil {
				return err
			}
			return end
		case o := <-c.ctrl:
			if err := c.writeOutbound(o); err != nil {
				return err
			}
			if o.flow != nil {
				d.credited()
			}
		case start := <-c.started:
			d.accept = func(typ string) bool { return c.accepts.has(haip.Type(typ)) }
			d.start(start)
			clock.handshook()
		case now := <-clock.c():
			ev := clock.fired(now)
			if ev.tokenExpired {
				return c.tokenExpired(d.state != handshaking)
			}
			if ev.handshakeExpired && d.state == handshaking {
				return c.handshakeTimedOut()
			}
			if ev.beat {
				if err := c.heartbeat(d.state != handshaking); err != nil {
					return err
				}
			}
		case ep := <-liveCh:
			// *ep is shared with the session's other connections.
			st, ok := d.offer(*ep)
			if ok {
				if err := c.carryOut(st); err != nil {
					return err
				}
			} else if d.state == blocked {
				c.srv.metrics.creditWaits.Inc()
			}
		case <-c.overflow:
			d.overflow()
		}
	}
}

// How long a catch-up read is retried while JetStream is briefly away (a
// stream leader election, this edge's NATS reconnecting), paced by the
// fabric's retry policy (streams.Backoff).
const catchupRetry = 10 * time.Second

// readBatch reads the next catch-up batch of at most n messages, in its
// turn (CATCHUP_READS slots per edge: the read's own timeout starts with
// its turn). A read that fails for a transient reason is tried again for
// up to catchupRetry, so a leader election is a pause for the client, not
// a disconnection; after that, or on any other failure, the client is
// told to resume later.
func (c *conn) readBatch(d *delivery, n int) (entries []streams.Entry, more bool, err error) {
	began := time.Now()
	var backoff streams.Backoff
	for {
		select {
		case c.srv.catchupSlots <- struct{}{}:
		case <-c.ctx.Done():
			return nil, false, peerClosed()
		case <-c.drainCh:
			return nil, false, c.drainClose(true)
		}
		ctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
		entries, more, err := d.reader.Read(ctx, d.streamSeq, n, c.srv.cfg.CatchupBytes)
		cancel()
		<-c.srv.catchupSlots
		c.srv.metrics.catchups.Inc()
		c.srv.metrics.catchupN.Add(1)
		switch {
		case err == nil:
			return entries, more, nil
		case c.ctx.Err() != nil:
			return nil, false, peerClosed()
		case streams.IsTransient(err) && time.Since(began) < catchupRetry:
			c.logger.Debug("catch-up read failed; trying again", slog.Any(logKeyErr, err))
			t := time.NewTimer(backoff.Next())
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return nil, false, peerClosed()
			case <-c.drainCh:
				t.Stop()
				return nil, false, c.drainClose(true)
			}
		default:
			c.logger.Error("catch-up read", slog.Any(logKeyErr, err))
			return nil, false, logUnavailable(c.delivered.Load())
		}
	}
}

// drainClose ends the connection for a drain, telling the client where to
// resume.
func (c *conn) drainClose(handshaken bool) error {
	if err := c.flushControl(); err != nil {
		return err
	}
	seq := c.delivered.Load()
	if !c.t.tellsCloseReason() && handshaken {
		// No close frame to say it: an ERROR does (after the handshake,
		// when the reader's state may be read).
		if err := c.writeError(haip.Errorf(haip.CodeServerShutdown, "edge shutting down; resume from seq %d", seq).
			WithDetail("resume_from", strconv.FormatUint(seq, 10))); err != nil {
			return err
		}
	}
	return drained(seq)
}

// handshakeTimedOut ends a connection that sent no HAI in time. (The
// writer's rare branches are methods of their own: the writer's stack
// frame, held by every idle connection, stays small.)
func (c *conn) handshakeTimedOut() error {
	if err := c.flushControl(); err != nil {
		return err
	}
	// The reader may be mid-handshake: touch none of its state.
	herr := haip.Errorf(haip.CodeProtocolViolation, "no HAI within %s", time.Duration(c.srv.cfg.HandshakeTimeout))
	c.srv.metrics.errorsSent.WithLabelValues(string(herr.Code)).Inc()
	if env, err := haip.New(unboundSession, haip.ChannelSystem, haip.TypeError, herr.Payload()); err == nil {
		if err := c.writeControl(env); err != nil {
			return err
		}
	}
	return handshakeLate()
}

// validUntil is when the connection's token stops being valid: its exp
// plus the verifier's leeway (zero: it does not expire).
func (c *conn) validUntil() time.Time {
	if c.ident.Expires.IsZero() {
		return time.Time{}
	}
	return c.ident.Expires.Add(c.srv.verifier.Leeway())
}

// tokenExpired ends a connection whose token has expired, telling the
// client to come back with a fresh token and resume from the last seq it
// was sent (handshaken: the reader's handshake state may be read).
func (c *conn) tokenExpired(handshaken bool) error {
	if err := c.flushControl(); err != nil {
		return err
	}
	herr := haip.Errorf(haip.CodeAuthenticationFailed, "token expired; reconnect with a fresh token and resume from seq %d", c.delivered.Load()).
		WithDetail("reason", "expired").WithDetail("resume_from", strconv.FormatUint(c.delivered.Load(), 10))
	var err error
	if handshaken {
		err = c.writeError(herr)
	} else {
		c.srv.metrics.errorsSent.WithLabelValues(string(herr.Code)).Inc()
		if env, eerr := haip.New(unboundSession, haip.ChannelSystem, haip.TypeError, herr.Payload()); eerr == nil {
			err = c.writeControl(env)
		}
	}
	if err != nil {
		return err
	}
	return tokenExpiredClose(c.delivered.Load())
}

// heartbeat drops a peer silent for too long, and otherwise sends the
// transport's keep-alive, or a PING (d nil: before the handshake).
func (c *conn) heartbeat(handshaken bool) error {
	cfg := &c.srv.cfg
	silent := time.Since(time.Unix(0, c.lastInbound.Load()))
	if c.t.peerCanSend() && silent > time.Duration(cfg.HeartbeatInterval+cfg.HeartbeatTimeout) {
		return heartbeatLost(silent, c.delivered.Load())
	}
	wctx, cancel := context.WithTimeout(c.ctx, time.Duration(cfg.WriteTimeout))
	sent, err := c.t.keepalive(wctx)
	timedOut := errors.Is(wctx.Err(), context.DeadlineExceeded)
	cancel()
	if err != nil {
		// Slow only when the write's own deadline fired; otherwise the
		// peer is gone.
		return c.writeFailed(err, timedOut, fmt.Sprintf("keep-alive not taken; resume from seq %d", c.delivered.Load()))
	}
	if !sent && handshaken && c.accepts.has(haip.TypePing) {
		if env, err := haip.New(c.session, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: haip.NewUUID()}); err == nil {
			return c.writeControl(env)
		}
	}
	return nil
}

// catchUp reads one bounded batch of the log from JetStream and writes
// what delivery plans of it. When the batch reaches the end of the log,
// delivery goes live.
func (c *conn) catchUp(d *delivery) (err error) {
	n := d.batchSize(c.srv.cfg.CatchupBatch)
	if n == 0 {
		c.srv.metrics.creditWaits.Inc() // no channel may send: read nothing
		return nil
	}
	if d.reader == nil {
		r, err := c.srv.log.NewReader(c.session, c.readDir, streams.ReaderOptions{})
		if err != nil {
			c.logger.Error("catch-up reader", slog.Any(logKeyErr, err))
			return logUnavailable(c.delivered.Load())
		}
		d.reader = r
	}
	entries, more, err := c.readBatch(d, n)
	if err != nil {
		return err
	}
	if ck, isCorker := c.t.(corker); isCorker && len(entries) > 1 {
		// The batch leaves in one write (see corkConn), within WRITE_TIMEOUT.
		ck.cork()
		defer func() {
			if uerr := c.uncork(ck); err == nil {
				err = uerr
			}
		}()
	}
	for _, st := range d.take(entries, more) {
		if err := c.carryOut(st); err != nil {
			return err
		}
	}
	switch d.state {
	case blocked:
		c.srv.metrics.creditWaits.Inc()
	case live:
		ctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
		d.closeReader(ctx)
		cancel()
		// Drop what the live queue holds from before this point; anything
		// newer goes through the live branch, with its gap check.
		for d.state == live {
			select {
			case ep := <-c.live:
				if st, ok := d.offer(*ep); ok {
					if err := c.carryOut(st); err != nil {
						return err
					}
				}
			default:
				return nil
			}
		}
	}
	return nil
}

// carryOut writes what delivery decided for one message.
func (c *conn) carryOut(st step) error {
	switch st.kind {
	case stepLost:
		// Retention removed messages the client had not seen yet.
		return c.writeError(haip.Errorf(haip.CodeReplayTooOld, "messages %d to %d are past retention", st.lostFrom, st.entry.Seq-1).
			WithDetail("first_available", strconv.FormatUint(st.entry.Seq, 10)))
	case stepSend:
		if err := c.writeLog(st.entry); err != nil {
			return err
		}
	}
	c.delivered.Store(st.entry.Seq)
	return nil
}

// inlineEntry returns a log message as one envelope, its binary frame (if
// any) inlined as base64.
func inlineEntry(e streams.Entry) []byte {
	if e.Bin == nil {
		return e.Data
	}
	if b, err := haip.InlineBinary(e.Data, e.Bin); err == nil {
		return b
	}
	return e.Data
}

// writeLog writes one log message. An audio chunk stored with its binary
// frame goes out as two frames (envelope, then bytes) to a WebSocket
// client that announced binary_frames, and inline as base64 otherwise.
func (c *conn) writeLog(e streams.Entry) error {
	if e.Bin == nil {
		return c.write(e.Seq, c.positionAck(e.Data, e.Seq))
	}
	if bw, ok := c.t.(binaryWriter); ok && c.binaryOut {
		if err := c.write(e.Seq, c.positionAck(e.Data, e.Seq)); err != nil {
			return err
		}
		return c.writeBin(bw, e)
	}
	return c.write(e.Seq, c.positionAck(inlineEntry(e), e.Seq))
}

// positionAck gives a log message the ack a v1 SDK client resumes from.
//
// That client numbers its own messages with Date.now(), never tracks our
// seq, and on reconnect sends as last_rx_seq the last ack it received; it
// uses ack for nothing else (HAIP.md §16). So for it (c.ackPos, set from
// the timestamp seq of its HAI) ack is not "the highest client seq
// received" but the position in the session log: each log message
// carries its own seq as ack, and each control message the seq of the
// last log message delivered before it (a replayed message, too). Its resume HAI then names exactly
// the last message it processed, and the edge continues from the next
// one: nothing lost, nothing twice. Every other client keeps the
// standard ack. A stored message holds no ack (streams drops it), so the
// field is added, not replaced.
func (c *conn) positionAck(data []byte, seq uint64) []byte {
	if !c.ackPos || len(data) < 2 || data[0] != '{' {
		return data
	}
	// A replayed message (REPLAY_REQUEST) is older than what was
	// delivered: the position stays where delivery is.
	seq = max(seq, c.delivered.Load())
	out := make([]byte, 0, len(data)+32)
	out = append(out, `{"ack":`...)
	out = haip.AppendU64(out, seq)
	if data[1] != '}' {
		out = append(out, ',')
	}
	return append(out, data[1:]...)
}

// writeError writes an ERROR at once, from the writer itself (queueing it
// would put it behind items the writer has not reached yet).
func (c *conn) writeError(e *haip.Error) error {
	c.srv.metrics.errorsSent.WithLabelValues(string(e.Code)).Inc()
	if c.accepts != nil && !c.accepts.has(haip.TypeError) {
		return nil
	}
	env, err := haip.New(c.session, haip.ChannelSystem, haip.TypeError, e.Payload())
	if err != nil {
		return nil
	}
	return c.writeControl(env)
}

// flushControl writes every queued control item.
func (c *conn) flushControl() error {
	for {
		select {
		case o := <-c.ctrl:
			if err := c.writeOutbound(o); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

func (c *conn) writeOutbound(o *outbound) error {
	if o.flow != nil {
		c.srv.metrics.paused.Add(float64(c.out.apply(*o.flow, c.srv.cfg.ServerCredit)))
		return nil
	}
	return c.queueOutbound(o)
}

// writeControl stamps a control envelope with the connection's position
// (seq of the last log message delivered: control messages take no number
// of their own) and cumulative ack, then writes it.
func (c *conn) writeControl(env *haip.Envelope) error {
	env.Seq = haip.U64(c.delivered.Load())
	if c.ackPos {
		if a := c.delivered.Load(); a > 0 {
			ack := haip.U64(a)
			env.Ack = &ack
		}
	} else if a := c.ack.Load(); a > 0 {
		ack := haip.U64(a)
		env.Ack = &ack
	}
	data, err := haip.Encode(env)
	if err != nil {
		c.logger.Error("encode control envelope", slog.Any(logKeyErr, err))
		return nil
	}
	return c.write(uint64(env.Seq), data)
}

// uncork sends what a corked transport holds, within WriteTimeout; a
// client that cannot take it in time is cut as too slow.
func (c *conn) uncork(ck corker) error {
	err := ck.uncork(time.Now().Add(time.Duration(c.srv.cfg.WriteTimeout)))
	if err == nil {
		return nil
	}
	// What the client received of the batch is unknown here: it resumes
	// from its own last seq.
	return c.writeFailed(err, errors.Is(err, os.ErrDeadlineExceeded), "resume from the last seq you received")
}

// writeBin sends the binary frame that follows an envelope.
func (c *conn) writeBin(bw binaryWriter, e streams.Entry) error {
	ctx, cancel := context.WithTimeout(c.ctx, time.Duration(c.srv.cfg.WriteTimeout))
	err := bw.writeBinary(ctx, e.Bin)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	return c.wrote(err, timedOut)
}

// write sends one envelope within WriteTimeout. A client that cannot take
// it in time is cut as too slow; it resumes from its last seq.
func (c *conn) write(seq uint64, data []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, time.Duration(c.srv.cfg.WriteTimeout))
	err := c.t.write(ctx, seq, data)
	// DeadlineExceeded only when the write's own deadline fired; a
	// connection cancelled first (the peer went) reads Canceled. The
	// reader may cancel right after a timed-out write closes the socket,
	// so the connection's context cannot tell the two apart.
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	return c.wrote(err, timedOut)
}

// wrote counts a write that went through, or turns one that failed into
// the connection's end.
func (c *conn) wrote(err error, timedOut bool) error {
	if err != nil {
		return c.writeFailed(err, timedOut, fmt.Sprintf("resume from seq %d", c.delivered.Load()))
	}
	c.srv.msgsOut.Add(1)
	c.srv.metrics.msgsOut.Inc()
	return nil
}

// writeFailed is the end of a connection whose write failed: a slow
// consumer, told where to resume (hint), when the write's own deadline
// fired; otherwise the peer is gone.
func (c *conn) writeFailed(_ error, timedOut bool, hint string) *disconnect {
	if timedOut {
		return slowConsumer(hint)
	}
	return peerClosed()
}
