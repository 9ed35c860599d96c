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
// utterance's chunks while they are spoken. See streams.Follower.
func (r *Run) Follow(ctx context.Context, fromSeq uint64, idle time.Duration, fn func(streams.Entry) bool) error {
	f, err := r.log.NewFollower(r.Request.Session, streams.In)
	if err != nil {
		return fmt.Errorf("cannot follow the session: %w", err)
	}
	defer f.Close()
	return f.Follow(ctx, fromSeq, streams.FollowOptions{Quiet: max(idle, time.Nanosecond), UntilIdle: true}, fn)
}
