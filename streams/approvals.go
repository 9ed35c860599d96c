package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Human-in-the-loop approvals. An agent asks a session's user for a
// decision and waits; the request and its decision live in ApprovalBucket
// (one key per approval, "<session>.<approval id>", changed by
// compare-and-set), so the wait survives the agent, the edge and a NATS
// node dying: whoever decides, on any edge, over any front door, moves
// the record once; the agent replica running the run (the first, or the
// one that took it over) watches the key and continues.

// ApprovalBucket is the KV bucket of approval requests.
const ApprovalBucket = "haip_approvals"

// ApprovalTool is the tool name of an approval request in a session log:
// it appears there as a TOOL_CALL addressed to the user (call_id = the
// approval id), and its TOOL_DONE carries the decision.
const ApprovalTool = "user_approval"

// Approval states.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
	ApprovalExpired  = "expired"
	// ApprovalCancelled: the run that asked ended first.
	ApprovalCancelled = "cancelled"
)

// Errors of deciding an approval.
var (
	// ErrApprovalNotFound: the session has no such approval.
	ErrApprovalNotFound = errors.New("approval not found")
	// ErrApprovalDecided: the approval was decided already.
	ErrApprovalDecided = errors.New("approval already decided")
	// ErrApprovalExpired: the approval's deadline passed undecided.
	ErrApprovalExpired = errors.New("approval expired")
	// ErrBadDecision: a decision other than approve or reject.
	ErrBadDecision = errors.New("decision must be approve or reject")
)

// Approval is one request for a human decision.
type Approval struct {
	ID      string `json:"id"`
	Session string `json:"session"`
	RunID   string `json:"runId"`
	// What is being asked, and why.
	What string `json:"what"`
	Why  string `json:"why,omitempty"`
	// The tool call it guards, when it guards one.
	Tool       string          `json:"tool,omitempty"`
	ToolParams json.RawMessage `json:"toolParams,omitempty"`
	ToolCallID string          `json:"toolCallId,omitempty"`
	// Deadline: undecided by then, the request expires.
	Deadline    time.Time `json:"deadline"`
	RequestedAt time.Time `json:"requestedAt"`
	// Seq is where the request sits in the session's outbound log.
	Seq uint64 `json:"seq,omitempty"`
	// Status is pending, approved, rejected or expired.
	Status    string    `json:"status"`
	Comment   string    `json:"comment,omitempty"`
	DecidedBy string    `json:"decidedBy,omitempty"`
	DecidedAt time.Time `json:"decidedAt,omitzero"`
}

// Decided reports whether the approval has left pending.
func (a Approval) Decided() bool { return a.Status != ApprovalPending }

// Approvals is the approval bucket. Safe for concurrent use.
type Approvals struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// OpenApprovals binds to the bucket made by Ensure.
func OpenApprovals(ctx context.Context, js jetstream.JetStream) (*Approvals, error) {
	kv, err := js.KeyValue(ctx, ApprovalBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open approvals: bucket %s: %w", ApprovalBucket, err)
	}
	return &Approvals{kv: kv, now: time.Now}, nil
}

func approvalKey(session, id string) (string, error) {
	if err := ValidateSessionID(session); err != nil {
		return "", err
	}
	if err := ValidateSessionID(id); err != nil {
		return "", fmt.Errorf("approval id: %w", err)
	}
	return session + "." + id, nil
}

// Request records a pending approval unless one with its id exists, and
// returns the stored one (a redelivered run finds its earlier request,
// decided or not).
func (a *Approvals) Request(ctx context.Context, ap Approval) (Approval, error) {
	key, err := approvalKey(ap.Session, ap.ID)
	if err != nil {
		return Approval{}, err
	}
	ap.Status, ap.RequestedAt = ApprovalPending, a.now().UTC()
	val, err := json.Marshal(ap)
	if err != nil {
		return Approval{}, err
	}
	if _, err = a.kv.Create(ctx, key, val); err == nil {
		return ap, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return Approval{}, fmt.Errorf("cannot record approval %s: %w", ap.ID, err)
	}
	existing, _, err := a.load(ctx, key)
	return existing, err
}

// Get returns one approval of a session.
func (a *Approvals) Get(ctx context.Context, session, id string) (Approval, error) {
	key, err := approvalKey(session, id)
	if err != nil {
		return Approval{}, err
	}
	ap, _, err := a.load(ctx, key)
	return ap, err
}

func (a *Approvals) load(ctx context.Context, key string) (Approval, uint64, error) {
	e, err := a.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Approval{}, 0, ErrApprovalNotFound
	}
	if err != nil {
		return Approval{}, 0, fmt.Errorf("cannot read approval %s: %w", key, err)
	}
	var ap Approval
	if err := json.Unmarshal(e.Value(), &ap); err != nil {
		return Approval{}, 0, fmt.Errorf("cannot decode approval %s: %w", key, err)
	}
	return ap, e.Revision(), nil
}

// SetSeq records where the request was stored in the log.
func (a *Approvals) SetSeq(ctx context.Context, session, id string, seq uint64) error {
	_, err := a.change(ctx, session, id, func(ap *Approval) error {
		ap.Seq = seq
		return nil
	})
	return err
}

