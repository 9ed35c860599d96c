// Command toolworker runs worker processes of the fabric against an
// existing NATS (NATS_URL): the built-in tools (echo, add, sleep), the
// tools of a stdio MCP server (MCP_COMMAND, started with only the
// environment MCP_ENV names), whose
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
	// serves too (words split on spaces); MCPToolPrefix goes in front of
	// their names.
	MCPCommand    string `env:"MCP_COMMAND"`
	MCPToolPrefix string `env:"MCP_TOOL_PREFIX"`
	// MCPEnv is the MCP server's whole environment (mcpbridge.Environ):
	// comma-separated NAME (passed from this process) or NAME=value
	// entries; "-" means none; the default is mcpbridge.DefaultEnv.
	// Nothing else of this process's environment reaches the server.
	MCPEnv string `env:"MCP_ENV" envDefault:"PATH,HOME"`
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
	if !cfg.Agent.Enabled && !cfg.Tools.Enabled && cfg.MCPCommand == "" {
		return errors.New("nothing to run: DEMO_AGENT=false, BUILTIN_TOOLS=false and no MCP_COMMAND")
	}
	if cfg.Agent.Enabled {
		if err := cfg.Agent.Validate(); err != nil {
			return fmt.Errorf("bad configuration: %w", err)
		}
	}
	mcpEnv, err := mcpbridge.Environ(cfg.MCPEnv, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("bad configuration: MCP_ENV: %w", err)
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
	if words := strings.Fields(cfg.MCPCommand); len(words) > 0 {
		cs, err := mcpbridge.Connect(setup, mcpbridge.Command{Path: words[0], Args: words[1:], Env: mcpEnv})
		if err != nil {
			return err
		}
		defer cs.Close()
		bridged, err := mcpbridge.Tools(setup, cs, cfg.MCPToolPrefix)
		if err != nil {
			return err
		}
		passed := make([]string, len(mcpEnv))
		for i, kv := range mcpEnv {
			passed[i], _, _ = strings.Cut(kv, "=")
		}
		logger.Info("bridging MCP tools", slog.String("command", words[0]), slog.Int("tools", len(bridged)), slog.Any("env", passed))
		tools = append(tools, bridged...)
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
