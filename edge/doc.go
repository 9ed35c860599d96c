// Package edge serves HAIP 1.1.2 to clients over WebSocket, Server-Sent
// Events and HTTP streaming (NDJSON), with POST for the client→server half
// of one-way transports, on top of NATS JetStream. Every transport is a
// small adapter (ws.go, sse.go, stream.go) of one interface
// (transport.go) over one connection core:
//
//	conn.go        a connection's life: start, run, drain, abort, finish
//	reader.go      reading frames, the per-connection checks (credit, binary pairing)
//	handshake.go   HAI: version, session, resume point, the server's HAI
//	dispatch.go    one dispatcher for connections and POSTs: a route per envelope type
//	inbound.go     storing what clients send, and the runs and tool calls it starts
//	writer.go      the writer: delivery, control replies, heartbeats, every write
//	delivery.go    the delivery state machine (handshaking, catching up, live, blocked)
//	replay.go      REPLAY_REQUEST, paced like delivery
//	flow.go        credit, both directions
//	disconnect.go  why a connection ends (close code, reason, metric label)
//	http.go, messages.go, runs.go, limits.go  admission, POSTs, the runs endpoints, per-user limits
//
// Start with [NewServer] and [Server.Handler]; stop with [Server.Shutdown].
// An edge keeps no state that matters: session logs, session records and
// run queues live in JetStream (package streams), so any number of edges
// serve the same sessions and a client may resume on any of them.
//
// # Connections
//
// Authentication and authorisation happen before any upgrade: a bad
// token is 401, a malformed ?session= is 400, a session of another user is
// 403, a full edge is 503, each with a JSON body {error, code, message,
// details}. Before those, a browser page on an origin the edge does not
// serve (its own, or one listed in Config.CORSOrigins) is 403
// ORIGIN_NOT_ALLOWED, and a POST whose body is not JSON or NDJSON is 415. After the upgrade the client's first envelope must be HAI; it
// names the session (the official SDK picks its own id), which is created
// for the caller or must be the caller's (agents and admins may open any).
//
// Each connection has two goroutines. The reader decodes and validates
// envelopes, answers control messages, and stores what the client sends in
// the session log before reading on (so a stored message is never lost).
// The writer owns every write: control replies in order, and delivery of
// the session log — catch-up by bounded batched reads from JetStream from
// the resume point, then live messages from a per-edge subscription to the
// session's republished subject, back to catch-up on any gap. Queues are
// bounded; a client that cannot take a write within WriteTimeout is cut
// and resumes later from its last seq.
//
// # Sequence numbers
//
// Every message in a session log carries a dense per-session seq (1, 2,
// 3, …) assigned when it is stored, identical on every edge. Control
// messages the edge sends for one connection (HAI, PING, PONG, ERROR,
// FLOW_UPDATE) are not in the log: they repeat the seq of the last log
// message delivered on that connection and carry the cumulative ack of the
// client's seqs.
//
// # Flow control, runs, audio
//
// Delivery is paced by the credit the client grants (HAI flow_control,
// FLOW_UPDATE, PAUSE_CHANNEL/RESUME_CHANNEL; flow.go): a connection
// without credit reads nothing from JetStream. The edge grants clients
// credit sized by back-pressure and refuses messages beyond it
// (FLOW_CONTROL_VIOLATION). Runs are admitted against the session's limit
// and cancelled through the run state in JetStream (runs.go). Audio
// chunks arrive as a WebSocket binary frame after their envelope or as
// base64, are stored as envelope plus bytes, and leave in the form each
// client takes.
//
// # Close codes
//
//	code  meaning                                  client should
//	1000  normal close                             -
//	1001  edge shutting down; reason names the     reconnect (any edge) with last_rx_seq
//	      seq to resume from
//	1003  binary frame with no envelope announcing fix the client
//	      its bin_len before it
//	1008  policy: no HAI in time, version          not retry as is
//	      incompatible, foreign or mismatched
//	      session
//	1009  frame larger than MAX_MESSAGE_BYTES      send smaller frames
//	1011  internal error                           reconnect and resume
//	1013  JetStream unavailable                    back off, then resume
//	4000  slow consumer (write blocked for         reconnect and resume from its last seq
//	      WRITE_TIMEOUT)
//	4001  heartbeat timeout (silent for            reconnect and resume
//	      HEARTBEAT_INTERVAL+HEARTBEAT_TIMEOUT)
//	4002  the token expired (exp plus the          reconnect with a fresh token
//	      verifier's leeway)                       and resume
//	4003  the session was deleted                  do not reconnect to it
//
// A client cut while its socket buffers are full may see the connection
// end without the close frame; its resume works the same.
//
// SSE and HTTP streams have no close frame: an SSE stream ends with a
// comment ": close <code> <reason>" (the same codes), an NDJSON stream
// after the ERROR that explains it (SERVER_SHUTDOWN with the seq to resume
// from for a drain, AUTHENTICATION_FAILED for an expired token), if the
// stream can still take one. A browser EventSource then reconnects by
// itself with Last-Event-ID.
package edge
