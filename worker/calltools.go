package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// ToolRequest is one call of Run.CallTools.
type ToolRequest struct {
	// Tool is the tool's name.
	Tool string
	// Params is the call's parameter object (JSON); empty means {}.
	Params json.RawMessage
}

// CallTools calls several tools at once on the run's behalf and waits for
// every TOOL_DONE. Each call is its own TOOL_CALL in the session log (in
// the order of reqs), all are queued before the first result is awaited,
// so they run concurrently on the tool workers. The results come back in
// the order of reqs, each with its call id. A call that fails (the tool
// ended with ERROR, no worker serves it) is a result, not an error; the
// error is for the run: the log or the queue is unavailable, or ctx ended
// (the calls still waiting are then cancelled if the run was cancelled,
// see Agent). Call ids derive from the run and step, like CallTool's.
func (r *Run) CallTools(ctx context.Context, reqs []ToolRequest) ([]haip.ToolDonePayload, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultToolTimeout)
		defer cancel()
	}
	f, err := r.log.NewFollower(r.Request.Session, streams.Out)
	if err != nil {
		return nil, fmt.Errorf("cannot follow the session: %w", err)
	}
	defer f.Close()
	results := make([]haip.ToolDonePayload, len(reqs))
	index := make(map[string]int, len(reqs))
	first := uint64(0)
	for i, req := range reqs {
		params := req.Params
		if len(params) == 0 {
			params = json.RawMessage(`{}`)
		}
		call := haip.ToolCallPayload{CallID: haip.NameUUID("run-call", r.Request.RunID, strconv.Itoa(r.step+1)), Tool: req.Tool, Params: params}
		seq, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeToolCall, call)
		if err != nil {
			return nil, err
		}
		if err := r.router.Call(ctx, r.Request.Session, r.Request.RunID, r.Request.User, call); err != nil {
			return nil, fmt.Errorf("cannot call %s: %w: %w", req.Tool, streams.ErrStore, err)
		}
		r.calls[call.CallID] = seq
		results[i].CallID = call.CallID
		index[call.CallID] = i
		if first == 0 {
			first = seq
		}
	}
	pending := len(reqs)
	err = f.Follow(ctx, first, streams.FollowOptions{Quiet: doneRecheck}, func(e streams.Entry) bool {
		if e.Type != string(haip.TypeToolDone) {
			return true
		}
		var env struct {
			Payload haip.ToolDonePayload `json:"payload"`
		}
		if json.Unmarshal(e.Data, &env) != nil {
			return true
		}
		i, ok := index[env.Payload.CallID]
		if !ok {
			return true
		}
		delete(index, env.Payload.CallID)
		delete(r.calls, env.Payload.CallID)
		results[i] = env.Payload
		pending--
		return pending > 0
	})
	if err == nil && pending > 0 {
		err = fmt.Errorf("cannot find %d TOOL_DONEs", pending)
	}
	if err != nil {
		return results, fmt.Errorf("waiting for tool results: %w", err)
	}
	return results, nil
}

// Continue numbers the run's next messages after those an earlier attempt
// of the same run stored, so that a handler that does not repeat its
// earlier output (an LLM continuing an interrupted answer) does not have
// its new messages taken for duplicates of the old ones. entries are
// messages of the session's outbound log (any, in any order); it returns
// how many of them were this run's own, numbered from the start.
func (r *Run) Continue(entries []streams.Entry) int {
	ids := make(map[string]bool, len(entries))
	for _, e := range entries {
		ids[e.MsgID] = true
	}
	n := 0
	for ids[haip.NameUUID("run-msg", r.Request.RunID, strconv.Itoa(n+1))] {
		n++
	}
	r.step = max(r.step, n)
	return n
}
