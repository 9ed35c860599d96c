// Package agentcfg is the environment configuration of the demo agent and
// the built-in tools, shared by cmd/edge (which runs them in-process) and
// cmd/toolworker (which runs replicas of them in other processes).
package agentcfg

import (
	"log/slog"
	"time"

	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// Config is read with caarlos0/env.
type Config struct {
	// Enabled runs a demo agent replica in this process.
	Enabled bool `env:"DEMO_AGENT" envDefault:"true"`
	// Delay is the pause between streamed words.
	Delay time.Duration `env:"DEMO_AGENT_DELAY" envDefault:"50ms"`
	// Author names the replica in its answers (TEXT_MESSAGE_START author).
	Author string `env:"DEMO_AGENT_AUTHOR" envDefault:"demo-agent"`
	// Concurrency is how many runs this replica handles at once.
	Concurrency int `env:"AGENT_CONCURRENCY" envDefault:"4"`
	// ShardConcurrency is how many of them may come from one shard of
	// users; zero means AGENT_CONCURRENCY less a quarter of it
	// (worker.AgentConfig.ShardConcurrency).
	ShardConcurrency int `env:"AGENT_SHARD_CONCURRENCY" envDefault:"0"`
	// AckWait is how long a run may go unconfirmed before another replica
	// takes it over (a dead replica's runs move after this).
	AckWait time.Duration `env:"AGENT_ACK_WAIT" envDefault:"30s"`
}

// Handler is the demo run handler this configuration describes.
func (c Config) Handler() *demo.Agent { return &demo.Agent{Delay: c.Delay, Author: c.Author} }

// AgentConfig is the worker configuration of the demo agent's replicas:
// they all share the durable consumers of "demo". shutdown is the
// process's shutdown budget, within which a stopping replica finishes or
// hands back its runs (see DrainWithin).
func (c Config) AgentConfig(logger *slog.Logger, shutdown time.Duration) worker.AgentConfig {
	return worker.AgentConfig{Name: "demo", Concurrency: c.Concurrency, ShardConcurrency: c.ShardConcurrency, AckWait: c.AckWait,
		DrainWait: DrainWithin(shutdown), Logger: logger}
}

// maxHandBack is the most of a shutdown budget kept for handing work back.
const maxHandBack = 2 * time.Second

// DrainWithin is how long a stopping worker waits for its running runs
// and calls when the whole process must stop within shutdown: all of it
// but the part kept for handing back what is still running (cancelling
// the handlers, Nak, a last flush): a quarter of the budget, at most
// maxHandBack.
func DrainWithin(shutdown time.Duration) time.Duration {
	return max(shutdown-min(shutdown/4, maxHandBack), time.Millisecond)
}

// Tools configures the built-in tools (echo, add, sleep) of a process.
type Tools struct {
	// Enabled serves the built-in tools in this process.
	Enabled bool `env:"BUILTIN_TOOLS" envDefault:"true"`
	// Concurrency is how many calls of each tool this process runs at once.
	Concurrency int `env:"TOOL_CONCURRENCY" envDefault:"8"`
	// ShardConcurrency is how many of them may come from one shard of
	// users; zero means TOOL_CONCURRENCY less a quarter of it
	// (worker.ToolWorkerConfig.ShardConcurrency).
	ShardConcurrency int `env:"TOOL_SHARD_CONCURRENCY" envDefault:"0"`
	// AckWait is how long a call may go unconfirmed before another worker
	// takes it over.
	AckWait time.Duration `env:"TOOL_ACK_WAIT" envDefault:"30s"`
}

// WorkerConfig is the tool-worker configuration these settings describe.
// shutdown is the process's shutdown budget, within which a stopping
// worker finishes or hands back its calls (see DrainWithin).
func (t Tools) WorkerConfig(name string, logger *slog.Logger, shutdown time.Duration) worker.ToolWorkerConfig {
	return worker.ToolWorkerConfig{Name: name, Concurrency: t.Concurrency, ShardConcurrency: t.ShardConcurrency, AckWait: t.AckWait,
		DrainWait: DrainWithin(shutdown), Logger: logger}
}
