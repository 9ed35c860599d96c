// Command haipchat is a small interactive HAIP chat client for the edge,
// and a demonstration of resume.
//
//	haipchat -url ws://127.0.0.1:8080/haip/websocket -token JWT [-transport T] [-session ID] [-last-seq N] [-quiet] [-v]
//
// -transport picks how it talks to the edge (package client): websocket
// (the default), sse (Server-Sent Events, sending by POST), stream (NDJSON
// both ways on one HTTP request) or stream-half (NDJSON from the edge,
// sending by POST). Every transport takes the same -url: the WebSocket
// endpoint, or http://HOST:PORT.
//
// It connects, prints the session id and the server's HAIP version, then
// reads lines from stdin: plain text is sent as a user message (the edge's
// demo agent answers it); /resume drops the connection abruptly and
// resumes the same session from the last seq received; /replay FROM [TO]
// asks the edge to send a range again; /quit or end of input leaves; /help
// lists the commands.
//
// Session-log messages are printed with their seq, "[seq N]"; a streamed
// text message stays on one line, with the seqs of its parts and end after
// it as "[seq A-B]". A lost connection is resumed automatically (five tries
// with backoff); a policy-violation close (1008) or a refused connection
// (HTTP 400, 401, 403) ends the command with a non-zero status. On exit the last
// seq is printed with the flags that resume from it.
//
// -quiet prints only the agent's streamed text and errors, for scripts; the
// resume hint then goes to stderr. -v also prints control messages (PING,
// PONG, FLOW_UPDATE, …). The token may come from $HAIP_TOKEN instead of
// -token.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		logger.Error("haipchat: bad usage", slog.Any("err", err))
		os.Exit(2)
	default:
		logger.Error("haipchat stopped", slog.Any("err", err))
		os.Exit(1)
	}
}
