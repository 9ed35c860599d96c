package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
)

// Append stores one message at the end of a session log and returns the
// seq it got. build is called with the seq the message will carry (again
// after a lost race) and returns the message body, so the body may embed
// its own seq. A record with an ID is idempotent within the stream's
// duplicate window: a retried Append with the same id returns the first
// one's position with Duplicate set.
//
// Every session shares one stream, whose de-duplication is by message id
// across the whole stream; ids are chosen by clients. So the id is stored
// scoped to its session and direction (logMsgID): the same id in another
// session, or in the other direction of this one, is another message.
//
// Appends to one session log from one Log are committed one request at a
// time: an Append that finds none in flight publishes its message alone;
// the ones that arrive meanwhile are committed together, as one atomic
// batch, by the Log (group commit, see batch.go). build may then be called
// from another goroutine, never after Append returned.
func (l *Log) Append(ctx context.Context, session string, d Direction, rec Record, build func(seq uint64) ([]byte, error)) (Appended, error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return Appended{}, err
	}
	p := &pending{ctx: ctx, session: session, d: d, subj: subj, rec: rec, build: build, done: make(chan appendResult, 1)}
	if rec.ID != "" {
		p.msgID = logMsgID(session, d, rec.ID)
	}
	return l.submit(p)
}

// appendOne stores the message of p alone, with one compare-and-set
// publish, retrying lost races and transient failures within ctx. The
// caller holds the right to write p's subject (submit).
func (l *Log) appendOne(ctx context.Context, p *pending) (Appended, error) {
	subj, session, d, rec, msgID := p.subj, p.session, p.d, p.rec, p.msgID
	fail := func(err error) (Appended, error) { return Appended{}, fmt.Errorf("cannot append to %s: %w", subj, err) }

	// Transient failures (no stream leader during an election, a timeout)
	// are retried with backoff for as long as ctx allows: a CAS publish
	// with a stale position is safe, it only conflicts. Lost races are
	// bounded by maxAppendAttempts. Each request is bounded by
	// attemptTimeout on its own: a publish whose ack was lost with a dying
	// stream leader must not use up all of ctx.
	var backoff Backoff
	pos, ok := l.cached(subj)
	for !ok {
		actx, cancel := attempt(ctx, l.try)
		b, err := l.bounds(actx, session, d, subj)
		cancel()
		switch {
		case err == nil:
			pos, ok = b.Last, true
		case isUncertain(err) && ctx.Err() == nil:
			if !backoff.Wait(ctx) {
				return fail(ctx.Err())
			}
		default:
			return fail(err)
		}
	}
	conflicts, uncertain := 0, false
	for {
		seq := pos.Seq + 1
		msg, err := p.message(seq)
		if err != nil {
			return Appended{}, err
		}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(pos.StreamSeq)}
		if msgID != "" {
			opts = append(opts, jetstream.WithMsgID(msgID))
		}
		actx, cancel := attempt(ctx, l.try)
		ack, pubErr := l.js.PublishMsg(actx, msg, opts...)
		cancel()
		if pubErr == nil {
			if ack.Duplicate {
				actx, cancel := attempt(ctx, l.try)
				a := l.duplicate(actx, ack.Sequence)
				cancel()
				// After an uncertain try in this call, the stored copy is
				// most likely that try's: not a resend by the caller.
				a.Duplicate = !uncertain
				return a, nil
			}
			pos = Position{Seq: seq, StreamSeq: ack.Sequence}
			l.remember(subj, tailKey(session, d), pos)
			return Appended{Position: pos}, nil
		}
		switch {
		case ctx.Err() != nil:
			return fail(ctx.Err())
		case isConflict(pubErr):
			if conflicts++; conflicts >= maxAppendAttempts {
				return fail(ErrConflictLimit)
			}
		case isUncertain(pubErr):
			uncertain = true
			if !backoff.Wait(ctx) {
				return fail(ctx.Err())
			}
		default:
			return fail(pubErr)
		}
		// Lost the race, or do not know whether the publish landed: read
		// the real end of the log. If it is our message, we are done.
		actx, cancel = attempt(ctx, l.try)
		last, err := l.last(actx, subj)
		cancel()
		switch {
		case errors.Is(err, errNotFound):
			actx, cancel := attempt(ctx, l.try)
			b, err := l.bounds(actx, session, d, subj)
			cancel()
			if err == nil {
				pos = b.Last
				continue
			}
			if !isUncertain(err) {
				return fail(err)
			}
			if !backoff.Wait(ctx) {
				return fail(ctx.Err())
			}
			continue
		case isUncertain(err):
			// Keep pos: the next CAS publish tells.
			if !backoff.Wait(ctx) {
				return fail(ctx.Err())
			}
			continue
		case err != nil:
			return fail(err)
		}
		pos = last.Position
		if msgID != "" && last.MsgID == rec.ID {
			l.remember(subj, tailKey(session, d), pos)
			// After a conflict the message was stored by an earlier call (a
			// duplicate); after an uncertain publish, by this one.
			return Appended{Position: pos, Duplicate: isConflict(pubErr) && !uncertain}, nil
		}
	}
}

