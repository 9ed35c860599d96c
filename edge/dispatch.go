package edge

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// One dispatcher serves every way an envelope reaches the edge: a
// streaming connection (WebSocket, NDJSON) and a POST of envelopes. Each
// carrier keeps only what is its own (a connection: its credit, the
// pairing of an envelope with its binary frame, its handshake; a POST:
// the per-envelope result) and hands each envelope to dispatch, which
// looks its type up in one table. A new envelope type is one entry there
// and its handler (and its payload in package haip).

// inbound is one envelope a client sent, as the dispatcher sees it. The
// carrier has checked it (checkInbound) and authorised its session.
type inbound struct {
	id       auth.Identity
	session  string
	env      *haip.Envelope
	data     []byte // the envelope as received
	bin      []byte // the binary frame that followed it, if any
	runLimit int    // the client's max_concurrent_runs (0: none)
}

// carrier is what a handler needs of what carried the envelope: a
// streaming connection answers on itself, a POST in its result.
type carrier interface {
	// reply answers the sender alone (a PONG, a tool query's answer).
	reply(env *haip.Envelope) *haip.Error
	// hello takes a HAI (the carrier's own handshake is done before).
	hello(ctx context.Context, in inbound) *haip.Error
	// replay resends part of the session log to the sender.
	replay(ctx context.Context, in inbound, p haip.ReplayRequestPayload) *haip.Error
	// flow applies the sender's flow control (FLOW_UPDATE,
	// PAUSE_CHANNEL, RESUME_CHANNEL) to its streams.
	flow(ctx context.Context, in inbound, f flowMsg) *haip.Error
	// stored learns where an envelope was stored.
	stored(res streams.Appended)
}

// handler handles the envelopes of one type.
type handler func(s *Server, ctx context.Context, in inbound, c carrier) *haip.Error

// route is a dispatch-table entry. reads: the envelope leaves no trace in
// the session log (it may not create a session: see authorize); tool
// queries read from a user, and are stored from an agent.
type route struct {
	handle    handler
	reads     bool
	toolQuery bool
}

// routes is the dispatch table: every type that is not simply stored in
// the session log (and so starts what it asks for: runs, tool calls,
// cancellations; see store). It is never changed.
var routes = map[haip.Type]route{
	haip.TypeHAI:           {handle: func(_ *Server, ctx context.Context, in inbound, c carrier) *haip.Error { return c.hello(ctx, in) }},
	haip.TypePing:          {handle: handlePing, reads: true},
	haip.TypePong:          {handle: func(*Server, context.Context, inbound, carrier) *haip.Error { return nil }, reads: true}, // liveness only
	haip.TypeReplayRequest: {handle: handleReplay, reads: true},
	haip.TypeFlowUpdate:    {handle: handleFlow, reads: true},
	haip.TypePauseChannel:  {handle: handleFlow, reads: true},
	haip.TypeResumeChannel: {handle: handleFlow, reads: true},
	haip.TypeError:         {handle: handleClientError, reads: true},
	haip.TypeToolList:      {handle: handleToolQuery, toolQuery: true},
	haip.TypeToolSchema:    {handle: handleToolQuery, toolQuery: true},
}

// dispatch handles one envelope the carrier has checked and authorised.
func (s *Server) dispatch(ctx context.Context, in inbound, c carrier) *haip.Error {
	if r, ok := routes[in.env.Type]; ok {
		return r.handle(s, ctx, in, c)
	}
	return handleStore(s, ctx, in, c)
}

// readsOnly reports whether an envelope of type t from role leaves no
// trace in the session log: answered or passed on, not stored.
func readsOnly(role auth.Role, t haip.Type) bool {
	r, ok := routes[t]
	return ok && (r.reads || r.toolQuery && isToolQuery(role, t))
}

// handleStore stores the envelope in the session log and starts what it
// asks for.
func handleStore(s *Server, ctx context.Context, in inbound, c carrier) *haip.Error {
	res, herr := s.store(ctx, in.id, in.session, in.env, in.bin, in.runLimit)
	if herr != nil {
		return herr
	}
	c.stored(res)
	return nil
}

func handlePing(_ *Server, _ context.Context, in inbound, c carrier) *haip.Error {
	var p haip.PingPayload
	if err := in.env.DecodePayload(&p); err != nil {
		return asHAIPError(err)
	}
	pong, err := haip.New(in.session, haip.ChannelSystem, haip.TypePong, haip.PongPayload{Nonce: p.Nonce})
	if err != nil {
		return haip.Errorf(haip.CodeInternalError, "cannot answer: %v", err).WithRelated(in.env.ID)
	}
	return c.reply(pong)
}

func handleReplay(_ *Server, ctx context.Context, in inbound, c carrier) *haip.Error {
	var p haip.ReplayRequestPayload
	if err := in.env.DecodePayload(&p); err != nil {
		return asHAIPError(err)
	}
	return c.replay(ctx, in, p)
}

func handleFlow(_ *Server, ctx context.Context, in inbound, c carrier) *haip.Error {
	f, herr := parseFlow(in.env)
	if herr != nil {
		return herr
	}
	return c.flow(ctx, in, f)
}

