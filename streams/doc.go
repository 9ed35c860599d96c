// Package streams is the fabric's JetStream topology as code, and the only
// package that speaks JetStream for it: stream, consumer and bucket
// configurations, subject builders, session-id validation, one idempotent
// [Ensure], the sequenced session log ([Log]) and everything that reads,
// follows or writes it, the buckets, the work queues and the tool-call
// [Router].
//
// Start with [Ensure] (once, by an edge) and [Open], which binds to the
// topology once and returns a [Fabric] holding every part below, with one
// Close. Every type here is safe for concurrent use unless its doc says
// otherwise ([Reader], [Follower] and [Backoff] belong to one goroutine).
//
// No other package spells a subject. Session ids become subject tokens, so
// [ValidateSessionID] admits only 1–128 characters of [A-Za-z0-9_-].
//
// # Layout
//
// Subjects:
//
//	haip.session.<session>.in            log of what users send (stream HAIP_SESSIONS)
//	haip.session.<session>.out           log of what users receive (stream HAIP_SESSIONS)
//	haip.live.<session>.<dir>            the same messages, republished for live followers
//	haip.runs.<shard>.<user>.<session>   agent run requests (work-queue stream HAIP_RUNS)
//	haip.tools.<tool>.<shard>.<user>     tool calls (work-queue stream HAIP_TOOLS)
//	haip.runcancel.<run>                 core NATS: cancel a running run ([RunCancelSubject])
//	haip.toolcancel.<session>.<call>     core NATS: cancel a running call ([CancelSubject])
//	haip.bind.<owner hash>               core NATS: a stream waiting for its HAI ([BindSubject])
//	haip.flow.<session>.<owner hash>     core NATS: POSTed flow control ([FlowSubject])
//
// The work queues are split into QueueShards shards by a hash of the user
// (UserShard), each with its own durable consumer, so that workers can
// take work from the shards in turn. Work queued before the shards
// (haip.runs.<session>, haip.tools.<tool>) is still taken through one
// more consumer per queue.
//
// Buckets: haip_sessions (session records: owner, created, [Sessions]),
// haip_tails (each log's highest seq, so that numbering survives
// retention emptying a log), haip_runs (run states, [Runs]), haip_tools
// (tools with a live worker, [Tools]) and haip_tool_cancels (calls
// cancelled before a worker took them).
//
// Types by concern: the log ([Log], [Entry], [Position], [Bounds],
// [Record], [Appended]; log.go, append.go, find.go, entry.go, tails.go),
// reading it ([Log.Scan] and [ScanOptions], [Reader]; scan.go, reader.go),
// following it ([Follower], [FollowOptions]; follow.go), writing HAIP
// output ([Log.Emit], [ErrStore]; emit.go), the work queues ([Queues],
// [ToolCall], [Router]; queues.go, tools.go, router.go), readiness
// ([Fabric.Ready]; health.go) and retrying ([Backoff], [IsTransient];
// retry.go).
//
// # Sequence numbers
//
// [Log.Append] gives each message the next dense seq of its session log in
// the Haip-Seq header, by compare-and-set on the session subject
// (Nats-Expected-Last-Subject-Sequence). Writers in one process are
// serialised per session; writers in different processes race, and the
// loser re-reads the end of the log and retries, so two writers never
// share or skip a number. A message id makes an append idempotent within
// the stream's duplicate window, also across an uncertain publish.
// [Log.Find] locates a seq with O(log n) direct gets; [Log.Read] reads a
// bounded batch with one batched direct get; [Log.Scan] is the one loop
// over a log from a seq, and a [Follower] the one way to follow it live.
//
// # Retries
//
// Every retry of a failure that may pass on its own (a stream leader
// election, a starting cluster, a NATS reconnection) follows one policy,
// [Backoff]: MinBackoff, doubling up to MaxBackoff, until the caller's
// context ends; each request of a retried operation is bounded on its own.
package streams
