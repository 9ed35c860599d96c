package edge

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/auth"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// handshake answers the client's HAI: version negotiation, session
// binding and authorisation, the server's HAI, credit, and the resume
// point delivery starts from.
func (c *conn) handshake(env *haip.Envelope) (stop bool) {
	var hello haip.HelloPayload
	if err := env.DecodePayload(&hello); err != nil {
		c.sendError(asHAIPError(err))
		return false
	}
	c.accepts = newTypeSet(hello.AcceptEvents)
	if !containsInt(hello.AcceptMajor, haip.Major) {
		c.sendErrorAlways(haip.Errorf(haip.CodeVersionIncompatible, "no common major version: server speaks %d, client accepts %v", haip.Major, hello.AcceptMajor).
			WithRelated(env.ID).WithDetail("server_version", haip.Version))
		c.fatal(protocolClose(ClosePolicyViolation, "version incompatible"))
		return true
	}
	if c.session != "" && env.Session != c.session {
		c.sendErrorAlways(haip.Errorf(haip.CodeProtocolViolation, "HAI names session %q but the connection was opened for %q", env.Session, c.session).WithRelated(env.ID))
		c.fatal(protocolClose(ClosePolicyViolation, "session mismatch"))
		return true
	}
	if c.session == "" || c.claim {
		// Opened without a session (it binds to the HAI's), or for one
		// that did not exist when it was admitted: claim it now.
		ctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
		_, err := c.srv.authorize(ctx, c.ident, env.Session, openSession)
		cancel()
		if herr := c.srv.accessError(err, env.Session); herr != nil {
			c.sendErrorAlways(herr.WithRelated(env.ID))
			switch herr.Code {
			case haip.CodeInternalError:
				c.fatal(backendClose(CloseTryAgainLater, "session store unavailable"))
			case haip.CodeSessionNotFound:
				c.fatal(protocolClose(ClosePolicyViolation, "no such session"))
			case haip.CodeRateLimited:
				c.fatal(protocolClose(CloseTryAgainLater, "too many new sessions; try again later"))
			default:
				c.fatal(protocolClose(ClosePolicyViolation, "forbidden session"))
			}
			return true
		}
		c.session, c.claim = env.Session, false
	}
	c.logger = c.logger.With(slog.String(logKeySession, c.session))
	c.handshaken = true
	c.ack.Store(uint64(env.Seq))

	// Follow the live log before reading its end, so that nothing written
	// in between falls through the gap.
	unfollow, err := c.srv.hub.follow(c.session, c.readDir, c)
	if err != nil {
		c.logger.Error("follow", slog.Any(logKeyErr, err))
		c.fatal(backendClose(CloseInternalError, "cannot follow session"))
		return true
	}
	c.unfollow = unfollow
	ctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
	start, herr, err := c.resumePoint(ctx, hello)
	cancel()
	if err != nil {
		c.logger.Error("resume point", slog.Any(logKeyErr, err))
		c.fatal(backendClose(CloseTryAgainLater, "session log unavailable"))
		return true
	}
	c.delivered.Store(start.next - 1)
	c.out = newOutCredit(c.srv.cfg.ServerCredit, hello, uint64(env.Seq))
	_, canBinary := c.t.(binaryWriter)
	c.binaryOut = canBinary && hello.Binary()
	c.ackPos = uint64(env.Seq) >= sdkSeqFloor
	c.runLimit = hello.RunLimit()
	if c.t.postedFlow() {
		// Flow control the user POSTs for this session reaches its
		// one-way streams here. Subscribed once the writer's credit state
		// is set (the handler hands it changes), and known to the server
		// (flushed) before the client sees the HAI and may POST.
		subj, err := streams.FlowSubject(c.session, c.ident.Subject)
		if err == nil {
			var sub *nats.Subscription
			sub, err = c.srv.nc.Subscribe(subj, func(m *nats.Msg) {
				if env, derr := haip.Decode(m.Data); derr == nil && env.Session == c.session {
					c.flowControl(env)
				}
			})
			if err == nil {
				c.unflow = func() { _ = sub.Unsubscribe() }
				fctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
				err = c.srv.nc.FlushWithContext(fctx)
				cancel()
			}
		}
		if err != nil {
			c.logger.Error("follow flow control", slog.Any(logKeyErr, err))
			c.fatal(backendClose(CloseInternalError, "cannot follow session"))
			return true
		}
	}
	c.echoWanted = (c.echoWanted || helloWantsEcho(hello)) && c.ident.Role != auth.RoleAgent
	c.sendControl(haip.TypeHAI, c.serverHello())
	c.initialGrant()
	if herr != nil {
		c.sendError(herr.WithRelated(env.ID))
	}
	c.started <- start
	if c.echoWanted {
		// From just after the last message the client has: the user side
		// stored between it and the next one comes too.
		c.startEcho(c.echoFrom(hello, start))
	}
	return false
}

