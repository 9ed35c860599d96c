// Package worker is the SDK for processes that do work taken from the
// fabric's JetStream work queues.
//
// An [Agent] takes agent runs (one user turn each) from the run queue,
// exactly one replica per run, and hands each to a [RunHandler], which
// streams its answer into the session log with [Run.Emit]. Start as many
// replicas as you like, in as many processes: they share one durable
// consumer. A replica that dies has its runs redelivered after AckWait; a
// redelivered run that emits the same messages again is stored once,
// because emitted envelope ids derive from the run id and step.
//
// Package demo holds the demo agent that cmd/edge runs in-process.
package worker
