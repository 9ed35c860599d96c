package edge

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Flow control (HAIP §10), both directions, per channel, in messages and
// bytes. See docs/ARCHITECTURE.md, "Flow control", for the model.
//
// Edge → client: the client's HAI capabilities.flow_control is the credit
// the client grants the edge on each channel; FLOW_UPDATE adds to it;
// PAUSE_CHANNEL and RESUME_CHANNEL stop and restart a channel. The writer
// delivers the session log in seq order, so a message on a channel without
// credit holds back the messages after it (dense seqs leave no other
// choice); while it waits, the connection reads nothing from JetStream.
//
// Client → edge: the edge grants credit with FLOW_UPDATE, sized by the
// fabric's back-pressure; a client that sends beyond it gets
// FLOW_CONTROL_VIOLATION and its message is dropped.

// unlimited is the credit of a channel that is not counted.
const unlimited = math.MaxInt64

// numChannels is the number of HAIP channels (haip.AllChannels).
const numChannels = 5

// channelIndex maps the five channels to 0..4.
func channelIndex(ch haip.Channel) (int, bool) {
	switch ch {
	case haip.ChannelUser:
		return 0, true
	case haip.ChannelAgent:
		return 1, true
	case haip.ChannelSystem:
		return 2, true
	case haip.ChannelAudioIn:
		return 3, true
	case haip.ChannelAudioOut:
		return 4, true
	}
	return 0, false
}

// Server credit modes (Config.ServerCredit).
const (
	// CreditAuto honours the credit a client advertises, except for
	// clients of the v1 SDK dialect (millisecond-timestamp seqs), which
	// advertise credit but never grant more: for them counting starts
	// with their first FLOW_UPDATE.
	CreditAuto = "auto"
	// CreditOn honours advertised credit from every client.
	CreditOn = "on"
	// CreditOff ignores client credit (PAUSE_CHANNEL still works).
	CreditOff = "off"
)

// sdkSeqFloor: a HAI seq at or above it is a Date.now() timestamp, the
// v1 SDK's way of numbering (HAIP.md §16).
const sdkSeqFloor = 1_000_000_000_000

type credit struct {
	msgs, bytes int64
	paused      bool
	counted     bool // outbound: the client manages this channel's credit
}

// outCredit is what the client lets the edge send. Writer-owned.
type outCredit struct {
	ch [numChannels]credit
}

// newOutCredit starts from the client's HAI.
func newOutCredit(mode string, hello haip.HelloPayload, helloSeq uint64) outCredit {
	var o outCredit
	for i := range o.ch {
		o.ch[i] = credit{msgs: unlimited, bytes: unlimited}
	}
	fc := hello.FlowControl()
	switch {
	case fc == nil, mode == CreditOff:
		return o
	case mode == CreditAuto && helloSeq >= sdkSeqFloor:
		return o // counting starts with the client's first FLOW_UPDATE
	}
	for i := range o.ch {
		o.ch[i].counted = true
		if fc.InitialCreditMessages != nil {
			o.ch[i].msgs = *fc.InitialCreditMessages
		}
		if fc.InitialCreditBytes != nil {
			o.ch[i].bytes = *fc.InitialCreditBytes
		}
	}
	return o
}

// flowMsg is a client's FLOW_UPDATE, PAUSE_CHANNEL or RESUME_CHANNEL,
// passed from the reader to the writer in order with everything else.
type flowMsg struct {
	typ        haip.Type
	ch         int
	msgs, byts int64
}

// apply changes the credit. On a channel whose credit was not counted
// (the client advertised none, or speaks the v1 SDK dialect), the first
// FLOW_UPDATE starts counting from what it grants.
func (o *outCredit) apply(f flowMsg, mode string) (pausedDelta int) {
	c := &o.ch[f.ch]
	switch f.typ {
	case haip.TypePauseChannel:
		if !c.paused {
			pausedDelta = 1
		}
		c.paused = true
	case haip.TypeResumeChannel:
		if c.paused {
			pausedDelta = -1
		}
		c.paused = false
	case haip.TypeFlowUpdate:
		if mode == CreditOff {
			return
		}
		if !c.counted {
			c.counted = true
			if f.msgs > 0 {
				c.msgs = 0
			}
			if f.byts > 0 {
				c.bytes = 0
			}
		}
		c.msgs = addCredit(c.msgs, f.msgs)
		c.bytes = addCredit(c.bytes, f.byts)
	}
	return pausedDelta
}

