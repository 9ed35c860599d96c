package mcpbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// Server is one MCP server a worker bridges (an entry of MCP_SERVERS).
type Server struct {
	// Name names the server in logs and in the worker's registry name
	// ([A-Za-z0-9_-]{1,64}).
	Name string `json:"name"`
	// Command is its command line, split like a shell would without
	// running one (SplitCommand).
	Command string `json:"command"`
	// Prefix goes in front of its tool names; nil means Name + "_".
	Prefix *string `json:"prefix,omitempty"`
	// Env is its environment specification (Environ); nil means the
	// worker's MCP_ENV.
	Env *string `json:"env,omitempty"`
}

var serverNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ParseServers reads MCP_SERVERS: a JSON array of Server objects, e.g.
//
//	[{"name":"fs","command":"npx -y @modelcontextprotocol/server-filesystem /data"},
//	 {"name":"git","command":"uvx mcp-server-git --repository '/srv/my repo'","prefix":"git_","env":"PATH,HOME"}]
//
// Empty means none. Every bad entry is reported, wrapping ErrBadCommand.
func ParseServers(s string) ([]Server, error) {
	if s == "" {
		return nil, nil
	}
	var servers []Server
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&servers); err != nil {
		return nil, fmt.Errorf("%w: MCP_SERVERS is not a JSON array of {name, command, prefix, env}: %w", ErrBadCommand, err)
	}
	var errs []error
	seen := map[string]bool{}
	for i, srv := range servers {
		switch {
		case !serverNamePattern.MatchString(srv.Name):
			errs = append(errs, fmt.Errorf("%w: server %d: name %q: want [A-Za-z0-9_-]{1,64}", ErrBadCommand, i, srv.Name))
		case seen[srv.Name]:
			errs = append(errs, fmt.Errorf("%w: server name %q given twice", ErrBadCommand, srv.Name))
		}
		seen[srv.Name] = true
		if words, err := SplitCommand(srv.Command); err != nil {
			errs = append(errs, fmt.Errorf("server %q: %w", srv.Name, err))
		} else if len(words) == 0 {
			errs = append(errs, fmt.Errorf("%w: server %q has no command", ErrBadCommand, srv.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return servers, nil
}

// ToolPrefix is the prefix of the server's tool names.
func (s Server) ToolPrefix() string {
	if s.Prefix != nil {
		return *s.Prefix
	}
	return s.Name + "_"
}

// SupervisorConfig configures a Supervisor.
type SupervisorConfig struct {
	// Worker configures the tool worker serving the server's tools; its
	// Name is what the registry records (and what Withdraw matches).
	Worker worker.ToolWorkerConfig
	// StableAfter is how long a server must have run for the restart
	// backoff to start again from its shortest wait. Zero means 10 s.
	StableAfter time.Duration
	// Logger receives the supervisor's logs; nil means silent.
	Logger *slog.Logger
}

// Supervisor runs one MCP server and serves its tools: it starts the
// server, serves its tools through a tool worker while the server lives,
// and when the server dies takes its tools out of the registry at once
// and starts it again, waiting longer after each quick failure
// (streams.Backoff), until its context ends.
type Supervisor struct {
	cmd    Command
	prefix string
	cfg    SupervisorConfig
	nc     *nats.Conn
	js     jetstream.JetStream
}

// NewSupervisor returns a supervisor of the MCP server cmd, whose tools
// are named with prefix.
func NewSupervisor(nc *nats.Conn, js jetstream.JetStream, cmd Command, prefix string, cfg SupervisorConfig) *Supervisor {
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{cmd: cmd, prefix: prefix, cfg: cfg, nc: nc, js: js}
}

// Run serves the server's tools until ctx ends, restarting the server
// whenever it dies. It returns nil when ctx ends.
func (s *Supervisor) Run(ctx context.Context) error {
	reg, err := streams.OpenTools(ctx, s.js)
	if err != nil {
		return fmt.Errorf("cannot supervise MCP server %s: %w", s.cmd.Path, err)
	}
	var b streams.Backoff
	for {
		began := time.Now()
		err := s.serve(ctx, reg)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) >= s.cfg.StableAfter {
			b.Reset()
		}
		wait := b.Next()
		s.cfg.Logger.Warn("MCP server stopped; starting it again", slog.String("command", s.cmd.Path), slog.Any("err", err), slog.Duration("in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// serve runs the server once: its tools are served until it dies or ctx
// ends, then withdrawn from the registry.
func (s *Supervisor) serve(ctx context.Context, reg *streams.Tools) error {
	sess, err := Connect(ctx, s.cmd)
	if err != nil {
		return err
	}
	ended := make(chan error, 1)
	go func() { ended <- sess.Wait() }()
	defer func() {
		_ = sess.Close()
		<-ended
	}()
	tools, err := Tools(ctx, sess, s.prefix)
	if err != nil {
		return err
	}
	if len(tools) == 0 {
		// Nothing to serve: wait for the server to end (or ctx).
		select {
		case err := <-ended:
			ended <- err
			return fmt.Errorf("MCP server ended: %w", errOrExit(err))
		case <-ctx.Done():
			return nil
		}
	}
	tw, err := worker.NewToolWorker(ctx, s.nc, s.js, tools, s.cfg.Worker)
	if err != nil {
		return err
	}
	s.cfg.Logger.Info("serving MCP tools", slog.String("command", s.cmd.Path), slog.Int("tools", len(tools)))
	twCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- tw.Run(twCtx) }()
	var why error
	select {
	case err := <-ended:
		ended <- err // for the deferred wait
		why = fmt.Errorf("MCP server ended: %w", errOrExit(err))
	case err := <-served:
		served <- err
		why = fmt.Errorf("tool worker stopped: %w", errOrExit(err))
	case <-ctx.Done():
	}
	stop()
	<-served
	// Out of the lists at once, not when the entries expire.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, t := range tools {
		if err := reg.Withdraw(wctx, t.Name, s.cfg.Worker.Name); err != nil {
			s.cfg.Logger.Warn("cannot withdraw MCP tool", slog.String("tool", t.Name), slog.Any("err", err))
		}
	}
	return why
}

func errOrExit(err error) error {
	if err == nil {
		return errors.New("exited")
	}
	return err
}
