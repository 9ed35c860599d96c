package edge

import (
	"context"
	"fmt"
	"sort"
)

// ready reports whether the edge can serve sessions now (see
// streams.Fabric.Ready).
func (s *Server) ready(ctx context.Context) error {
	return s.fabric.Ready(ctx)
}

// AddCheck adds a part of the process whose failure /health reports (503
// naming it): check returns nil while the part works. cmd/edge adds the
// in-process agent and tools (worker.Agent.Healthy,
// worker.ToolWorker.Healthy). Safe for concurrent use.
func (s *Server) AddCheck(name string, check func() error) {
	s.checksMu.Lock()
	defer s.checksMu.Unlock()
	if s.checks == nil {
		s.checks = make(map[string]func() error)
	}
	s.checks[name] = check
}

// failedCheck is the first failing check, by name, or nil.
func (s *Server) failedCheck() error {
	s.checksMu.Lock()
	names := make([]string, 0, len(s.checks))
	for name := range s.checks {
		names = append(names, name)
	}
	s.checksMu.Unlock()
	sort.Strings(names)
	for _, name := range names {
		s.checksMu.Lock()
		check := s.checks[name]
		s.checksMu.Unlock()
		if err := check(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}
