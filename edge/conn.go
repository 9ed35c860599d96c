package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// frame is one inbound transport frame.
type frame struct {
	binary bool
	data   []byte
	// tooLarge marks a record the transport skipped for exceeding
	// MaxMessageBytes (line-framed transports go on after it).
	tooLarge bool
}

// transport is what a connection needs from WebSocket, SSE or HTTP
// streaming: framing and keep-alive, nothing of the protocol.
type transport interface {
	// kind names the transport in metrics and logs.
	kind() string
	// read blocks for the next inbound frame. Only the reader calls it.
	read(ctx context.Context) (frame, error)
	// write sends one envelope, whose seq (SSE event ids need it) is
	// given. Only the writer calls it.
	write(ctx context.Context, seq uint64, data []byte) error
	// keepalive writes the transport's own keep-alive, if it has one
	// (sent=false: the writer sends a HAIP PING instead).
	keepalive(ctx context.Context) (sent bool, err error)
	// peerCanSend reports whether the peer can send on this connection
	// now; only then does silence mean a dead peer.
	peerCanSend() bool
	// tellsCloseReason reports whether close can tell the peer its code
	// and reason (a WebSocket close frame, an SSE comment). Where it
	// cannot (an NDJSON stream), the writer sends an ERROR saying why
	// before it closes.
	tellsCloseReason() bool
	// postedFlow reports whether the client may POST flow control for
	// this connection (SSE and HTTP streams, whose other half is POSTs):
	// the connection then follows it over NATS, from any edge.
	postedFlow() bool
	// close ends the connection, telling the peer code and reason where
	// the transport can. It is idempotent and safe from any goroutine. It
	// may wait a few seconds for a peer's part of a close handshake.
	close(code CloseCode, reason string)
	// abort ends the connection now, without waiting for the peer, even
	// while a close is under way. Safe from any goroutine.
	abort()
}

// Sizes of a connection's internal queues. Control envelopes are few and
// small; a client that lets them pile up is not reading at all.
const (
	ctrlQueue      = 64
	storeTimeout   = 10 * time.Second
	resolveTimeout = 5 * time.Second
)

// conn is one client connection speaking HAIP, whatever its transport.
//
// Two goroutines own it. The reader decodes frames, answers control
// messages and stores what the client sends. The writer owns every write
// to the transport and drives delivery of the session log: catch-up by
// batched reads from JetStream while the client is behind, then live
// messages from the hub, back to catch-up on any gap or overflow. Each
// queue between them is bounded; the log, not edge memory, is the buffer.
type conn struct {
	srv    *Server
	t      transport
	ident  auth.Identity
	slot   *slot // the user's connection slot, freed when the connection ends
	logger *slog.Logger

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	ctrl     chan *outbound      // control envelopes and replays, in order, for the writer
	live     chan *streams.Entry // live log messages from the hub (shared: copy before changing)
	overflow chan struct{}       // the live queue dropped something
	started  chan position       // handshake done: where delivery begins
	closeReq chan *disconnect
	drainCh  chan struct{}
	drainOne sync.Once

	// Set by the reader during the handshake, before it sends on started;
	// the writer reads them only after receiving from started.
	session  string
	claim    bool // the session must be claimed by the handshake
	readDir  streams.Direction
	accepts  *typeSet // nil until the handshake
	unfollow func()
	unflow   func()

	// Writer-only state (out is set by the reader during the handshake).
	inReplay  *replaying  // the REPLAY_REQUEST being served (replay.go)
	behind    []*outbound // control items waiting behind it, in order
	out       outCredit   // what the client lets the edge send
	binaryOut bool        // the client takes two-frame binary

	// Reader-only state.
	handshaken bool
	runLimit   int            // the client's max_concurrent_runs (0: none)
	pendingBin *haip.Envelope // an envelope whose binary frame comes next
	skipBin    bool           // drop the next binary frame (its envelope was refused)

	in inCredit // what the edge lets the client send

	// Shared.
	delivered   atomic.Uint64 // highest log seq written to this client
	ack         atomic.Uint64 // highest client seq received
	lastInbound atomic.Int64  // unix nanos of the last inbound frame
}