// logMsgID is the Nats-Msg-Id under which a message with id id is stored
// in the log of session in direction d: "<session>.<direction>.<id>".
// Session ids and directions hold no ".", so no two (session, direction,
// id) share one.
func logMsgID(session string, d Direction, id string) string {
	return session + "." + string(d) + "." + id
}

// recordID is the id a message was appended with, from its stored
// Nats-Msg-Id and the subject it was read on: a log subject or its live
// subject, both ending in "<session>.<direction>". Messages stored before
// ids were scoped carry the bare id, which is returned as it is.
func recordID(msgID, subj string) string {
	i := strings.LastIndexByte(subj, '.')
	if i <= 0 {
		return msgID
	}
	j := strings.LastIndexByte(subj[:i], '.')
	return strings.TrimPrefix(msgID, subj[j+1:]+".")
}

// AppendEnvelope appends a HAIP envelope: its id is the message id, its
// type the Haip-Type header, and its seq field is set to the seq it gets
// (env is modified). Ack is not stored: it belongs to one connection.
func (l *Log) AppendEnvelope(ctx context.Context, session string, d Direction, env *haip.Envelope) (Appended, error) {
	return l.AppendBinary(ctx, session, d, env, nil)
}

// AppendBinary is AppendEnvelope for an envelope followed by a binary
// frame (two-frame mode, HAIP §8): bin_len is set to len(bin) and the
// bytes are stored with the envelope (Entry.Bin). A nil bin stores the
// envelope alone.
func (l *Log) AppendBinary(ctx context.Context, session string, d Direction, env *haip.Envelope, bin []byte) (Appended, error) {
	env.Ack = nil
	if bin != nil {
		n := int64(len(bin))
		env.BinLen = &n
		if env.BinMime == "" && env.Type == haip.TypeAudioChunk {
			// In two-frame mode bin_mime duplicates the chunk's mime (§8).
			var p haip.AudioChunkPayload
			if env.DecodePayload(&p) == nil {
				env.BinMime = p.Mime
			}
		}
	}
	rec := Record{ID: env.ID, Type: string(env.Type), Channel: string(env.Channel), Bin: bin}
	return l.Append(ctx, session, d, rec, func(seq uint64) ([]byte, error) {
		env.Seq = haip.U64(seq)
		return haip.Encode(env)
	})
}

// duplicate resolves the position of an already-stored message.
func (l *Log) duplicate(ctx context.Context, streamSeq uint64) Appended {
	e, err := l.get(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return l.stream.GetMsg(ctx, streamSeq)
	})
	if err != nil {
		return Appended{Position: Position{StreamSeq: streamSeq}, Duplicate: true}
	}
	return Appended{Position: e.Position, Duplicate: true}
}
