package edge

import "context"

// ready reports whether the edge can serve sessions now (see
// streams.Fabric.Ready).
func (s *Server) ready(ctx context.Context) error {
	return s.fabric.Ready(ctx)
}
