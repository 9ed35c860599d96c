package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// readyStreams are the streams sessions cannot be served without: the
// session logs, the session records and log tails, and the run queue and
// run states. A KV bucket is the stream kvStream names.
var readyStreams = [...]string{
	SessionStream,
	kvStream(SessionBucket),
	kvStream(TailBucket),
	RunStream,
	kvStream(RunBucket),
}

// kvStream is the name of the stream that holds KV bucket bucket.
func kvStream(bucket string) string { return "KV_" + bucket }

// Ready reports whether sessions can be served now: JetStream answers,
// and each stream sessions need has a leader. After a cluster restart the
// meta leader (and so account info) comes back seconds before each stream
// has elected its own; until then opening a session would fail. It costs
// one request per stream, each bounded by ctx.
func (f *Fabric) Ready(ctx context.Context) error {
	if _, err := f.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream unreachable: %w", err)
	}
	for _, name := range readyStreams {
		st, err := f.js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info := st.CachedInfo()
		if info.Cluster != nil && info.Cluster.Leader == "" {
			return fmt.Errorf("stream %s has no leader yet", name)
		}
	}
	return nil
}

// Depth returns how many messages wait in the run and tool queues
// together, with one stream-info request per queue, each bounded by try
// within ctx. A queue that does not answer is left out of the sum and its
// failure, naming the stream, is in err.
func (q *Queues) Depth(ctx context.Context, try time.Duration) (depth int64, err error) {
	var errs []error
	for _, st := range []jetstream.Stream{q.runs, q.tools} {
		qctx, cancel := context.WithTimeout(ctx, try)
		info, ierr := st.Info(qctx)
		cancel()
		if ierr != nil {
			errs = append(errs, fmt.Errorf("cannot read depth of %s: %w", st.CachedInfo().Config.Name, ierr))
			continue
		}
		depth += int64(info.State.Msgs)
	}
	return depth, errors.Join(errs...)
}