func handleClientError(s *Server, _ context.Context, in inbound, _ carrier) *haip.Error {
	s.clientError(s.logger, in.env)
	return nil
}

// handleToolQuery answers a user's TOOL_LIST or TOOL_SCHEMA from the tool
// registry; an agent's are announcements, stored.
func handleToolQuery(s *Server, ctx context.Context, in inbound, c carrier) *haip.Error {
	if !isToolQuery(in.id.Role, in.env.Type) {
		return handleStore(s, ctx, in, c)
	}
	reply, herr := s.answerToolQuery(ctx, in.id, in.session, in.env)
	if herr != nil {
		return herr
	}
	return c.reply(reply)
}

// parseFlow reads a FLOW_UPDATE, PAUSE_CHANNEL or RESUME_CHANNEL.
func parseFlow(env *haip.Envelope) (flowMsg, *haip.Error) {
	f := flowMsg{typ: env.Type}
	var ch haip.Channel
	if env.Type == haip.TypeFlowUpdate {
		var p haip.FlowUpdatePayload
		if err := env.DecodePayload(&p); err != nil {
			return f, asHAIPError(err)
		}
		ch = p.Channel
		if p.AddMessages != nil {
			f.msgs = *p.AddMessages
		}
		if p.AddBytes != nil {
			f.byts = *p.AddBytes
		}
	} else {
		var p haip.ChannelControlPayload
		if err := env.DecodePayload(&p); err != nil {
			return f, asHAIPError(err)
		}
		ch = p.Channel
	}
	i, ok := channelIndex(ch)
	if !ok {
		return f, haip.Errorf(haip.CodeProtocolViolation, "unknown channel %q: want one of USER, AGENT, SYSTEM, AUDIO_IN, AUDIO_OUT", ch).
			WithRelated(env.ID).WithDetail("channel", string(ch))
	}
	f.ch = i
	return f, nil
}

// The two carriers.

// A connection answers on itself, through its writer.
var _ carrier = (*conn)(nil)

func (c *conn) reply(env *haip.Envelope) *haip.Error {
	if c.accepts == nil || c.accepts.has(env.Type) {
		c.enqueue(outbound{env: env})
	}
	return nil
}

func (c *conn) hello(_ context.Context, in inbound) *haip.Error {
	return haip.Errorf(haip.CodeProtocolViolation, "duplicate HAI: the handshake is done").WithRelated(in.env.ID)
}

func (c *conn) replay(_ context.Context, in inbound, p haip.ReplayRequestPayload) *haip.Error {
	rr := replayRequest{from: uint64(p.FromSeq), relatedID: in.env.ID}
	if p.ToSeq != nil {
		rr.to = uint64(*p.ToSeq)
	}
	c.enqueue(outbound{replay: &rr})
	return nil
}

func (c *conn) flow(_ context.Context, _ inbound, f flowMsg) *haip.Error {
	c.enqueue(outbound{flow: &f})
	return nil
}

func (c *conn) stored(streams.Appended) {}

// postCarrier answers one POSTed envelope in its result.
type postCarrier struct {
	s        *Server
	a        admission
	res      *PostResult
	replayed *int // bytes the POST's replays have returned so far
}

var _ carrier = (*postCarrier)(nil)

func (p *postCarrier) reply(env *haip.Envelope) *haip.Error {
	b, err := haip.Encode(env)
	if err != nil {
		return haip.Errorf(haip.CodeInternalError, "cannot answer: %v", err)
	}
	p.res.Replies = append(p.res.Replies, b)
	return nil
}

// hello hands the HAI to a stream of the same user that opened without a
// session (the official SDK's SSE and streaming GETs), on any edge.
func (p *postCarrier) hello(ctx context.Context, in inbound) *haip.Error {
	bound, err := p.s.bindHello(ctx, in.id.Subject, in.data)
	if err != nil {
		p.s.logger.Warn("bind HAI", slog.Any(logKeyErr, err))
	}
	p.res.Bound = &bound
	return nil
}

func (p *postCarrier) replay(ctx context.Context, in inbound, rp haip.ReplayRequestPayload) *haip.Error {
	replies, next, herr := p.s.postReplay(ctx, p.a, in.session, rp, p.replayed)
	if herr != nil {
		return herr
	}
	for _, b := range replies {
		p.res.Replies = append(p.res.Replies, json.RawMessage(b))
	}
	p.res.NextSeq = next
	return nil
}

// flow passes the flow control to the caller's one-way streams of the
// session, on whichever edge they are.
func (p *postCarrier) flow(_ context.Context, in inbound, _ flowMsg) *haip.Error {
	subj, err := streams.FlowSubject(in.session, in.id.Subject)
	if err == nil {
		err = p.s.nc.Publish(subj, in.data)
	}
	if err != nil {
		return haip.Errorf(haip.CodeInternalError, "flow control not delivered; send it again")
	}
	return nil
}

func (p *postCarrier) stored(res streams.Appended) {
	p.res.Seq, p.res.Duplicate = res.Seq, res.Duplicate
}
