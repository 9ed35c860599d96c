package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// EmitAudio appends an AUDIO_CHUNK with its bytes stored in two-frame
// form: clients that take binary frames get them as one, the others as
// base64 in payload.data.
func (r *Run) EmitAudio(ctx context.Context, ch haip.Channel, p haip.AudioChunkPayload, data []byte) (uint64, error) {
	p.Data = ""
	if data == nil {
		data = []byte{}
	}
	r.step++
	return r.log.EmitBinary(ctx, r.Request.Session, haip.NameUUID("run-msg", r.Request.RunID, fmt.Sprint(r.step)),
		r.Request.RunID, r.Request.ThreadID, ch, haip.TypeAudioChunk, p, data)
}

// Follow calls fn with each message the user side stores in the
// session's inbound log, from seq fromSeq on, in order and each once, as
// they arrive, until fn returns false (nil), ctx ends, or no message
// comes for idle (nil). An agent answering audio uses it to take an
// utterance's chunks while they are spoken.
func (r *Run) Follow(ctx context.Context, fromSeq uint64, idle time.Duration, fn func(streams.Entry) bool) error {
	live, err := streams.LiveSubject(r.Request.Session, streams.In)
	if err != nil {
		return err
	}
	sub, err := r.nc.SubscribeSync(live)
	if err != nil {
		return fmt.Errorf("cannot follow the session: %w", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the subscription is ours alone
	_ = sub.SetPendingLimits(-1, 64<<20)

	next := max(fromSeq, 1)
	// catchUp reads the log from next to its end.
	catchUp := func() (bool, error) {
		p, err := r.log.Find(ctx, r.Request.Session, streams.In, next)
		if err != nil {
			return true, nil // nothing at next yet: live will bring it
		}
		for cursor := p.StreamSeq; ; {
			entries, more, err := r.log.Read(ctx, r.Request.Session, streams.In, cursor, 256, 4<<20)
			if err != nil {
				return false, fmt.Errorf("cannot read the session: %w", err)
			}
			for _, e := range entries {
				cursor = e.StreamSeq + 1
				if e.Seq < next {
					continue
				}
				next = e.Seq + 1
				if !fn(e) {
					return false, nil
				}
			}
			if !more || len(entries) == 0 {
				return true, nil
			}
		}
	}
	if goOn, err := catchUp(); !goOn || err != nil {
		return err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, idle)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Quiet for idle: unless the log holds messages that never
			// came live (this process's NATS connection was down), done.
			before := next
			if goOn, err := catchUp(); !goOn || err != nil {
				return err
			}
			if next == before {
				return nil // idle
			}
			continue
		}
		e, err := streams.ParseEntry(m)
		if err != nil || e.Seq < next {
			continue
		}
		if e.Seq > next {
			if goOn, err := catchUp(); !goOn || err != nil {
				return err
			}
			continue
		}
		next = e.Seq + 1
		if !fn(e) {
			return nil
		}
	}
}
