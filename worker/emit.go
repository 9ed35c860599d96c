package worker

import (
	"context"
	"fmt"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// emit appends one envelope with a given id to a session's outbound log.
// Ids derived from the work item make a redelivered item's output stored
// once.
func emit(ctx context.Context, lg *streams.Log, session, id, runID, threadID string, ch haip.Channel, t haip.Type, payload any) (uint64, error) {
	env, err := haip.New(session, ch, t, payload)
	if err != nil {
		return 0, fmt.Errorf("cannot emit %s: %w", t, err)
	}
	env.ID, env.RunID, env.ThreadID = id, runID, threadID
	res, err := lg.AppendEnvelope(ctx, session, streams.Out, env)
	if err != nil {
		return 0, fmt.Errorf("cannot emit %s: %w", t, err)
	}
	return res.Seq, nil
}