type position struct {
	next      uint64 // next log seq to deliver
	streamSeq uint64 // stream seq at or before which it lies
}

// outbound is one item of the writer's ordered control queue: an
// envelope to write, or a range of the log to resend.
type outbound struct {
	env    *haip.Envelope
	replay *replayRequest
	flow   *flowMsg
}

type replayRequest struct {
	from, to  uint64 // to 0 means up to what was delivered
	relatedID string
}

func (s *Server) newConn(t transport, a admission) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:      s,
		t:        t,
		ident:    a.id,
		session:  a.session,
		claim:    a.claim,
		slot:     a.slot,
		ctx:      ctx,
		cancel:   cancel,
		ctrl:     make(chan *outbound, ctrlQueue),
		live:     make(chan *streams.Entry, s.cfg.LiveBuffer),
		overflow: make(chan struct{}, 1),
		started:  make(chan position, 1),
		closeReq: make(chan *disconnect, 1),
		drainCh:  make(chan struct{}),
	}
	c.logger = s.logger.With(slog.String(logKeyTransport, t.kind()), slog.String(logKeySubject, a.id.Subject))
	c.readDir, _ = directions(a.id.Role)
	c.lastInbound.Store(time.Now().UnixNano())
	return c
}

// serve runs the connection until it ends, the writer on the calling
// goroutine. It returns after both of its goroutines have stopped and its
// subscription is gone.
func (c *conn) serve() {
	if !c.srv.register(c) {
		c.t.close(CloseGoingAway, "edge shutting down; connect to another edge")
		c.slot.free()
		return
	}
	c.run()
}

// start runs the connection on goroutines of its own and returns at once,
// for a transport that no longer needs the HTTP handler that made it (a
// hijacked WebSocket). The Server owns them: Shutdown waits for them.
func (c *conn) start() {
	if !c.srv.register(c) {
		c.t.close(CloseGoingAway, "edge shutting down; connect to another edge")
		c.slot.free()
		return
	}
	go c.run()
}

// run is the connection's life once registered: the writer here, the
// reader on a goroutine of its own, then the clean-up.
func (c *conn) run() {
	kind := c.t.kind()
	c.srv.active.Add(1)
	c.srv.total.Add(1)
	c.srv.metrics.active.WithLabelValues(kind).Inc()
	c.srv.metrics.accepted.WithLabelValues(kind).Inc()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		if peerGone := c.readLoop(); peerGone {
			c.cancel() // stop the writer
		}
		// Otherwise the reader asked for a close (fatal): the writer
		// flushes the ERROR and closes with its code and reason.
	}()
	d := c.finish(c.writeLoop())
	c.cancel()
	<-readerDone
	c.stopGrants()
	c.srv.metrics.paused.Sub(float64(c.out.pausedCount()))
	if c.unfollow != nil {
		c.unfollow()
	}
	if c.unflow != nil {
		c.unflow()
	}
	c.srv.active.Add(-1)
	c.srv.metrics.active.WithLabelValues(kind).Dec()
	c.srv.metrics.disconnects.WithLabelValues(kind, d.label).Inc()
	c.srv.unregister(c)
	c.slot.free()
	c.logger.Debug("connection closed", slog.String(logKeyReason, d.label), slog.Int("code", int(d.code)))
}

// finish closes the transport as the writer's end says, and counts a
// slow consumer: the one place a connection's end is acted on. (The
// reader's blocking read ends with the transport.)
func (c *conn) finish(err error) *disconnect {
	var d *disconnect
	if !errors.As(err, &d) {
		c.logger.Error("writer ended without a disconnect", slog.Any(logKeyErr, err))
		d = backendClose(CloseInternalError, "internal error; resume from your last seq")
	}
	if d.label == labelSlow {
		c.srv.metrics.slowCount.Add(1)
	}
	c.t.close(d.code, d.reason)
	return d
}

