package edge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// This file is the part of the session core that does not depend on a
// connection: what a role may send, and storing a client envelope (with
// the run it may start). WebSocket and HTTP-streaming connections and the
// POST endpoints all go through it.

// inboundAllowed lists what each role may send: an agent every known
// type, a user (or admin) every one but the agent's own events. (A user's
// TOOL_LIST and TOOL_SCHEMA are questions, answered from the tool
// registry; an agent's are announcements, stored like its other
// messages.) The edge's HAI lists exactly these as accept_events.
func inboundAllowed(role auth.Role, t haip.Type) bool {
	return t.Known() && (role == auth.RoleAgent || !agentOnly(t) || isApprovalDecision(role, t))
}

// agentOnly reports the types only the agent side produces (HAIP.md §4,
// §6, §7): a run's start, end and failure, and a tool call's progress and
// outcome. From a user they would land in the log agents read and forge
// a run's end or a tool's result, so they are UNSUPPORTED_TYPE there, on
// every transport.
func agentOnly(t haip.Type) bool {
	switch t {
	case haip.TypeRunStarted, haip.TypeRunFinished, haip.TypeRunError, haip.TypeToolUpdate, haip.TypeToolDone:
		return true
	}
	return false
}

// isToolQuery reports a user's question about the tools.
func isToolQuery(role auth.Role, t haip.Type) bool {
	return role != auth.RoleAgent && (t == haip.TypeToolList || t == haip.TypeToolSchema)
}

// answerToolQuery answers a user's TOOL_LIST (every tool with a live
// worker) or TOOL_SCHEMA (one tool's parameter and result schemas) from
// the registry. The answer goes to the asker only, not to the log.
func (s *Server) answerToolQuery(ctx context.Context, id auth.Identity, session string, env *haip.Envelope) (*haip.Envelope, *haip.Error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	if env.Type == haip.TypeToolList {
		tools, err := s.router.Tools().List(ctx)
		if err != nil {
			return nil, haip.Errorf(haip.CodeInternalError, "tool registry unavailable; retry").WithRelated(env.ID)
		}
		list := haip.ToolListPayload{Tools: []haip.ToolInfo{}}
		for _, t := range s.callable(id, tools) {
			list.Tools = append(list.Tools, haip.ToolInfo{Name: t.Name, Description: t.Description})
		}
		reply, err := haip.New(session, haip.ChannelSystem, haip.TypeToolList, list)
		if err != nil {
			return nil, haip.Errorf(haip.CodeInternalError, "%v", err)
		}
		return reply, nil
	}
	var q haip.ToolSchemaPayload
	if err := env.DecodePayload(&q); err != nil {
		return nil, asHAIPError(err)
	}
	info, found, err := s.router.Tools().Get(ctx, q.Tool)
	switch {
	case errors.Is(err, streams.ErrInvalidToolName):
		return nil, haip.Errorf(haip.CodeProtocolViolation, "%v", err).WithRelated(env.ID)
	case err != nil:
		return nil, haip.Errorf(haip.CodeInternalError, "tool registry unavailable; retry").WithRelated(env.ID)
	case !found:
		return nil, haip.Errorf(haip.CodeToolNotFound, "no live worker serves tool %s", q.Tool).WithRelated(env.ID).WithDetail("tool", q.Tool)
	case !s.cfg.ToolAccess.AllowsIdentity(id, info.Name):
		return nil, s.refuseTool(id, info.Name).WithRelated(env.ID)
	}
	schema, _ := json.Marshal(map[string]json.RawMessage{"params": orEmptyObject(info.ParamsSchema), "result": orEmptyObject(info.ResultSchema)})
	reply, err := haip.New(session, haip.ChannelSystem, haip.TypeToolSchema, haip.ToolSchemaPayload{Tool: info.Name, Schema: schema})
	if err != nil {
		return nil, haip.Errorf(haip.CodeInternalError, "%v", err)
	}
	return reply, nil
}

// callable is the tools of list the caller may call (TOOL_ACCESS).
func (s *Server) callable(id auth.Identity, list []streams.ToolInfo) []streams.ToolInfo {
	out := list[:0:0]
	for _, t := range list {
		if s.cfg.ToolAccess.AllowsIdentity(id, t.Name) {
			out = append(out, t)
		}
	}
	return out
}

