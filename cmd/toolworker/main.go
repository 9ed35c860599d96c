// Command toolworker runs worker processes of the fabric against an
// existing NATS (NATS_URL): the built-in tools (echo, add, sleep), the
// tools of stdio MCP servers (MCP_COMMAND, MCP_SERVERS; each started with
// only the environment MCP_ENV names, and started again when it dies),
// whose
// calls come from one JetStream work queue per tool, and replicas of the
// agent (the demo agent, or with AGENT=llm the LLM agent), which take agent
// runs from the run queue. Each call and each
// run is handled exactly once. Start it as many times as you like, on as
// many machines.
//
// It never creates or changes the JetStream topology (an edge does that):
// it waits for it to exist.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/agentcfg"
	"github.com/haipfabric/haipfabric/internal/logging"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/builtin"
	"github.com/haipfabric/haipfabric/worker/mcpbridge"
)

type config struct {
	NATSURL   string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"text"`
	// TopologyWait is how long to wait for an edge to create the streams.
	TopologyWait time.Duration `env:"TOPOLOGY_WAIT" envDefault:"60s"`
	Agent        agentcfg.Config
	Tools        agentcfg.Tools
	// ShutdownTimeout bounds a stopping process: its running runs and
	// calls finish or are handed back to the queue within it.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// Name identifies this process in the tool registry.
	Name string `env:"WORKER_NAME" envDefault:"toolworker"`
	// MCPCommand starts a stdio MCP server whose tools this process
	// serves too (split like a shell would, quotes and backslashes
	// honoured, without running one); MCPToolPrefix goes in front of their
	// names. It is the server named "mcp" of MCPServers.
	MCPCommand    string `env:"MCP_COMMAND"`
	MCPToolPrefix string `env:"MCP_TOOL_PREFIX"`
	// MCPServers lists more MCP servers (mcpbridge.ParseServers): a JSON
	// array of {"name", "command", "prefix", "env"}.
	MCPServers string `env:"MCP_SERVERS"`
	MCPEnv     string `env:"MCP_ENV" envDefault:"PATH,HOME"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		slog.Error("toolworker stopped", slog.Any("err", err))
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var cfg config
	if err := env.Parse(&cfg); err != nil {
		return fmt.Errorf("bad configuration: %w", err)
	}
	logger, err := logging.New(cfg.LogLevel, cfg.LogFormat, os.Stderr)
	if err != nil {
		return fmt.Errorf("bad configuration: %w", err)
	}
	servers, err := mcpbridge.ParseServers(cfg.MCPServers)
	if err != nil {
		return fmt.Errorf("bad configuration: MCP_SERVERS: %w", err)
	}
	if cfg.MCPCommand != "" {
		prefix := cfg.MCPToolPrefix
		servers = append([]mcpbridge.Server{{Name: "mcp", Command: cfg.MCPCommand, Prefix: &prefix}}, servers...)
	}
	if !cfg.Agent.Enabled && !cfg.Tools.Enabled && len(servers) == 0 {
		return errors.New("nothing to run: DEMO_AGENT=false, BUILTIN_TOOLS=false and no MCP_COMMAND or MCP_SERVERS")
	}
	if cfg.Agent.Enabled {
		if err := cfg.Agent.Validate(); err != nil {
			return fmt.Errorf("bad configuration: %w", err)
		}
	}
	type mcpServer struct {
		srv mcpbridge.Server
		cmd mcpbridge.Command
	}
	var mcps []mcpServer
	for _, srv := range servers {
		spec, setting := cfg.MCPEnv, "MCP_ENV"
		if srv.Env != nil {
			spec, setting = *srv.Env, "MCP_SERVERS env"
		}
		env, err := mcpbridge.Environ(spec, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("bad configuration: %s (MCP server %s): %w", setting, srv.Name, err)
		}
		words, err := mcpbridge.SplitCommand(srv.Command)
		if err != nil || len(words) == 0 {
			return fmt.Errorf("bad configuration: command of MCP server %s: %w", srv.Name, errors.Join(err, mcpbridge.ErrBadCommand))
		}
		mcps = append(mcps, mcpServer{srv: srv, cmd: mcpbridge.Command{Path: words[0], Args: words[1:], Env: env}})
	}
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("haip-toolworker"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { logger.Warn("nats disconnected", slog.Any("err", err)) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", slog.String("url", nc.ConnectedUrl())) }))
	if err != nil {
		return fmt.Errorf("cannot connect to %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	wctx, cancelWait := context.WithTimeout(ctx, cfg.TopologyWait)
	waited := false
	err = streams.WaitEnsured(wctx, js, func(err error) {
		level := slog.LevelInfo
		if waited {
			level = slog.LevelDebug // said once
		}
		waited = true
		logger.Log(ctx, level, "waiting for the edge to create the streams", slog.Any("err", err))
	})
	cancelWait()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("streams not found after %s: start an edge first: %w", cfg.TopologyWait, err)
	}
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var runners []func(context.Context) error
	if cfg.Agent.Enabled {
		agentLog := logger.With(slog.String("component", cfg.Agent.AgentName()+"-agent"))
		handler, release, err := cfg.Agent.NewHandler(setup, nc, js, agentLog)
		if err != nil {
			return err
		}
		defer release()
		agent, err := worker.NewAgent(setup, nc, js, handler, cfg.Agent.AgentConfig(agentLog, cfg.ShutdownTimeout))
		if err != nil {
			return err
		}
		runners = append(runners, agent.Run)
	}
	var tools []worker.Tool
	if cfg.Tools.Enabled {
		tools = append(tools, builtin.Tools()...)
	}
	for _, m := range mcps {
		// Each server has a supervisor of its own: its tools are served
		// while it lives, leave the registry when it dies, and come back
		// when it has been started again.
		passed := make([]string, len(m.cmd.Env))
		for i, kv := range m.cmd.Env {
			passed[i], _, _ = strings.Cut(kv, "=")
		}
		mlog := logger.With(slog.String("component", "mcp"), slog.String("server", m.srv.Name))
		mlog.Info("bridging MCP server", slog.String("command", m.cmd.Path), slog.Any("env", passed))
		wcfg := cfg.Tools.WorkerConfig(cfg.Name+"-"+m.srv.Name, mlog, cfg.ShutdownTimeout)
		runners = append(runners, mcpbridge.NewSupervisor(nc, js, m.cmd, m.srv.ToolPrefix(), mcpbridge.SupervisorConfig{Worker: wcfg, Logger: mlog}).Run)
	}
	if len(tools) > 0 {
		tw, err := worker.NewToolWorker(setup, nc, js, tools, cfg.Tools.WorkerConfig(cfg.Name, logger.With(slog.String("component", "tools")), cfg.ShutdownTimeout))
		if err != nil {
			return err
		}
		runners = append(runners, tw.Run)
	}
	logger.Info("toolworker ready", slog.String("nats", nc.ConnectedUrl()), slog.Bool("agent", cfg.Agent.Enabled), slog.String("agent_kind", cfg.Agent.Kind), slog.Bool("builtin_tools", cfg.Tools.Enabled))
	errs := make(chan error, len(runners))
	for _, r := range runners {
		go func() { errs <- r(ctx) }()
	}
	// Once stopping, the runners finish or hand back their work within
	// SHUTDOWN_TIMEOUT (agentcfg.DrainWithin); the process does not wait
	// longer than that for one whose handler ignores its cancellation.
	stopping, deadline := ctx.Done(), (<-chan time.Time)(nil)
	for pending := len(runners); pending > 0; {
		select {
		case rerr := <-errs:
			pending--
			if rerr != nil && err == nil {
				err = rerr
			}
		case <-stopping:
			stopping = nil
			t := time.NewTimer(cfg.ShutdownTimeout)
			defer t.Stop()
			deadline = t.C
		case <-deadline:
			logger.Warn("workers outlasted SHUTDOWN_TIMEOUT; stopping without them", slog.Duration("timeout", cfg.ShutdownTimeout))
			pending = 0
		}
	}
	if derr := nc.Drain(); derr != nil && err == nil {
		err = derr
	}
	logger.Info("stopped")
	return err
}
