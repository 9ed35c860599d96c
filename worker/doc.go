// Package worker is the SDK for processes that do work taken from the
// fabric's JetStream work queues.
//
// An [Agent] takes agent runs (one user turn each) from the run queue,
// exactly one replica per run, and hands each to a [RunHandler], which
// streams its answer into the session log with [Run.Emit]. Start as many
// replicas as you like, in as many processes: they share the same durable
// consumers. A replica that dies has its runs redelivered after AckWait; a
// redelivered run that emits the same messages again is stored once,
// because emitted envelope ids derive from the run id and step.
//
// The run queue and each tool's calls are split into shards by a hash of
// the user who asked (streams.UserShard). A worker takes from the shards
// in turn, one message at a time per shard, and one shard never holds
// more than ShardConcurrency of its handler slots, so one user's flood
// delays other users' work by a bounded amount. A stopping worker hands
// back at once what it has taken but not started, and what it could not
// finish within DrainWait.
//
// The worker speaks no JetStream of its own: it binds with streams.Open,
// takes work through the durable consumers streams.RunConsumerConfigs and
// streams.ToolConsumerConfigs describe (work-queue streams HAIP_RUNS and
// HAIP_TOOLS), writes output with streams.Log.Emit, routes an agent's tool
// calls with streams.Router, follows a session with streams.Follower,
// listens for cancellations on streams.RunCancelWildcard and
// streams.CancelWildcard, advertises tools in the haip_tools bucket
// (streams.Tools) and retries by streams.Backoff. Its own types: [Agent],
// [AgentConfig], [RunHandler], [RunHandlerFunc], [Run], [ErrRunCancelled], [ToolWorker],
// [ToolWorkerConfig], [Tool], [ToolHandler], [ToolHandlerFunc], [Call].
//
// Package demo holds the demo agent that cmd/edge runs in-process.
package worker