// refuseTool is the answer to a caller TOOL_ACCESS does not let call
// tool: the tool is not found for it, as it is not listed for it either.
// Nothing is stored and nothing is queued; the refusal is logged.
func (s *Server) refuseTool(id auth.Identity, tool string) *haip.Error {
	s.logger.Warn("tool call refused by TOOL_ACCESS", slog.String("tool", tool), slog.String("subject", id.Subject), slog.String("role", string(id.Role)))
	return haip.Errorf(haip.CodeToolNotFound, "tool %s is not available to this caller", tool).WithDetail("tool", tool)
}

func orEmptyObject(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage(`{}`)
	}
	return raw
}

// checkInbound refuses types a role may not send, and keeps each side to
// its lanes: users do not speak on the agent's channels, agents not on
// the user's. One exception: AGENT is the spec's tool channel (HAIP.md
// §3), and the official SDK sends a user's tool traffic there, so a user
// may send userToolType envelopes on AGENT (and nothing else: text, runs
// and audio stay the agent's).
func checkInbound(role auth.Role, env *haip.Envelope) *haip.Error {
	if !inboundAllowed(role, env.Type) {
		return haip.Errorf(haip.CodeUnsupportedType, "%s is not accepted from a %s connection", env.Type, role).
			WithRelated(env.ID).WithDetail("type", string(env.Type))
	}
	banned := [2]haip.Channel{haip.ChannelAgent, haip.ChannelAudioOut}
	if role == auth.RoleAgent {
		banned = [2]haip.Channel{haip.ChannelUser, haip.ChannelAudioIn}
	} else if userToolType(env.Type) {
		banned[0] = haip.ChannelAudioOut
	}
	if env.Channel == banned[0] || env.Channel == banned[1] {
		return haip.Errorf(haip.CodeProtocolViolation, "a %s connection may not send on channel %s", role, env.Channel).
			WithRelated(env.ID).WithDetail("channel", string(env.Channel))
	}
	return nil
}

// userToolType reports the tool traffic a user may send on channel AGENT:
// a call, its cancellation, and the two questions about the tools. A
// user's TOOL_UPDATE and TOOL_DONE are refused anyway (agentOnly).
func userToolType(t haip.Type) bool {
	switch t {
	case haip.TypeToolCall, haip.TypeToolCancel, haip.TypeToolList, haip.TypeToolSchema:
		return true
	}
	return false
}

// directions returns the log a role reads and the log it writes.
func directions(role auth.Role) (read, write streams.Direction) {
	if role == auth.RoleAgent {
		return streams.In, streams.Out
	}
	return streams.Out, streams.In
}

// userTextWindow is how far back (in messages of the session's inbound
// log) the text of a finished user message is looked for.
const userTextWindow = 1024

