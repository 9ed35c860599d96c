// Package sse writes and reads Server-Sent Events: the text/event-stream
// format of the HTML Living Standard (section "Server-sent events").
//
// The edge frames each HAIP envelope as one event whose id is the
// envelope's sequence number. Start with [AppendEvent] (plus
// [AppendComment] for keep-alives and [AppendRetry] for the reconnection
// delay) on the write side, and [ParseLastEventID] for the header a
// reconnecting browser sends. The Append functions never allocate when dst
// has room, so a writer can reuse one buffer per connection.
//
// [Reader] parses a stream the way a browser's EventSource does; Go
// clients and tests use it. Data written by AppendEvent comes back
// byte for byte, except that its line breaks (\r\n, \r or \n) all come
// back as \n: the format has no way to carry which one it was.
//
// # Concurrency
//
// The Append functions and ParseLastEventID are pure and safe to call from
// any goroutine. A Reader is not safe for concurrent use; one goroutine
// calls Next.
package sse
