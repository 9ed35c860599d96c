package edge

import (
	"strconv"
	"time"

	"github.com/haipfabric/haipfabric/haip"
)

// readLoop reads until the peer goes (peerGone) or a fatal protocol error
// has asked the writer to close the connection.
func (c *conn) readLoop() (peerGone bool) {
	for {
		f, err := c.t.read(c.ctx)
		if err != nil {
			return true
		}
		c.lastInbound.Store(time.Now().UnixNano())
		if f.tooLarge {
			c.sendError(haip.Errorf(haip.CodeMessageTooLarge, "record larger than %d bytes skipped", c.srv.cfg.MaxMessageBytes).
				WithDetail("max_bytes", c.srv.cfg.MaxMessageBytes))
			continue
		}
		if f.binary {
			if stop := c.handleBinary(f.data); stop {
				return false
			}
			continue
		}
		if c.pendingBin != nil || c.skipBin {
			if c.pendingBin != nil {
				c.sendError(haip.Errorf(haip.CodeProtocolViolation, "expected the %d-byte binary frame announced by bin_len; the envelope is dropped", *c.pendingBin.BinLen).
					WithRelated(c.pendingBin.ID))
			}
			c.pendingBin, c.skipBin = nil, false
		}
		c.srv.msgsIn.Add(1)
		c.srv.metrics.msgsIn.Inc()
		if stop := c.handle(f.data); stop {
			return false
		}
	}
}

// handle processes one inbound envelope; stop ends the reader.
func (c *conn) handle(data []byte) (stop bool) {
	env, err := haip.Decode(data)
	if err != nil {
		c.sendError(asHAIPError(err))
		return false
	}
	if !c.handshaken {
		if env.Type != haip.TypeHAI {
			c.sendError(haip.Errorf(haip.CodeProtocolViolation, "first message must be HAI, got %s", env.Type).WithRelated(env.ID))
			return false
		}
		return c.handshake(env)
	}
	if env.Session != c.session {
		c.sendError(haip.Errorf(haip.CodeProtocolViolation, "envelope session %q is not this connection's session %q", env.Session, c.session).
			WithRelated(env.ID).WithDetail("session", env.Session))
		return false
	}
	if err := checkInbound(c.ident.Role, env); err != nil {
		c.sendError(err)
		return false
	}
	if c.srv.cfg.StrictSeq {
		if prev := c.ack.Load(); prev != 0 && uint64(env.Seq) != prev+1 {
			c.sendError(haip.Errorf(haip.CodeSeqViolation, "seq %d after %d", env.Seq, prev).WithRelated(env.ID).
				WithDetail("expected", strconv.FormatUint(prev+1, 10)))
			return false
		}
	}
	if uint64(env.Seq) > c.ack.Load() {
		c.ack.Store(uint64(env.Seq))
	}
	haip.NormalizeBinaryAnnouncement(env)
	size := len(data)
	if env.BinLen != nil && env.Type != haip.TypeAudioChunk {
		c.sendError(haip.Errorf(haip.CodeProtocolViolation, "bin_len is only for AUDIO_CHUNK, not %s", env.Type).WithRelated(env.ID))
		c.skipBin = *env.BinLen > 0
		return false
	}
	if env.BinLen != nil {
		size = int(*env.BinLen)
		if *env.BinLen > int64(c.srv.cfg.MaxAudioBytes) {
			c.sendError(haip.Errorf(haip.CodeMessageTooLarge, "binary frame of %d bytes is over the %d allowed", *env.BinLen, c.srv.cfg.MaxAudioBytes).
				WithRelated(env.ID).WithDetail("max_bytes", c.srv.cfg.MaxAudioBytes))
			c.skipBin = *env.BinLen > 0
			return false
		}
	}
	if herr := c.takeInbound(env, size); herr != nil {
		c.sendError(herr)
		c.skipBin = env.BinLen != nil && *env.BinLen > 0
		return false
	}
	if env.BinLen != nil && *env.BinLen > 0 {
		if _, ok := c.t.(binaryWriter); !ok {
			c.sendError(haip.Errorf(haip.CodeProtocolViolation, "bin_len needs a binary frame, which this transport cannot carry: send the bytes base64 in payload.data").WithRelated(env.ID))
			return false
		}
		c.pendingBin = env // stored with the binary frame that follows
		return false
	}

	if herr := c.srv.dispatch(c.ctx, c.inbound(env, data, nil), c); herr != nil {
		c.sendError(herr)
	}
	return false
}

// inbound is what the dispatcher needs of an envelope this connection
// read.
func (c *conn) inbound(env *haip.Envelope, data, bin []byte) inbound {
	return inbound{id: c.ident, session: c.session, env: env, data: data, bin: bin, runLimit: c.runLimit}
}

// handleBinary takes the binary frame announced by the envelope before it
// and stores the two together.
func (c *conn) handleBinary(data []byte) (stop bool) {
	if c.skipBin {
		c.skipBin = false
		return false
	}
	env := c.pendingBin
	if env == nil {
		c.sendErrorAlways(haip.Errorf(haip.CodeProtocolViolation, "binary frame without a preceding envelope announcing bin_len"))
		c.fatal(protocolClose(CloseUnsupportedData, "unexpected binary frame"))
		return true
	}
	c.pendingBin = nil
	if int64(len(data)) != *env.BinLen {
		c.sendError(haip.Errorf(haip.CodeProtocolViolation, "binary frame of %d bytes, but bin_len announced %d; the envelope is dropped", len(data), *env.BinLen).
			WithRelated(env.ID))
		return false
	}
	c.srv.msgsIn.Add(1)
	c.srv.metrics.msgsIn.Inc()
	if herr := c.srv.dispatch(c.ctx, c.inbound(env, nil, data), c); herr != nil {
		c.sendError(herr)
	}
	return false
}

// flowControl passes a FLOW_UPDATE, PAUSE_CHANNEL or RESUME_CHANNEL the
// user POSTed for this one-way stream (on any edge) to the writer, in
// order with what it queued before.
func (c *conn) flowControl(env *haip.Envelope) {
	f, herr := parseFlow(env)
	if herr != nil {
		c.sendError(herr)
		return
	}
	c.enqueue(outbound{flow: &f})
}