// echoFrom is the stream seq the user side starts at: just after the
// message the client resumes after (when it has one), else where
// delivery starts.
func (c *conn) echoFrom(hello haip.HelloPayload, start position) uint64 {
	k, ok := hello.LastRx()
	if !ok || k == 0 || k+1 != start.next {
		return start.streamSeq
	}
	ctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
	defer cancel()
	p, err := c.srv.log.Find(ctx, c.session, c.readDir, k)
	if err != nil {
		return start.streamSeq
	}
	return p.StreamSeq + 1
}

// resumePoint decides where delivery begins. With no last_rx_seq the
// client gets what is written from now on (REPLAY_REQUEST fetches
// history); with last_rx_seq k it gets k+1 onwards. (A v1 SDK client
// sends back as last_rx_seq the last ack it saw, which for it is the
// log position: see positionAck.) A k the log never
// reached is RESUME_FAILED; a k+1 that retention dropped is REPLAY_TOO_OLD.
// In both cases delivery goes on from the nearest valid point.
func (c *conn) resumePoint(ctx context.Context, hello haip.HelloPayload) (position, *haip.Error, error) {
	b, err := c.srv.log.Bounds(ctx, c.session, c.readDir)
	if err != nil {
		return position{}, nil, err
	}
	end := position{next: b.Last.Seq + 1, streamSeq: b.Last.StreamSeq + 1}
	k, ok := hello.LastRx()
	switch {
	case !ok || k == b.Last.Seq:
		return end, nil, nil
	case k > b.Last.Seq:
		return end, haip.Errorf(haip.CodeResumeFailed, "last_rx_seq %d is beyond the last seq %d of this session; continuing from %d", k, b.Last.Seq, end.next).
			WithDetail("last_rx_seq", strconv.FormatUint(k, 10)).WithDetail("last_seq", strconv.FormatUint(b.Last.Seq, 10)), nil
	case k+1 < b.First.Seq:
		return position{next: b.First.Seq, streamSeq: b.First.StreamSeq},
			haip.Errorf(haip.CodeReplayTooOld, "messages %d to %d are past retention; continuing from %d", k+1, b.First.Seq-1, b.First.Seq).
				WithDetail("first_available", strconv.FormatUint(b.First.Seq, 10)), nil
	}
	p, err := c.srv.log.Find(ctx, c.session, c.readDir, k+1)
	if err != nil {
		return position{}, nil, err
	}
	return position{next: p.Seq, streamSeq: p.StreamSeq}, nil, nil
}

func (c *conn) serverHello() haip.HelloPayload {
	accept := make([]haip.Type, 0, len(haip.AllTypes()))
	for _, t := range haip.AllTypes() {
		if inboundAllowed(c.ident.Role, t) {
			accept = append(accept, t)
		}
	}
	_, binary := c.t.(binaryWriter)
	runs := c.srv.cfg.MaxConcurrentRuns
	credMsgs, credBytes := int64(c.srv.cfg.ClientCreditMessages), int64(c.srv.cfg.ClientCreditBytes)
	signed := false
	conversation := ""
	if c.echoWanted {
		conversation = conversationBoth
	}
	return haip.HelloPayload{
		HaipVersion:  haip.Version,
		AcceptMajor:  []int{haip.Major},
		AcceptEvents: accept,
		Capabilities: &haip.Capabilities{
			BinaryFrames:      &binary,
			FlowControl:       &haip.FlowControlCaps{InitialCreditMessages: &credMsgs, InitialCreditBytes: &credBytes},
			MaxConcurrentRuns: &runs,
			SignedEnvelopes:   &signed,
			Conversation:      conversation,
		},
	}
}