// pausedCount is how many channels are paused.
func (o *outCredit) pausedCount() int {
	n := 0
	for _, c := range o.ch {
		if c.paused {
			n++
		}
	}
	return n
}

func addCredit(have, add int64) int64 {
	if have == unlimited || add <= 0 {
		return have
	}
	if have > unlimited-add {
		return unlimited
	}
	return have + add
}

// allows reports whether a log message may be sent now.
func (o *outCredit) allows(ch string, size int) bool {
	i, ok := channelIndex(haip.Channel(ch))
	if !ok {
		return true
	}
	c := &o.ch[i]
	return !c.paused && c.msgs >= 1 && c.bytes >= int64(size)
}

// spend takes a sent message's credit.
func (o *outCredit) spend(ch string, size int) {
	i, ok := channelIndex(haip.Channel(ch))
	if !ok {
		return
	}
	c := &o.ch[i]
	if c.msgs != unlimited {
		c.msgs--
	}
	if c.bytes != unlimited {
		c.bytes -= int64(size)
	}
}

// budget is how many messages one catch-up read may usefully fetch: the
// credit of the channels that may send, at most max. Zero: nothing may be
// sent, so nothing is read.
func (o *outCredit) budget(max int) int {
	var n int64
	for _, c := range o.ch {
		if c.paused || c.bytes <= 0 {
			continue
		}
		if c.msgs >= int64(max) {
			return max
		}
		n += c.msgs
	}
	return int(min(n, int64(max)))
}

// entryChannel returns a log message's channel, from its header or, for
// messages stored without one, from the envelope (Encode writes the
// top-level channel before the payload).
func entryChannel(e *streams.Entry) string {
	if e.Channel != "" {
		return e.Channel
	}
	const key = `"channel":"`
	i := bytes.Index(e.Data, []byte(key))
	if i < 0 {
		return ""
	}
	rest := e.Data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	e.Channel = string(rest[:j])
	return e.Channel
}

// entrySize is what a log message costs in byte credit: the binary
// frame's length for audio (bin_len, or the decoded base64 length, which
// is the same bytes), else the envelope's JSON size.
func entrySize(e *streams.Entry) int {
	if e.Bin != nil {
		return len(e.Bin)
	}
	return len(e.Data)
}

// inCredit is the credit the edge granted the client. The reader spends
// it; grants come from the reader and from a retry timer while the
// fabric is under pressure.
type inCredit struct {
	mu     sync.Mutex
	left   [numChannels]credit
	retry  *time.Timer
	closed bool
}

// exemptInbound lists the connection-scoped control messages that spend
// no credit: they keep a connection alive and credit flowing (G9).
func exemptInbound(t haip.Type) bool {
	switch t {
	case haip.TypeHAI, haip.TypePing, haip.TypePong, haip.TypeFlowUpdate,
		haip.TypePauseChannel, haip.TypeResumeChannel, haip.TypeReplayRequest, haip.TypeError:
		return true
	}
	return false
}