// store appends a client envelope (with the binary frame that followed
// it, if any) to its session log and starts what it asks for: the run
// that answers a user's finished text or audio, a tool call, a
// cancellation. It is idempotent: a re-sent envelope (same id) is stored
// once and starts nothing twice. runLimit is the client's own
// max_concurrent_runs (0: the edge's limit only). The store finishes even
// if ctx's connection is going away.
func (s *Server) store(ctx context.Context, id auth.Identity, session string, env *haip.Envelope, bin []byte, runLimit int) (streams.Appended, *haip.Error) {
	_, writeDir := directions(id.Role)
	var call haip.ToolCallPayload
	switch env.Type {
	case haip.TypeToolCall:
		if err := env.DecodePayload(&call); err != nil {
			return streams.Appended{}, asHAIPError(err)
		}
		if err := streams.ValidateToolName(call.Tool); err != nil {
			return streams.Appended{}, haip.Errorf(haip.CodeProtocolViolation, "%v", err).WithRelated(env.ID).WithDetail("tool", call.Tool)
		}
		if !s.cfg.ToolAccess.AllowsIdentity(id, call.Tool) {
			return streams.Appended{}, s.refuseTool(id, call.Tool).WithRelated(env.ID)
		}
	case haip.TypeToolDone:
		if isApprovalDecision(id.Role, env.Type) {
			// A user's TOOL_DONE: a decision on an approval, nothing else.
			var done haip.ToolDonePayload
			if err := env.DecodePayload(&done); err != nil {
				return streams.Appended{}, asHAIPError(err)
			}
			if _, herr := s.decideApproval(ctx, id, session, done.CallID, decisionOf(done), env.ID); herr != nil {
				if herr.Code == haip.CodeToolNotFound {
					herr = haip.Errorf(haip.CodeUnsupportedType, "a user sends TOOL_DONE only to decide an approval request of this session; %s is none", done.CallID).
						WithRelated(env.ID).WithDetail("type", string(env.Type))
				}
				return streams.Appended{}, herr
			}
		}
	case haip.TypeAudioChunk:
		if env.Channel != haip.ChannelAudioIn && env.Channel != haip.ChannelAudioOut {
			return streams.Appended{}, haip.Errorf(haip.CodeProtocolViolation, "AUDIO_CHUNK belongs on AUDIO_IN or AUDIO_OUT, not %s", env.Channel).
				WithRelated(env.ID).WithDetail("channel", string(env.Channel))
		}
	}
	stored := *env // the caller's envelope keeps its own seq and ack
	if bin == nil {
		// Base64 data (with or without the v1 SDK's bin_len beside it)
		// becomes the stored binary; a bin_len with no data has no bytes.
		split, err := haip.SplitBinary(&stored, s.cfg.MaxAudioBytes)
		if err != nil {
			return streams.Appended{}, asHAIPError(err)
		}
		bin = split
		if bin == nil && stored.BinLen != nil && *stored.BinLen > 0 {
			return streams.Appended{}, haip.Errorf(haip.CodeProtocolViolation, "bin_len needs a binary frame, which this transport cannot carry: send the bytes base64 in payload.data").WithRelated(env.ID)
		}
	} else if len(bin) > s.cfg.MaxAudioBytes {
		return streams.Appended{}, haip.Errorf(haip.CodeMessageTooLarge, "binary frame of %d bytes is over the %d allowed", len(bin), s.cfg.MaxAudioBytes).
			WithRelated(env.ID).WithDetail("max_bytes", s.cfg.MaxAudioBytes)
	}
	if ok, wait := s.limits.allow(id, limitMessages, 1); !ok {
		return streams.Appended{}, s.refuseLimit(limitMessages, "too many messages", wait).WithRelated(env.ID)
	}
	if env.Type == haip.TypeToolCall {
		if ok, wait := s.limits.allow(id, limitToolCalls, 1); !ok {
			return streams.Appended{}, s.refuseLimit(limitToolCalls, "too many tool calls", wait).WithRelated(env.ID)
		}
		if herr := s.checkInFlight(ctx, id, limitToolCallsInFlight); herr != nil {
			return streams.Appended{}, herr.WithRelated(env.ID)
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()

	// A user's finished text starts a run: admitted (the session's run
	// limit) before the message is stored, so a refused one can be sent
	// again later.
	var textRun *streams.RunState
	if id.Role != auth.RoleAgent && env.Channel == haip.ChannelUser && env.Type == haip.TypeTextMessageEnd {
		var end haip.TextMessageEndPayload
		if err := env.DecodePayload(&end); err != nil {
			return streams.Appended{}, asHAIPError(err)
		}
		if ok, wait := s.limits.allow(id, limitRuns, 1); !ok {
			return streams.Appended{}, s.refuseLimit(limitRuns, "too many runs started", wait).WithRelated(env.ID)
		}
		if herr := s.checkInFlight(ctx, id, limitRunsInFlight); herr != nil {
			return streams.Appended{}, herr.WithRelated(env.ID)
		}
		textRun = &streams.RunState{RunID: haip.NameUUID("run", session, end.MessageID), Kind: streams.RunKindText,
			MessageID: end.MessageID, ThreadID: env.ThreadID}
		existing, herr := s.admitRun(ctx, session, *textRun, runLimit, env.ID, nil)
		if herr != nil {
			return streams.Appended{}, herr
		}
		if existing != nil && existing.Status != streams.RunQueued {
			textRun = nil // already taken or ended: never again
		}
	}
	var cancelRun string
	if env.Type == haip.TypeRunCancel {
		runID, herr := s.markRunCancelled(ctx, session, env, id)
		if herr != nil {
			return streams.Appended{}, herr
		}
		cancelRun = runID
	}

	began := time.Now()
	s.pressure.inflight.Add(1)
	res, err := s.log.AppendBinary(ctx, session, writeDir, &stored, bin)
	s.pressure.inflight.Add(-1)
	s.metrics.appendDur.Observe(time.Since(began).Seconds())
	if err != nil {
		s.logger.Error("store", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		if textRun != nil {
			_ = s.runs.Finish(ctx, session, textRun.RunID, streams.RunError, "the message that started it was not stored")
		}
		return res, haip.Errorf(haip.CodeInternalError, "message not stored; send it again").WithRelated(env.ID)
	}
	if cancelRun != "" {
		// Published after the store, and again on a re-sent cancel: the
		// agent may have missed the first.
		s.publishRunCancel(cancelRun)
	}
	if res.Duplicate && textRun == nil {
		return res, nil
	}
	if res.Duplicate && env.Type != haip.TypeTextMessageEnd {
		return res, nil
	}
	switch {
	case env.Type == haip.TypeToolCall:
		return res, s.routeToolCall(ctx, session, id.Subject, env, call)
	case env.Type == haip.TypeToolCancel:
		return res, s.routeToolCancel(ctx, session, env)
	case textRun != nil:
		return res, s.queueTextRun(ctx, session, id.Subject, res, *textRun, env)
	case env.Type == haip.TypeAudioChunk && env.Channel == haip.ChannelAudioIn && id.Role != auth.RoleAgent:
		return res, s.queueAudioRun(ctx, session, id.Subject, res, env, stored, runLimit)
	}
	return res, nil
}

// userText rebuilds a user's text message from the session's inbound log:
// its TEXT_MESSAGE_START text and PARTs, in log order, up to its END at
// endSeq. Reading the log (not a connection's memory) means the parts may
// have come by separate requests, through different edges.
func (s *Server) userText(ctx context.Context, session string, endSeq uint64, messageID string) (string, *haip.Error) {
	from := uint64(1)
	if endSeq > userTextWindow {
		from = endSeq - userTextWindow
	}
	var text []byte
	var herr *haip.Error
	err := s.log.Scan(ctx, session, streams.In, from, streams.ScanOptions{Batch: s.cfg.CatchupBatch, MaxBytes: s.cfg.CatchupBytes, Oldest: true}, func(e streams.Entry) bool {
		if e.Seq >= endSeq {
			return false
		}
		if e.Type != string(haip.TypeTextMessageStart) && e.Type != string(haip.TypeTextMessagePart) {
			return true
		}
		var part struct {
			Channel haip.Channel `json:"channel"`
			Payload struct {
				MessageID string `json:"message_id"`
				Text      string `json:"text"`
			} `json:"payload"`
		}
		if json.Unmarshal(e.Data, &part) != nil || part.Payload.MessageID != messageID || part.Channel != haip.ChannelUser {
			return true
		}
		if len(text)+len(part.Payload.Text) > s.cfg.MaxUserText {
			herr = haip.Errorf(haip.CodeMessageTooLarge, "text message longer than %d bytes; no run started", s.cfg.MaxUserText).
				WithDetail("max_bytes", s.cfg.MaxUserText)
			return false
		}
		text = append(text, part.Payload.Text...)
		return true
	})
	if err != nil {
		return "", haip.Errorf(haip.CodeInternalError, "cannot read the message back: %v", err)
	}
	if herr != nil {
		return "", herr
	}
	return string(text), nil
}

// routeToolCall and routeToolCancel hand a stored TOOL_CALL or
// TOOL_CANCEL to the tool workers (see streams.Router); user is the
// caller's JWT subject.
func (s *Server) routeToolCall(ctx context.Context, session, user string, env *haip.Envelope, call haip.ToolCallPayload) *haip.Error {
	if err := s.router.Call(ctx, session, env.RunID, user, call); err != nil {
		s.logger.Error("route tool call", slog.Any(logKeyErr, err))
		return haip.Errorf(haip.CodeInternalError, "tool call not handled; send it again").WithRelated(env.ID)
	}
	return nil
}

func (s *Server) routeToolCancel(ctx context.Context, session string, env *haip.Envelope) *haip.Error {
	var p haip.ToolCancelPayload
	if err := env.DecodePayload(&p); err != nil {
		return asHAIPError(err)
	}
	if err := s.router.Cancel(ctx, session, env.RunID, p.CallID, p.Reason); err != nil {
		s.logger.Error("cancel tool call", slog.Any(logKeyErr, err))
		return haip.Errorf(haip.CodeInternalError, "cancel not delivered; send it again").WithRelated(env.ID)
	}
	return nil
}
