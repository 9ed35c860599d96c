// Package ndjson reads and writes newline-delimited records (NDJSON, also
// called JSON Lines): one compact JSON value per line, each line ended by
// "\n". The edge streams HAIP envelopes this way over HTTP and reads
// request bodies that may be huge or endless.
//
// Start with [NewReader] and [Reader.Next] to read, and [Append] to write.
// A Reader's memory is bounded by its line limit plus a small constant
// whatever the input: an over-long line is skipped and reported as a
// [*LineTooLongError], and the stream stays usable. The package does not
// parse JSON; a line is any bytes without "\n".
//
// # Concurrency
//
// Append is pure and safe to call from any goroutine. A Reader is not safe
// for concurrent use; one goroutine calls Next.
package ndjson
