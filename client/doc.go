// Package client is a Go HAIP 1.1.2 client for the edge, over each of its
// transports behind one type: the handshake, numbering, resume
// bookkeeping, flow-control credit and a decoded read loop. The chat CLI
// (cmd/haipchat), the load tool (cmd/haipbench) and the tests use it; it
// is also a reference for writing clients in other languages.
//
// Start with [Dial]; [Options.Transport] picks the transport:
//
//	websocket    GET /haip/websocket; both ways on the socket, audio as binary frames
//	sse          GET /haip/sse?session=… (Server-Sent Events) for what the edge sends,
//	             POST /haip/messages for what the client sends
//	stream       POST /haip/stream, NDJSON both ways on one request (full duplex)
//	stream-half  POST /haip/stream?session=… with only the HAI as body, NDJSON from the
//	             edge; POST /haip/messages for what the client sends (half duplex)
//
// Whatever the transport, [Conn.Read] returns every envelope the edge
// sends, in order: the session log (dense seqs) and the connection's
// control messages ([IsControl]: they repeat the last log seq). On the
// transports that send by POST, what the edge answers to a POST comes
// through Read too: an ERROR for a refused envelope (built by the client
// from the POST's result, stamped with the last log seq), the PONG of a
// PING, the answer to TOOL_LIST or TOOL_SCHEMA, the messages of a
// REPLAY_REQUEST. [Conn.LastSeq] is the last log seq received, where a
// resume continues ([Options.LastRxSeq]). The client de-duplicates
// nothing unless [Options.Dedupe] asks it to.
//
// When a connection ends, Read's error tells why: [CloseStatus] returns
// the edge's close code and reason from the WebSocket close frame, from
// the SSE comment ": close <code> <reason>" that ends a stream, or, on an
// NDJSON stream (which has neither), from the ERROR it ended with, when
// that ERROR names a close (an expired token: 4002). A drain (1001) or a
// slow-consumer cut (4000) of an NDJSON stream is not said on the wire:
// CloseStatus reports -1 there. A connection cut while its socket buffers
// were full may also end without its close frame or comment.
//
// # Concurrency
//
// A Conn is safe for one reader and any number of senders at once:
//
//   - Read and ReadMessage are called from one goroutine at a time. They
//     may send (PONG, FLOW_UPDATE), and then wait for the send lock.
//   - Send, SendEnvelope, SendText, SendBinary and SendRaw may be called
//     from any goroutines; each numbers and writes its envelopes under one
//     lock, so seqs go out in order. On SSE and the half-duplex stream a
//     send is a POST and holds the lock until the edge answers.
//   - Close and CloseNow may be called from any goroutine, at any time,
//     more than once; a Read or send in progress then fails.
//   - Session, Transport and LastSeq may be called at any time; Hello is
//     set by Dial and only read after.
//
// If the context of a Read ends while it waits, the connection is closed
// (as package websocket does): a half-read frame cannot be resumed. A
// send's context bounds that send; on WebSocket and the full-duplex stream
// a send cut short by it closes the connection too (half a frame may have
// gone), while a POST cut short leaves the stream as it is.
//
// # Who closes what
//
// Dial's context bounds the dial and the handshake only: the connection
// lives until Close, CloseNow, the edge or the network ends it. The
// caller closes every Conn it dialled. On SSE and the half-duplex stream
// a Conn runs one goroutine, reading the stream; Close and CloseNow stop
// it and wait for it. The connections of Options.HTTPClient are the
// caller's: a Conn ends its own request, never the client's idle pool.
package client
