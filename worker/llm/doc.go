// Package llm is the fabric's LLM agent: a worker.RunHandler that answers
// each run with a model through the official OpenAI (Chat Completions,
// also any OpenAI-compatible server such as Ollama, vLLM, llama.cpp or LM
// Studio) or Anthropic (Messages) Go SDK, streaming.
//
// Start with New and Config. For each run the agent reads the session's
// settings (streams.MetaModelConfig, streams.MetaAgentSettings) and its
// conversation from the session log (both directions, within the context
// budget), offers the model the live tools the run's user may call
// (auth.ToolAccess), stores the streamed answer as TEXT_MESSAGE_PARTs
// coalesced by time and size, and turns the model's tool calls into fabric
// TOOL_CALLs, run concurrently, whose results go back to the model. A run
// taken over by another replica after a crash continues the answer where
// the log says it stopped. Failures worth retrying (429, 5xx, the network)
// are retried within a budget; others end the run with RUN_ERROR.
//
// An Agent is safe for concurrent use: the worker runs many runs at once.
// Each run's provider stream is read on a goroutine owned by that run and
// stopped before the run's handler returns.
package llm
