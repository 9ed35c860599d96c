package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// DefaultApprovalTimeout is an approval's deadline when its request sets
// none.
const DefaultApprovalTimeout = 10 * time.Minute

// ErrApprovalExpired is returned by RequestApproval when the deadline
// passed with no decision; the run should end (the Agent ends it with
// RUN_ERROR naming the approval).
var ErrApprovalExpired = errors.New("approval expired")

// ApprovalRequest is what an agent asks a human to decide.
type ApprovalRequest struct {
	// What is being asked (shown to the human), and Why.
	What, Why string
	// Tool and Params name the tool call the approval guards, if any.
	Tool   string
	Params any
	// Timeout is how long the human has; zero means
	// DefaultApprovalTimeout.
	Timeout time.Duration
}

// Decision is a human's answer to an approval request.
type Decision struct {
	// Approved is true for an approval, false for a rejection.
	Approved bool
	// Approval is the stored request with its decision (status,
	// comment, who decided and when).
	Approval streams.Approval
}

// approvalParams is the TOOL_CALL params of an approval request in the
// session log.
type approvalParams struct {
	What       string          `json:"what"`
	Why        string          `json:"why,omitempty"`
	Tool       string          `json:"tool,omitempty"`
	ToolParams json.RawMessage `json:"tool_params,omitempty"`
	Deadline   string          `json:"deadline"`
	Approval   bool            `json:"approval"`
}

// approvalResult is the TOOL_DONE result of an approval in the log.
type approvalResult struct {
	Decision  string `json:"decision"`
	Comment   string `json:"comment,omitempty"`
	DecidedBy string `json:"decided_by,omitempty"`
}

// RequestApproval asks the session's user for a decision and waits for
// it. The request is stored (ApprovalBucket) before it appears in the
// session log as a TOOL_CALL of tool streams.ApprovalTool addressed to the
// user (call_id = the approval id); the decision, made on any edge over
// HAIP (the user's TOOL_DONE for that call_id) or HTTP, is stored once
// and then written to the log as the call's TOOL_DONE (result: decision,
// comment, decided_by). The approval id derives from the run and its
// step, so a run taken over by another replica after a crash finds its
// earlier request, and its decision if one was made meanwhile: the run
// goes on exactly once. With no decision by the deadline the request
// expires (ErrApprovalExpired). A run cancelled while it waits cancels
// its request.
func (r *Run) RequestApproval(ctx context.Context, req ApprovalRequest) (Decision, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultApprovalTimeout
	}
	id := haip.NameUUID("run-approval", r.Request.RunID, strconv.Itoa(r.step+1))
	var params json.RawMessage
	if req.Params != nil {
		raw, err := json.Marshal(req.Params)
		if err != nil {
			return Decision{}, fmt.Errorf("cannot encode the guarded call's params: %w", err)
		}
		params = raw
	}
	ap, err := r.approvals.Request(ctx, streams.Approval{ID: id, Session: r.Request.Session, RunID: r.Request.RunID,
		What: req.What, Why: req.Why, Tool: req.Tool, ToolParams: params, Deadline: time.Now().Add(timeout).UTC()})
	if err != nil {
		return Decision{}, fmt.Errorf("cannot request approval: %w: %w", streams.ErrStore, err)
	}
	callParams, err := json.Marshal(approvalParams{What: ap.What, Why: ap.Why, Tool: ap.Tool, ToolParams: ap.ToolParams,
		Deadline: ap.Deadline.Format(time.RFC3339Nano), Approval: true})
	if err != nil {
		return Decision{}, err
	}
	seq, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeToolCall, haip.ToolCallPayload{CallID: id, Tool: streams.ApprovalTool, Params: callParams})
	if err != nil {
		return Decision{}, err
	}
	if ap.Seq == 0 {
		_ = r.approvals.SetSeq(ctx, ap.Session, id, seq) // where to find it; the record holds without it
	}
	if !ap.Decided() {
		wctx, cancel := context.WithDeadline(ctx, ap.Deadline)
		decided, werr := r.approvals.Wait(wctx, ap.Session, id)
		cancel()
		switch {
		case werr == nil:
			ap = decided
		case ctx.Err() != nil:
			if errors.Is(context.Cause(ctx), ErrRunCancelled) {
				// The run is over: so is its question.
				if c, err := r.approvals.Cancel(context.WithoutCancel(ctx), ap.Session, id, "run cancelled"); err == nil {
					r.approvalDone(context.WithoutCancel(ctx), c)
				}
			}
			return Decision{}, ctx.Err()
		default:
			// The deadline passed (or the watch failed): settle it.
			if ap, err = r.approvals.Expire(ctx, ap.Session, id); err != nil {
				return Decision{}, fmt.Errorf("cannot settle approval %s: %w: %w", id, streams.ErrStore, err)
			}
		}
	}
	if err := r.approvalDone(ctx, ap); err != nil {
		return Decision{}, err
	}
	switch ap.Status {
	case streams.ApprovalApproved:
		return Decision{Approved: true, Approval: ap}, nil
	case streams.ApprovalRejected:
		return Decision{Approval: ap}, nil
	}
	return Decision{Approval: ap}, fmt.Errorf("%w: %s was not decided by %s", ErrApprovalExpired, id, ap.Deadline.Format(time.RFC3339))
}

// approvalDone writes an approval's outcome to the log as its TOOL_DONE.
func (r *Run) approvalDone(ctx context.Context, ap streams.Approval) error {
	status := haip.ToolDoneOK
	switch ap.Status {
	case streams.ApprovalExpired, streams.ApprovalCancelled:
		status = haip.ToolDoneCancelled
	}
	result, err := json.Marshal(approvalResult{Decision: ap.Status, Comment: ap.Comment, DecidedBy: ap.DecidedBy})
	if err != nil {
		return err
	}
	_, err = r.Emit(ctx, haip.ChannelAgent, haip.TypeToolDone, haip.ToolDonePayload{CallID: ap.ID, Status: status, Result: result})
	return err
}

// maxStoredScan bounds how much of the outbound log a taken-over run reads
// to find what an earlier attempt stored.
const maxStoredScan = 100_000

// loadStored reads the outbound log from the run's start (the user's
// message) and keeps the ids of the envelopes this run stored there.
func (r *Run) loadStored(ctx context.Context) error {
	pos, err := r.log.Find(ctx, r.Request.Session, streams.In, r.Request.FromSeq)
	if err != nil && !errors.Is(err, streams.ErrTooOld) {
		return fmt.Errorf("cannot find the run's start: %w", err)
	}
	from, err := r.log.FirstAtOrAfter(ctx, r.Request.Session, streams.Out, pos.StreamSeq)
	if err != nil {
		return fmt.Errorf("cannot find the run's start: %w", err)
	}
	r.stored = map[string]uint64{}
	n := 0
	err = r.log.Scan(ctx, r.Request.Session, streams.Out, from, streams.ScanOptions{Oldest: true}, func(e streams.Entry) bool {
		n++
		if env, err := haip.Decode(e.Data); err == nil && env.RunID == r.Request.RunID {
			r.stored[e.MsgID] = e.Seq
		}
		return n < maxStoredScan
	})
	if errors.Is(err, streams.ErrBeyondEnd) {
		return nil
	}
	return err
}
