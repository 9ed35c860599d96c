package edge

import (
	"context"
	"fmt"

	"github.com/haipfabric/haipfabric/streams"
)

// readyStreams are the streams an edge cannot serve sessions without: the
// session logs, the session records and log tails, and the run queue and
// run states.
var readyStreams = [...]string{
	streams.SessionStream,
	"KV_" + streams.SessionBucket,
	"KV_" + streams.TailBucket,
	streams.RunStream,
	"KV_" + streams.RunBucket,
}

// ready reports whether the edge can serve sessions now: JetStream
// answers, and each stream it needs has a leader. After a cluster restart
// the meta leader (and so AccountInfo) comes back seconds before each
// stream has elected its own; until then opening a session would fail.
func (s *Server) ready(ctx context.Context) error {
	if _, err := s.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream unreachable: %w", err)
	}
	for _, name := range readyStreams {
		st, err := s.js.Stream(ctx, name)
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
