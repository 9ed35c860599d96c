package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/haipfabric/haipfabric/haip"
)

// ErrStore marks a failure to store output in the session log (JetStream
// unavailable, no stream leader for longer than the emit timeout). A run
// or call that meets it is handed back for redelivery, not ended: output
// ids are stable, so the retry is stored once.
var ErrStore = errors.New("cannot store in the session log")

// emitTimeout bounds one emit when ctx sets no deadline; Append retries
// transient failures (a stream leader election) within it.
const emitTimeout = 2 * time.Minute

// Emit appends one envelope, made of payload with a given id, to a
// session's outbound log and returns its seq. Ids derived from the work
// item make a redelivered item's output stored once. When ctx sets no
// deadline the emit is bounded by emitTimeout, within which transient
// failures are retried (Append); a failure to store wraps ErrStore.
func (l *Log) Emit(ctx context.Context, session, id, runID, threadID string, ch haip.Channel, t haip.Type, payload any) (uint64, error) {
	return l.EmitBinary(ctx, session, id, runID, threadID, ch, t, payload, nil)
}

// EmitBinary is Emit with a binary frame stored after the envelope
// (two-frame form; bin nil: none).
func (l *Log) EmitBinary(ctx context.Context, session, id, runID, threadID string, ch haip.Channel, t haip.Type, payload any, bin []byte) (uint64, error) {
	env, err := haip.New(session, ch, t, payload)
	if err != nil {
		return 0, fmt.Errorf("cannot emit %s: %w", t, err)
	}
	env.ID, env.RunID, env.ThreadID = id, runID, threadID
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, emitTimeout)
		defer cancel()
	}
	res, err := l.AppendBinary(ctx, session, Out, env, bin)
	if err != nil {
		return 0, fmt.Errorf("cannot emit %s: %w: %w", t, ErrStore, err)
	}
	return res.Seq, nil
}
