package edge

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

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
	session string
	claim   bool // the session must be claimed by the handshake
	readDir streams.Direction
	accepts *typeSet // nil until the handshake
	// echoWanted: the user side was asked for (echo.go); echoDone is
	// closed when its follower has stopped (nil: none runs).
	echoWanted bool
	echoDone   chan struct{}
	unfollow   func()
	unflow     func()

	// Writer-only state (out is set by the reader during the handshake).
	inReplay  *replaying  // the REPLAY_REQUEST being served (replay.go)
	behind    []*outbound // control items waiting behind it, in order
	out       outCredit   // what the client lets the edge send
	binaryOut bool        // the client takes two-frame binary
	ackPos    bool        // ack carries the client's log position (v1 SDK dialect: writer.go)

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
		srv:     s,
		t:       t,
		ident:   a.id,
		session: a.session,
		claim:   a.claim,
		slot:    a.slot,
		ctx:     ctx,
		// The user side is for users' connections; the handshake checks.
		echoWanted: a.echo,
		cancel:     cancel,
		ctrl:       make(chan *outbound, ctrlQueue),
		live:       make(chan *streams.Entry, s.cfg.LiveBuffer),
		overflow:   make(chan struct{}, 1),
		started:    make(chan position, 1),
		closeReq:   make(chan *disconnect, 1),
		drainCh:    make(chan struct{}),
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
	if c.echoDone != nil {
		<-c.echoDone
	}
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
	c.srv.ops.disconnected(kind, c.ident.Subject, d)
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
	if _, ws := c.t.(*wsTransport); ws && d.label == labelSlow {
		// A write cut by WriteTimeout may have left a frame half sent: a
		// close frame after it would be read as the rest of that frame.
		// The client sees the connection end and resumes (doc.go).
		c.t.abort()
		return d
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