// takeInbound spends a client message's credit, or reports a violation.
func (c *conn) takeInbound(env *haip.Envelope, size int) *haip.Error {
	i, ok := channelIndex(env.Channel)
	if !ok {
		return nil
	}
	c.in.mu.Lock()
	l := &c.in.left[i]
	if exemptInbound(env.Type) {
		// Never refused, but counted: a client such as the v1 SDK spends
		// its own credit on them and waits for the top-up.
		l.msgs, l.bytes = max(l.msgs-1, 0), max(l.bytes-int64(size), 0)
		c.in.mu.Unlock()
		c.topUp(i)
		return nil
	}
	if l.msgs < 1 || l.bytes < int64(size) {
		msgs, byts := l.msgs, l.bytes
		c.in.mu.Unlock()
		c.srv.metrics.flowViolations.Inc()
		return haip.Errorf(haip.CodeFlowControlViolation, "no credit left on channel %s for a %d-byte message: wait for FLOW_UPDATE", env.Channel, size).
			WithRelated(env.ID).WithDetail("channel", string(env.Channel)).
			WithDetail("credit_messages", msgs).WithDetail("credit_bytes", byts)
	}
	l.msgs--
	l.bytes -= int64(size)
	c.in.mu.Unlock()
	c.topUp(i)
	return nil
}

// topUp grants a channel more credit once half of the window is spent,
// scaled down by the fabric's back-pressure; under full pressure nothing
// is granted and a timer tries again.
func (c *conn) topUp(i int) {
	cfg := &c.srv.cfg
	winM, winB := int64(cfg.ClientCreditMessages), int64(cfg.ClientCreditBytes)
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	if c.in.closed {
		return
	}
	l := &c.in.left[i]
	if l.msgs > winM/2 && l.bytes > winB/2 {
		return
	}
	free := 1 - c.srv.pressure.level()
	addM := int64(math.Ceil(float64(winM-l.msgs) * free))
	addB := int64(math.Ceil(float64(winB-l.bytes) * free))
	if free <= 0 || addM < 1 || addB < 1 {
		c.srv.metrics.grantsDeferred.Inc()
		if c.in.retry == nil {
			c.in.retry = time.AfterFunc(time.Duration(cfg.PressureInterval), c.retryGrants)
		} else {
			c.in.retry.Reset(time.Duration(cfg.PressureInterval))
		}
		return
	}
	l.msgs += addM
	l.bytes += addB
	c.grant(haip.AllChannels()[i], addM, addB)
}

func (c *conn) retryGrants() {
	for i := range numChannels {
		c.topUp(i)
	}
}

// stopGrants stops the retry timer for good.
func (c *conn) stopGrants() {
	c.in.mu.Lock()
	c.in.closed = true
	if c.in.retry != nil {
		c.in.retry.Stop()
	}
	c.in.mu.Unlock()
}

// initialGrant sets and announces the client's starting credit.
func (c *conn) initialGrant() {
	m, b := int64(c.srv.cfg.ClientCreditMessages), int64(c.srv.cfg.ClientCreditBytes)
	c.in.mu.Lock()
	for i := range c.in.left {
		c.in.left[i] = credit{msgs: m, bytes: b}
	}
	c.in.mu.Unlock()
	for _, ch := range haip.AllChannels() {
		c.grant(ch, m, b)
	}
}

func (c *conn) grant(ch haip.Channel, msgs, bytes int64) {
	c.sendControl(haip.TypeFlowUpdate, haip.FlowUpdatePayload{Channel: ch, AddMessages: &msgs, AddBytes: &bytes})
}

// pressure is the fabric's back-pressure as one edge sees it: appends to
// JetStream awaiting their ack, and the depth of the run and tool work
// queues (sampled). level is 0 when idle and 1 or more when saturated.
type pressure struct {
	inflight    atomic.Int64
	depth       atomic.Int64
	maxInflight int64
	maxDepth    int64
}

func (p *pressure) level() float64 {
	a := float64(p.inflight.Load()) / float64(p.maxInflight)
	d := float64(p.depth.Load()) / float64(p.maxDepth)
	return max(a, d)
}

// samplePressure samples the work-queue depth (one stream-info request
// per queue).
func (s *Server) samplePressure(ctx context.Context) {
	depth, err := s.queues.Depth(ctx, resolveTimeout)
	if err != nil && ctx.Err() == nil {
		s.logger.Debug("sample work-queue depth", slog.Any(logKeyErr, err))
	}
	s.pressure.depth.Store(depth)
	s.metrics.queueDepth.Set(float64(depth))
}