// drain asks the writer to close the connection with a resume hint.
func (c *conn) drain() { c.drainOne.Do(func() { close(c.drainCh) }) }

// abort ends the connection now: it does not wait for the peer (nor for
// a close handshake the writer has begun).
func (c *conn) abort() {
	c.cancel()
	c.t.abort()
}

// fatal asks the writer to flush pending control messages, then end the
// connection as d says.
func (c *conn) fatal(d *disconnect) {
	select {
	case c.closeReq <- d:
	default:
	}
}

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
	c.sendControl(haip.TypeHAI, c.serverHello())
	c.initialGrant()
	if herr != nil {
		c.sendError(herr.WithRelated(env.ID))
	}
	c.started <- start
	return false
}

// resumePoint decides where delivery begins. With no last_rx_seq the
// client gets what is written from now on (REPLAY_REQUEST fetches
// history); with last_rx_seq k it gets k+1 onwards. A k the log never
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
	return haip.HelloPayload{
		HaipVersion:  haip.Version,
		AcceptMajor:  []int{haip.Major},
		AcceptEvents: accept,
		Capabilities: &haip.Capabilities{
			BinaryFrames:      &binary,
			FlowControl:       &haip.FlowControlCaps{InitialCreditMessages: &credMsgs, InitialCreditBytes: &credBytes},
			MaxConcurrentRuns: &runs,
			SignedEnvelopes:   &signed,
		},
	}
}

// onLive runs on the hub's goroutine: enqueue or note the overflow. e is
// shared by every connection following the session.
func (c *conn) onLive(e *streams.Entry) {
	select {
	case c.live <- e:
	default:
		c.onOverflow()
	}
}

// onOverflow notes that live messages were lost: the writer goes back to
// catch-up. It runs on the hub's goroutine.
func (c *conn) onOverflow() {
	select {
	case c.overflow <- struct{}{}:
	default:
	}
}

// sendControl queues a connection-scoped envelope for the writer, which
// stamps seq and ack when it writes it.
func (c *conn) sendControl(t haip.Type, payload any) {
	if c.accepts != nil && !c.accepts.has(t) && t != haip.TypeHAI {
		return // the client said it does not accept this type
	}
	c.queueControl(t, payload)
}

func (c *conn) queueControl(t haip.Type, payload any) {
	session := c.session
	if session == "" {
		session = unboundSession
	}
	env, err := haip.New(session, haip.ChannelSystem, t, payload)
	if err != nil {
		c.logger.Error("build control envelope", slog.Any(logKeyErr, err))
		return
	}
	c.enqueue(outbound{env: env})
}

// enqueue hands an item to the writer, in order. When the writer's queue
// is full the caller waits for room: a client that sends requests (PING,
// REPLAY_REQUEST, …) faster than the edge answers them is held back by
// its own socket, since the reader stops reading meanwhile; it is not cut.
// Only a client that does not read its answers is cut, by the writer's
// WriteTimeout, which ends c.ctx and so this wait. The writer itself never
// calls enqueue.
func (c *conn) enqueue(o outbound) {
	select {
	case c.ctrl <- &o:
		return
	default:
	}
	c.srv.metrics.ctrlWaits.Inc()
	select {
	case c.ctrl <- &o:
	case <-c.ctx.Done():
	}
}

// unboundSession names the session in errors sent before the handshake.
const unboundSession = "unbound"

func (c *conn) sendError(e *haip.Error) {
	c.srv.metrics.errorsSent.WithLabelValues(string(e.Code)).Inc()
	c.sendControl(haip.TypeError, e.Payload())
}

// sendErrorAlways sends an ERROR that precedes a close, even to a client
// that did not list ERROR in accept_events: the close reason alone would
// say less.
func (c *conn) sendErrorAlways(e *haip.Error) {
	c.srv.metrics.errorsSent.WithLabelValues(string(e.Code)).Inc()
	c.queueControl(haip.TypeError, e.Payload())
}

func asHAIPError(err error) *haip.Error {
	var he *haip.Error
	if errors.As(err, &he) {
		return he
	}
	return haip.Errorf(haip.CodeProtocolViolation, "%v", err)
}

