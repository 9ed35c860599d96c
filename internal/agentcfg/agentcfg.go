// Package agentcfg is the environment configuration of the agent (the demo
// agent or the LLM agent) and the built-in tools, shared by cmd/edge
// (which runs them in-process) and cmd/toolworker (which runs replicas of
// them in other processes).
package agentcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/demo"
	"github.com/haipfabric/haipfabric/worker/llm"
)

// Agent kinds (AGENT).
const (
	KindDemo = "demo"
	KindLLM  = "llm"
)

// Config is read with caarlos0/env.
type Config struct {
	// Enabled runs an agent replica (of Kind) in this process.
	Enabled bool `env:"DEMO_AGENT" envDefault:"true"`
	// Kind is the agent: KindDemo (no model: it streams a fixed answer)
	// or KindLLM (a model, configured by LLM).
	Kind string `env:"AGENT" envDefault:"demo"`
	// Name is the durable consumer every replica of the agent shares;
	// empty means the kind. All replicas on one fabric must run the same
	// kind under one name.
	Name string `env:"AGENT_NAME"`
	// LLM configures the LLM agent (AGENT=llm).
	LLM LLM
	// ToolAccess says which tools the run's user may call (TOOL_ACCESS,
	// auth.ToolAccess): the LLM agent offers its model only those. The
	// edge reads the same setting.
	ToolAccess string `env:"TOOL_ACCESS"`
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

// LLM is the LLM agent's configuration (worker/llm.Config).
type LLM struct {
	// Provider is "openai" (OpenAI and any OpenAI-compatible server:
	// Ollama, vLLM, llama.cpp server, LM Studio) or "anthropic".
	Provider string `env:"LLM_PROVIDER" envDefault:"openai"`
	// BaseURL is the API's base URL; empty means the provider's own
	// (for Ollama: http://localhost:11434/v1).
	BaseURL string `env:"LLM_BASE_URL"`
	// APIKey is the provider's key; it is never logged or shown to users.
	// Local servers need none.
	APIKey string `env:"LLM_API_KEY"`
	// Model is the default model; a session's modelConfig.id wins.
	Model string `env:"LLM_MODEL"`
	// SystemPrompt is the default system prompt; a session's
	// agentSettings.systemPrompt wins.
	SystemPrompt string `env:"LLM_SYSTEM_PROMPT" envDefault:"You are a helpful assistant."`
	// Temperature, 0 to 2; empty leaves the provider's default.
	Temperature string `env:"LLM_TEMPERATURE"`
	// MaxTokens bounds one answer; 0 leaves the provider's default
	// (Anthropic's API needs one: 4096 then).
	MaxTokens int `env:"LLM_MAX_TOKENS" envDefault:"0"`
	// ContextBudget bounds the conversation sent with each call, in
	// estimated tokens; the oldest turns are left out first.
	ContextBudget int `env:"LLM_CONTEXT_BUDGET" envDefault:"16000"`
	// StallTimeout ends a run whose model sends nothing for so long.
	StallTimeout time.Duration `env:"LLM_STALL_TIMEOUT" envDefault:"60s"`
	// RetryBudget bounds the time spent retrying a model call that failed
	// with 408, 409, 429, 5xx or a network error.
	RetryBudget time.Duration `env:"LLM_RETRY_BUDGET" envDefault:"60s"`
	// FlushWindow and FlushBytes coalesce streamed text into
	// TEXT_MESSAGE_PARTs: stored when FlushBytes wait or the oldest waiting
	// text is FlushWindow old (a negative window stores every delta).
	FlushWindow time.Duration `env:"LLM_FLUSH_WINDOW" envDefault:"25ms"`
	FlushBytes  int           `env:"LLM_FLUSH_BYTES" envDefault:"512"`
	// MaxRounds bounds the model calls of one run (tool rounds).
	MaxRounds int `env:"LLM_MAX_ROUNDS" envDefault:"8"`
}

// Validate reports every bad field of the agent configuration at once.
func (c Config) Validate() error {
	var errs []error
	switch c.Kind {
	case KindDemo:
	case KindLLM:
		if _, err := c.llmConfig(nil); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("AGENT %q: want %s or %s", c.Kind, KindDemo, KindLLM))
	}
	if _, err := auth.ParseToolAccess(c.ToolAccess); err != nil {
		errs = append(errs, fmt.Errorf("TOOL_ACCESS: %w", err))
	}
	return errors.Join(errs...)
}

// llmConfig is the worker/llm configuration of these settings.
func (c Config) llmConfig(logger *slog.Logger) (llm.Config, error) {
	l := c.LLM
	cfg := llm.Config{Provider: l.Provider, BaseURL: l.BaseURL, APIKey: l.APIKey, Model: l.Model, SystemPrompt: l.SystemPrompt,
		MaxTokens: l.MaxTokens, ContextBudget: l.ContextBudget, StallTimeout: l.StallTimeout, RetryBudget: l.RetryBudget,
		FlushWindow: l.FlushWindow, FlushBytes: l.FlushBytes, MaxRounds: l.MaxRounds, Author: c.Author, Logger: logger}
	if c.Author == "demo-agent" {
		cfg.Author = "" // the LLM agent's own default
	}
	var errs []error
	if l.Temperature != "" {
		t, err := strconv.ParseFloat(l.Temperature, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("LLM_TEMPERATURE %q: not a number", l.Temperature))
		}
		cfg.Temperature = &t
	}
	access, err := auth.ParseToolAccess(c.ToolAccess)
	if err != nil {
		errs = append(errs, fmt.Errorf("TOOL_ACCESS: %w", err))
	}
	cfg.ToolAccess = access
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

// Handler is the demo run handler this configuration describes.
func (c Config) Handler() *demo.Agent { return &demo.Agent{Delay: c.Delay, Author: c.Author} }

// NewHandler returns the run handler of c.Kind and what releases it.
func (c Config) NewHandler(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, logger *slog.Logger) (worker.RunHandler, func(), error) {
	if c.Kind != KindLLM {
		return c.Handler(), func() {}, nil
	}
	cfg, err := c.llmConfig(logger)
	if err != nil {
		return nil, nil, fmt.Errorf("bad configuration: %w", err)
	}
	a, err := llm.New(ctx, nc, js, cfg)
	if err != nil {
		return nil, nil, err
	}
	logger.Info("LLM agent", slog.String("provider", cfg.Provider), slog.String("model", cfg.Model), slog.String("base_url", cfg.BaseURL))
	return a, func() { _ = a.Close(context.Background()) }, nil
}

// AgentName is the durable consumer of the agent's replicas.
func (c Config) AgentName() string {
	if c.Name != "" {
		return c.Name
	}
	if c.Kind == "" {
		return KindDemo
	}
	return c.Kind
}

// AgentConfig is the worker configuration of the agent's replicas: they
// all share the durable consumers of AgentName. shutdown is the process's
// shutdown budget, within which a stopping replica finishes or hands back
// its runs (see DrainWithin).
func (c Config) AgentConfig(logger *slog.Logger, shutdown time.Duration) worker.AgentConfig {
	return worker.AgentConfig{Name: c.AgentName(), Concurrency: c.Concurrency, ShardConcurrency: c.ShardConcurrency, AckWait: c.AckWait,
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
