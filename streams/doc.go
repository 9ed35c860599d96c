// Package streams is the fabric's JetStream topology as code: stream and
// bucket configurations, subject builders, session-id validation, one
// idempotent [Ensure], and the sequenced session log ([Log]).
//
// No other package spells a subject. Session ids become subject tokens, so
// [ValidateSessionID] admits only 1–128 characters of [A-Za-z0-9_-].
//
// Subjects:
//
//	haip.session.<session>.in    log of what users send (stream HAIP_SESSIONS)
//	haip.session.<session>.out   log of what users receive (stream HAIP_SESSIONS)
//	haip.live.<session>.<dir>    the same messages, republished for live followers
//	haip.runs.<shard>.<session>  agent run requests (work-queue stream HAIP_RUNS)
//	haip.tools.<tool>.<shard>    tool calls (work-queue stream HAIP_TOOLS)
//
// The work queues are split into QueueShards shards by a hash of the user
// (UserShard), each with its own durable consumer, so that workers can
// take work from the shards in turn. Work queued before the shards
// (haip.runs.<session>, haip.tools.<tool>) is still taken through one
// more consumer per queue.
//
// Buckets: haip_sessions (session records: owner, created) and haip_tails
// (each log's highest seq, so that numbering survives retention emptying
// a log).
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
// bounded batch with one batched direct get.
package streams