// typeSet is a set of HAIP event types: one bit per type of
// haip.AllTypes, and a map only for names outside them. (A map of the 22
// names cost about 1.7 KiB per connection.)
type typeSet struct {
	known uint64
	other map[haip.Type]bool
}

// typeBits numbers the known event types; it is never changed. More
// known types than bits is a programming error, caught at start (and by
// TestTypeSet), never a silent drop.
var typeBits = func() map[haip.Type]uint64 {
	all := haip.AllTypes()
	if len(all) > 64 {
		panic(fmt.Sprintf("edge: %d HAIP types do not fit typeSet's 64 bits", len(all)))
	}
	m := make(map[haip.Type]uint64, len(all))
	for i, t := range all {
		m[t] = 1 << i
	}
	return m
}()

func newTypeSet(ts []haip.Type) *typeSet {
	s := &typeSet{}
	for _, t := range ts {
		if b, ok := typeBits[t]; ok {
			s.known |= b
			continue
		}
		if s.other == nil {
			s.other = make(map[haip.Type]bool)
		}
		s.other[t] = true
	}
	return s
}

// has reports whether t is in the set; a nil set has nothing.
func (s *typeSet) has(t haip.Type) bool {
	if s == nil {
		return false
	}
	if b, ok := typeBits[t]; ok {
		return s.known&b != 0
	}
	return s.other[t]
}

func containsInt(xs []int, v int) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

// writerClock is the writer's one timer, in place of a handshake timer,
// a heartbeat ticker and a credential timer per connection: it fires at
// the handshake deadline (until the handshake is done), at the next
// heartbeat, or when the connection's token expires, whichever is first.
type writerClock struct {
	t           *time.Timer
	interval    time.Duration
	nextBeat    time.Time
	handshakeBy time.Time // zero once the handshake is done
	expiresAt   time.Time // zero: the credential does not expire
}

func newWriterClock(heartbeat, handshake time.Duration, expiresAt time.Time) writerClock {
	now := time.Now()
	k := writerClock{interval: heartbeat, nextBeat: now.Add(heartbeat), handshakeBy: now.Add(handshake), expiresAt: expiresAt}
	k.t = time.NewTimer(k.until(now))
	return k
}

// c is the channel the timer fires on.
func (k *writerClock) c() <-chan time.Time { return k.t.C }

// until is how long from now the timer must wait.
func (k *writerClock) until(now time.Time) time.Duration {
	next := k.nextBeat
	if !k.handshakeBy.IsZero() && k.handshakeBy.Before(next) {
		next = k.handshakeBy
	}
	if !k.expiresAt.IsZero() && k.expiresAt.Before(next) {
		next = k.expiresAt
	}
	return next.Sub(now)
}

// handshook stops watching the handshake deadline.
func (k *writerClock) handshook() {
	k.handshakeBy = time.Time{}
	k.t.Reset(k.until(time.Now()))
}

// clockEvents is what a firing of the writer's clock found due.
type clockEvents struct {
	handshakeExpired bool // no HAI by the handshake deadline
	beat             bool // a heartbeat is due
	tokenExpired     bool // the connection's token has expired
}

// fired is called when the timer has fired at now. It reports what is
// due (like a ticker, beats missed while the writer was busy are not made
// up), and sets the timer again.
func (k *writerClock) fired(now time.Time) clockEvents {
	var ev clockEvents
	ev.handshakeExpired = !k.handshakeBy.IsZero() && !now.Before(k.handshakeBy)
	ev.tokenExpired = !k.expiresAt.IsZero() && !now.Before(k.expiresAt)
	if !now.Before(k.nextBeat) {
		ev.beat = true
		k.nextBeat = k.nextBeat.Add(k.interval)
		if !k.nextBeat.After(now) {
			k.nextBeat = now.Add(k.interval)
		}
	}
	k.t.Reset(k.until(now))
	return ev
}

func (k *writerClock) stop() { k.t.Stop() }
