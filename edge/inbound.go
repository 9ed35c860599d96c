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

// inboundAllowed lists what each role may send.
func inboundAllowed(role auth.Role, t haip.Type) bool {
	switch t {
	case haip.TypeToolList, haip.TypeToolSchema:
		return role != auth.RoleUser
	}
	return t.Known()
}

// checkInbound refuses types a role may not send, and keeps each side to
// its lanes: users do not speak on the agent's channels, agents not on
// the user's.
func checkInbound(role auth.Role, env *haip.Envelope) *haip.Error {
	if !inboundAllowed(role, env.Type) {
		return haip.Errorf(haip.CodeUnsupportedType, "%s is not accepted from a %s connection", env.Type, role).
			WithRelated(env.ID).WithDetail("type", string(env.Type))
	}
	banned := [2]haip.Channel{haip.ChannelAgent, haip.ChannelAudioOut}
	if role == auth.RoleAgent {
		banned = [2]haip.Channel{haip.ChannelUser, haip.ChannelAudioIn}
	}
	if env.Channel == banned[0] || env.Channel == banned[1] {
		return haip.Errorf(haip.CodeProtocolViolation, "a %s connection may not send on channel %s", role, env.Channel).
			WithRelated(env.ID).WithDetail("channel", string(env.Channel))
	}
	return nil
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

// store appends a client envelope to its session log and, for the end of
// a user's text message, queues the run that answers it. It is idempotent:
// a re-sent envelope (same id) is stored once and starts no second run.
// The store finishes even if ctx's connection is going away.
func (s *Server) store(ctx context.Context, id auth.Identity, session string, env *haip.Envelope) (streams.Appended, *haip.Error) {
	_, writeDir := directions(id.Role)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	began := time.Now()
	stored := *env
	stored.Ack = nil
	res, err := s.log.Append(ctx, session, writeDir, streams.Record{ID: env.ID, Type: string(env.Type)}, func(seq uint64) ([]byte, error) {
		stored.Seq = haip.U64(seq)
		return haip.Encode(&stored)
	})
	s.metrics.appendDur.Observe(time.Since(began).Seconds())
	if err != nil {
		s.logger.Error("store", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		return res, haip.Errorf(haip.CodeInternalError, "message not stored; send it again").WithRelated(env.ID)
	}
	if res.Duplicate || id.Role == auth.RoleAgent || env.Channel != haip.ChannelUser || env.Type != haip.TypeTextMessageEnd {
		return res, nil
	}
	var end haip.TextMessageEndPayload
	if err := env.DecodePayload(&end); err != nil {
		return res, asHAIPError(err)
	}
	text, herr := s.userText(ctx, session, res.Seq, end.MessageID)
	if herr != nil {
		return res, herr.WithRelated(env.ID)
	}
	run := streams.RunRequest{
		RunID:     haip.NameUUID("run", session, end.MessageID),
		Session:   session,
		ThreadID:  env.ThreadID,
		MessageID: end.MessageID,
		Text:      text,
		Created:   time.Now().UTC(),
	}
	if err := streams.PublishRun(ctx, s.js, run); err != nil {
		s.logger.Error("queue run", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		return res, haip.Errorf(haip.CodeInternalError, "run not started; send the message again").WithRelated(env.ID)
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
	p, err := s.log.Find(ctx, session, streams.In, from)
	if errors.Is(err, streams.ErrTooOld) {
		var b streams.Bounds
		if b, err = s.log.Bounds(ctx, session, streams.In); err == nil {
			p = b.First
		}
	}
	if err != nil {
		return "", haip.Errorf(haip.CodeInternalError, "cannot read the message back: %v", err)
	}
	var text []byte
	for cursor := p.StreamSeq; ; {
		entries, more, err := s.log.Read(ctx, session, streams.In, cursor, s.cfg.CatchupBatch, s.cfg.CatchupBytes)
		if err != nil {
			return "", haip.Errorf(haip.CodeInternalError, "cannot read the message back: %v", err)
		}
		for _, e := range entries {
			if e.Seq >= endSeq {
				return string(text), nil
			}
			cursor = e.StreamSeq + 1
			if e.Type != string(haip.TypeTextMessageStart) && e.Type != string(haip.TypeTextMessagePart) {
				continue
			}
			var part struct {
				Channel haip.Channel `json:"channel"`
				Payload struct {
					MessageID string `json:"message_id"`
					Text      string `json:"text"`
				} `json:"payload"`
			}
			if json.Unmarshal(e.Data, &part) != nil || part.Payload.MessageID != messageID || part.Channel != haip.ChannelUser {
				continue
			}
			if len(text)+len(part.Payload.Text) > s.cfg.MaxUserText {
				return "", haip.Errorf(haip.CodeMessageTooLarge, "text message longer than %d bytes; no run started", s.cfg.MaxUserText).
					WithDetail("max_bytes", s.cfg.MaxUserText)
			}
			text = append(text, part.Payload.Text...)
		}
		if !more || len(entries) == 0 {
			return string(text), nil
		}
	}
}
