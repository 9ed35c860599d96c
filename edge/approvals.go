package edge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Approvals as the edge sees them: an agent's request is a TOOL_CALL of
// tool streams.ApprovalTool addressed to the user (worker.Run
// .RequestApproval); the user decides with a TOOL_DONE for its call_id
// over HAIP (result {"decision": "approve"|"reject", "comment": …}), or
// over HTTP (POST /gizmo/<session>/approvals/<id>). Either way the
// decision is stored once in the approval's record (compare-and-set: a
// second decision is refused with APPROVAL_DECIDED, a late one with
// APPROVAL_EXPIRED), then written to the session's inbound log as the
// user's TOOL_DONE. A user's TOOL_DONE for anything else stays refused:
// tool results are the agent side's.

// Codes of refused decisions.
const (
	codeApprovalDecided haip.Code = "APPROVAL_DECIDED"
	codeApprovalExpired haip.Code = "APPROVAL_EXPIRED"
)

// approvalDecision is the result of a user's TOOL_DONE for an approval.
type approvalDecision struct {
	Decision string `json:"decision"`
	Comment  string `json:"comment"`
}

// decisionOf reads the decision a user's TOOL_DONE carries: its result's
// decision, or, with none, OK for approve and ERROR or CANCELLED for
// reject.
func decisionOf(p haip.ToolDonePayload) approvalDecision {
	var d approvalDecision
	if len(p.Result) > 0 && json.Unmarshal(p.Result, &d) == nil && d.Decision != "" {
		return d
	}
	if p.Status == "" || p.Status == haip.ToolDoneOK {
		d.Decision = "approve"
	} else {
		d.Decision = "reject"
	}
	return d
}

// decideApproval stores a user's decision, once. relatedID names the
// envelope that carried it, if any.
func (s *Server) decideApproval(ctx context.Context, id auth.Identity, session, approvalID string, d approvalDecision, relatedID string) (streams.Approval, *haip.Error) {
	if len(d.Comment) > maxDecisionComment {
		return streams.Approval{}, haip.Errorf(haip.CodeMessageTooLarge, "comment longer than %d bytes", maxDecisionComment).WithRelated(relatedID)
	}
	ap, err := s.fabric.Approvals().Decide(ctx, session, approvalID, d.Decision, d.Comment, id.Subject)
	switch {
	case err == nil:
		return ap, nil
	case errors.Is(err, streams.ErrApprovalNotFound), errors.Is(err, streams.ErrInvalidSessionID):
		return ap, haip.Errorf(haip.CodeToolNotFound, "session %s has no approval request %s", session, approvalID).WithRelated(relatedID).WithDetail("approval_id", approvalID)
	case errors.Is(err, streams.ErrBadDecision):
		return ap, haip.Errorf(haip.CodeProtocolViolation, "decision %q: want approve or reject", d.Decision).WithRelated(relatedID).WithDetail("field", "decision")
	case errors.Is(err, streams.ErrApprovalDecided):
		return ap, haip.Errorf(codeApprovalDecided, "approval %s was already decided: %s by %s", approvalID, ap.Status, ap.DecidedBy).
			WithRelated(relatedID).WithDetail("approval_id", approvalID).WithDetail("status", ap.Status)
	case errors.Is(err, streams.ErrApprovalExpired):
		return ap, haip.Errorf(codeApprovalExpired, "approval %s expired at %s, undecided", approvalID, ap.Deadline.Format("2006-01-02T15:04:05Z07:00")).
			WithRelated(relatedID).WithDetail("approval_id", approvalID)
	}
	s.logger.Error("decide approval", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
	return ap, haip.Errorf(haip.CodeInternalError, "approval store unavailable; send the decision again").WithRelated(relatedID)
}

// maxDecisionComment bounds a decision's comment.
const maxDecisionComment = 4 << 10

// isApprovalDecision reports a user's TOOL_DONE: the one kind of tool
// result a user may send (for an approval; store checks which).
func isApprovalDecision(role auth.Role, t haip.Type) bool {
	return role != auth.RoleAgent && t == haip.TypeToolDone
}

// recordDecision writes a decision made over HTTP to the inbound log as
// the user's TOOL_DONE for the approval, as a HAIP client's would be.
func (s *Server) recordDecision(ctx context.Context, id auth.Identity, ap streams.Approval, d approvalDecision) {
	result, _ := json.Marshal(d)
	env, err := haip.New(ap.Session, haip.ChannelUser, haip.TypeToolDone, haip.ToolDonePayload{CallID: ap.ID, Status: haip.ToolDoneOK, Result: result})
	if err != nil {
		return
	}
	env.ID = haip.NameUUID("approval-decision", ap.Session, ap.ID)
	env.RunID = ap.RunID
	_, writeDir := directions(id.Role)
	if _, err := s.log.AppendEnvelope(ctx, ap.Session, writeDir, env); err != nil {
		// The decision holds (the record is what the agent waits on);
		// only its line in the conversation is missing.
		s.logger.Warn("record approval decision", slog.String(logKeySession, ap.Session), slog.Any(logKeyErr, err))
	}
}
