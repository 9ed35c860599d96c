package edge

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// The user side, on request: a user connection opened with
// ?conversation=both (or whose HAI has capabilities.conversation "both")
// receives, besides the agent side it always receives, every envelope
// stored in the session's inbound log from its start point on: what this
// and the user's other connections and devices sent (text, audio, tool
// calls, cancels). Such an envelope (an echo) is sent as it was stored,
// with its own id, but like a control message it takes no seq of its own:
// its seq repeats the last seq delivered. Echoes are not paced by flow
// control (the user's own message rate bounds them). After a resume the
// echoes stored around the resume point may come again: a client drops an
// echo whose id it has seen. Without the opt-in a connection sees exactly
// what it did before.

// conversationBoth is the value of the opt-in (query parameter and HAI
// capability "conversation").
const conversationBoth = "both"

// echoTypes are the types of the user side: an envelope of one of these
// whose seq repeats the last seq is an echo.
var echoTypes = []haip.Type{haip.TypeTextMessageStart, haip.TypeTextMessagePart, haip.TypeTextMessageEnd,
	haip.TypeAudioChunk, haip.TypeToolCall, haip.TypeToolCancel, haip.TypeRunCancel}

// wantsEcho reads the opt-in from the request.
func wantsEcho(r *http.Request) bool {
	return strings.EqualFold(r.URL.Query().Get("conversation"), conversationBoth)
}

// helloWantsEcho reads the opt-in from a HAI's capabilities.
func helloWantsEcho(hello haip.HelloPayload) bool {
	return hello.Capabilities != nil && strings.EqualFold(hello.Capabilities.Conversation, conversationBoth)
}

// startEcho starts following the inbound log for a user connection that
// asked for the user side, from stream seq from on. It runs until the
// connection ends (run waits for it).
func (c *conn) startEcho(from uint64) {
	f, err := c.srv.log.NewFollower(c.session, streams.In)
	if err != nil {
		c.logger.Error("follow the user side", slog.Any(logKeyErr, err))
		return
	}
	c.echoDone = make(chan struct{})
	go func() {
		defer close(c.echoDone)
		defer f.Close()
		ctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
		seq, err := c.srv.log.FirstAtOrAfter(ctx, c.session, streams.In, from)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.logger.Error("user side start", slog.Any(logKeyErr, err))
			}
			return
		}
		err = f.Follow(c.ctx, seq, streams.FollowOptions{}, func(e streams.Entry) bool {
			c.echo(e)
			return c.ctx.Err() == nil
		})
		if err != nil && c.ctx.Err() == nil {
			c.logger.Warn("user side", slog.Any(logKeyErr, err))
		}
	}()
}

// echo queues one inbound entry for the writer.
func (c *conn) echo(e streams.Entry) {
	data := e.Data
	if e.Bin != nil {
		inline, err := haip.InlineBinary(e.Data, e.Bin)
		if err != nil {
			return
		}
		data = inline
	}
	env, err := haip.Decode(data)
	if err != nil || !c.accepts.has(env.Type) {
		return
	}
	env.Ack = nil
	c.enqueue(outbound{env: env})
}