// Decide moves a pending approval to approved or rejected (decision
// "approve" or "reject"), once: a decided one is ErrApprovalDecided (with
// the stored approval), one past its deadline is marked expired and is
// ErrApprovalExpired.
func (a *Approvals) Decide(ctx context.Context, session, id, decision, comment, by string) (Approval, error) {
	var status string
	switch decision {
	case "approve", ApprovalApproved:
		status = ApprovalApproved
	case "reject", ApprovalRejected:
		status = ApprovalRejected
	default:
		return Approval{}, ErrBadDecision
	}
	var expired bool
	ap, err := a.change(ctx, session, id, func(ap *Approval) error {
		if ap.Decided() {
			return ErrApprovalDecided
		}
		now := a.now().UTC()
		if !ap.Deadline.IsZero() && now.After(ap.Deadline) {
			ap.Status, ap.DecidedAt, expired = ApprovalExpired, now, true
			return nil
		}
		ap.Status, ap.Comment, ap.DecidedBy, ap.DecidedAt = status, comment, by, now
		return nil
	})
	if err == nil && expired {
		return ap, ErrApprovalExpired
	}
	return ap, err
}

// Expire marks a pending approval expired (its deadline passed). A
// decided one is returned as it is.
func (a *Approvals) Expire(ctx context.Context, session, id string) (Approval, error) {
	ap, err := a.change(ctx, session, id, func(ap *Approval) error {
		if ap.Decided() {
			return ErrApprovalDecided
		}
		ap.Status, ap.DecidedAt = ApprovalExpired, a.now().UTC()
		return nil
	})
	if errors.Is(err, ErrApprovalDecided) {
		return ap, nil
	}
	return ap, err
}

// Cancel marks a pending approval cancelled (the run that asked ended).
// A decided one is returned as it is.
func (a *Approvals) Cancel(ctx context.Context, session, id, reason string) (Approval, error) {
	ap, err := a.change(ctx, session, id, func(ap *Approval) error {
		if ap.Decided() {
			return ErrApprovalDecided
		}
		ap.Status, ap.Comment, ap.DecidedAt = ApprovalCancelled, reason, a.now().UTC()
		return nil
	})
	if errors.Is(err, ErrApprovalDecided) {
		return ap, nil
	}
	return ap, err
}

// change is the compare-and-set loop of an approval; fn's error is
// returned with the record as stored.
func (a *Approvals) change(ctx context.Context, session, id string, fn func(*Approval) error) (Approval, error) {
	key, err := approvalKey(session, id)
	if err != nil {
		return Approval{}, err
	}
	for range maxRecordAttempts {
		ap, rev, err := a.load(ctx, key)
		if err != nil {
			return Approval{}, err
		}
		if err := fn(&ap); err != nil {
			return ap, err
		}
		val, err := json.Marshal(ap)
		if err != nil {
			return Approval{}, err
		}
		if _, err = a.kv.Update(ctx, key, val, rev); err == nil {
			return ap, nil
		}
		if !isKVConflict(err) {
			return Approval{}, fmt.Errorf("cannot update approval %s: %w", id, err)
		}
	}
	return Approval{}, fmt.Errorf("cannot update approval %s: %w", id, ErrConflictLimit)
}

// List returns a session's approvals, oldest request first.
func (a *Approvals) List(ctx context.Context, session string) ([]Approval, error) {
	if err := ValidateSessionID(session); err != nil {
		return nil, err
	}
	lister, err := a.kv.ListKeysFiltered(ctx, session+".*")
	if err != nil {
		return nil, fmt.Errorf("cannot list approvals of %s: %w", session, err)
	}
	var out []Approval
	for key := range lister.Keys() {
		ap, _, err := a.load(ctx, key)
		if errors.Is(err, ErrApprovalNotFound) {
			continue
		}
		if err != nil {
			_ = lister.Stop()
			return nil, err
		}
		out = append(out, ap)
	}
	slices.SortFunc(out, func(x, y Approval) int { return x.RequestedAt.Compare(y.RequestedAt) })
	return out, nil
}

// Wait returns the approval once it is decided (or ctx ends): it watches
// the key, so a decision made on any edge reaches it at once.
func (a *Approvals) Wait(ctx context.Context, session, id string) (Approval, error) {
	key, err := approvalKey(session, id)
	if err != nil {
		return Approval{}, err
	}
	w, err := a.kv.Watch(ctx, key)
	if err != nil {
		return Approval{}, fmt.Errorf("cannot watch approval %s: %w", id, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return Approval{}, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return Approval{}, fmt.Errorf("watch of approval %s ended", id)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var ap Approval
			if json.Unmarshal(e.Value(), &ap) == nil && ap.Decided() {
				return ap, nil
			}
		}
	}
}

// Purge removes every approval of a session (its deletion).
func (a *Approvals) Purge(ctx context.Context, session string) error {
	if err := ValidateSessionID(session); err != nil {
		return err
	}
	lister, err := a.kv.ListKeysFiltered(ctx, session+".*")
	if err != nil {
		return fmt.Errorf("cannot list approvals of %s: %w", session, err)
	}
	var errs []error
	for key := range lister.Keys() {
		if !strings.HasPrefix(key, session+".") {
			continue
		}
		if err := a.kv.Purge(ctx, key); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
