package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
)

// Router sends stored tool calls and cancellations to the tool workers.
// The edge uses it for calls that clients send, and the worker SDK
// for calls an agent makes. Safe for concurrent use.
type Router struct {
	js    jetstream.JetStream
	log   *Log
	tools *Tools
}

// NewRouter binds to the tool registry.
func NewRouter(ctx context.Context, js jetstream.JetStream, lg *Log) (*Router, error) {
	tools, err := OpenTools(ctx, js)
	if err != nil {
		return nil, err
	}
	return &Router{js: js, log: lg, tools: tools}, nil
}

// Tools is the registry the router reads.
func (r *Router) Tools() *Tools { return r.tools }

// Call queues a TOOL_CALL already stored in the session's log, after
// telling the session it is QUEUED. A tool with no live worker gets its
// one TOOL_DONE (ERROR) at once instead of a silent wait. An error means
// the session could not be told; the caller should report it. user is
// who made the call (a JWT subject; for an agent's call, its run's user):
// it picks the call's shard of the tool's queue.
func (r *Router) Call(ctx context.Context, session, runID, user string, call haip.ToolCallPayload) error {
	fail := func(msg string) error {
		result, _ := json.Marshal(map[string]string{"error": msg})
		_, err := r.log.Emit(ctx, session, ToolDoneID(session, call.CallID), runID, "", haip.ChannelAgent, haip.TypeToolDone,
			haip.ToolDonePayload{CallID: call.CallID, Status: haip.ToolDoneError, Result: result})
		return err
	}
	if _, found, err := r.tools.Get(ctx, call.Tool); err != nil {
		return fail("tool registry unavailable; call again")
	} else if !found {
		return fail("no live worker serves tool " + call.Tool)
	}
	if _, err := r.log.Emit(ctx, session, CallEnvelopeID("tool-queued", session, call.CallID), runID, "", haip.ChannelAgent, haip.TypeToolUpdate,
		haip.ToolUpdatePayload{CallID: call.CallID, Status: haip.ToolStatusQueued}); err != nil {
		return err
	}
	if err := PublishToolCall(ctx, r.js, ToolCall{CallID: call.CallID, Tool: call.Tool, Params: call.Params,
		Session: session, RunID: runID, User: user, Created: time.Now().UTC()}); err != nil {
		if ferr := fail("tool call could not be queued; call again with a new call_id"); ferr != nil {
			return fmt.Errorf("%w; %w", err, ferr)
		}
	}
	return nil
}

// Cancel tells the session the call is CANCELLING and the call's worker,
// wherever it is, to stop; a call still queued, or not yet made, is
// cancelled when a worker takes it. The worker writes TOOL_DONE CANCELLED.
// Only the session's own call with that id is cancelled: the same call id
// in another session is another call.
func (r *Router) Cancel(ctx context.Context, session, runID, callID, reason string) error {
	if _, err := r.log.Emit(ctx, session, CallEnvelopeID("tool-cancelling", session, callID), runID, "", haip.ChannelAgent, haip.TypeToolUpdate,
		haip.ToolUpdatePayload{CallID: callID, Status: haip.ToolStatusCancelling}); err != nil {
		return err
	}
	return r.tools.Cancel(ctx, session, callID, reason)
}
