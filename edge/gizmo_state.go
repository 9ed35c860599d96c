package edge

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// The state of a session as Gizmo clients see it: four slices built from
// what the fabric stores (nothing of it is kept by the edge).
//
//	execution  the runs: status of the session (idle, running, waiting for
//	           approval, cancelling), the current run, active and recent runs
//	agent      the conversation: the last gizmoMessages text messages of
//	           both sides, in stored order
//	hitl       the approval requests still pending
//	tools      the tools with a live worker
//
// Slices are recomputed from the session's logs (agent, incrementally),
// run state and approvals; changes go to clients as JSON Patches.

// Slice names.
const (
	sliceExecution = "execution"
	sliceAgent     = "agent"
	sliceHITL      = "hitl"
	sliceTools     = "tools"
)

// gizmoSlices lists the slices in the order they are sent.
var gizmoSlices = []string{sliceExecution, sliceAgent, sliceHITL, sliceTools}

// gizmoMessages is how many text messages the agent slice keeps.
const gizmoMessages = 200

// gizmoScan bounds how many log entries the agent slice reads back to
// find its messages when it starts.
const gizmoScan = 5000

// Execution statuses of a session.
const (
	execIdle       = "idle"
	execRunning    = "running"
	execWaiting    = "waiting_approval"
	execCancelling = "cancelling"
)

type gizmoRun struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Kind       string `json:"kind,omitempty"`
	CreatedAt  int64  `json:"createdAt"`
	FinishedAt int64  `json:"finishedAt,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

type gizmoExecution struct {
	Status       string     `json:"status"`
	CurrentRunID string     `json:"currentRunId"`
	Runs         []gizmoRun `json:"runs"`
}

type gizmoMessage struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	Text   string `json:"text"`
	RunID  string `json:"runId,omitempty"`
	Seq    uint64 `json:"seq"`
	Author string `json:"author,omitempty"`
}

type gizmoAgent struct {
	Messages []gizmoMessage `json:"messages"`
}

type gizmoHITL struct {
	Pending []streams.Approval `json:"pending"`
}

type gizmoTools struct {
	Tools []gizmoTool `json:"tools"`
}

type gizmoTool struct {
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	ParamsSchema json.RawMessage `json:"paramsSchema,omitempty"`
}

func toGizmoRun(r streams.RunState) gizmoRun {
	g := gizmoRun{ID: r.RunID, Status: r.Status, Kind: r.Kind, CreatedAt: r.Created.UnixMilli(), Reason: r.Reason}
	if !r.Finished.IsZero() {
		g.FinishedAt = r.Finished.UnixMilli()
	}
	return g
}

// execution builds the execution slice.
func (s *Server) gizmoExecution(ctx context.Context, session string, pending []streams.Approval) (gizmoExecution, error) {
	runs, err := s.runs.Get(ctx, session)
	if err != nil {
		return gizmoExecution{}, err
	}
	ex := gizmoExecution{Status: execIdle, Runs: []gizmoRun{}}
	for _, r := range runs.Active {
		ex.Runs = append(ex.Runs, toGizmoRun(r))
		if ex.CurrentRunID == "" {
			ex.CurrentRunID = r.RunID
			ex.Status = execRunning
			if r.Status == streams.RunCancelling {
				ex.Status = execCancelling
			}
		}
	}
	for _, ap := range pending {
		if ap.RunID == ex.CurrentRunID && ex.Status == execRunning {
			ex.Status = execWaiting
		}
	}
	recent := slices.Clone(runs.Recent)
	slices.Reverse(recent)
	for _, r := range recent {
		ex.Runs = append(ex.Runs, toGizmoRun(r))
	}
	return ex, nil
}

// pendingApprovals lists a session's approvals still pending.
func (s *Server) pendingApprovals(ctx context.Context, session string) ([]streams.Approval, error) {
	all, err := s.fabric.Approvals().List(ctx, session)
	if err != nil {
		return nil, err
	}
	pending := []streams.Approval{}
	for _, ap := range all {
		if !ap.Decided() {
			pending = append(pending, ap)
		}
	}
	return pending, nil
}

func (s *Server) gizmoTools(ctx context.Context) (gizmoTools, error) {
	infos, err := s.fabric.Tools().List(ctx)
	if err != nil {
		return gizmoTools{}, err
	}
	out := gizmoTools{Tools: []gizmoTool{}}
	for _, t := range infos {
		out.Tools = append(out.Tools, gizmoTool{Name: t.Name, Description: t.Description, ParamsSchema: t.ParamsSchema})
	}
	slices.SortFunc(out.Tools, func(a, b gizmoTool) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}

// agentBuilder folds conversation entries into the agent slice.
type agentBuilder struct {
	msgs  []gizmoMessage
	index map[string]int // message_id -> position in msgs
}

func newAgentBuilder() *agentBuilder { return &agentBuilder{index: map[string]int{}} }

// add folds one entry in; it reports whether the slice changed and
// whether the entry concerns runs or approvals (other slices to redo).
func (b *agentBuilder) add(e streams.ConversationEntry) (changed, other bool) {
	env, err := haip.Decode(e.Data)
	if err != nil {
		return false, false
	}
	switch env.Type {
	case haip.TypeRunStarted, haip.TypeRunFinished, haip.TypeRunError, haip.TypeRunCancel, haip.TypeToolCall, haip.TypeToolDone:
		return false, true
	case haip.TypeTextMessageStart:
		var p haip.TextMessageStartPayload
		if env.DecodePayload(&p) != nil {
			return false, false
		}
		role := "assistant"
		if e.Direction == streams.In {
			role = "user"
		}
		if _, ok := b.index[p.MessageID]; ok {
			return false, false
		}
		b.msgs = append(b.msgs, gizmoMessage{ID: p.MessageID, Role: role, Text: p.Text, RunID: env.RunID, Seq: e.Seq, Author: p.Author})
		b.index[p.MessageID] = len(b.msgs) - 1
		if len(b.msgs) > gizmoMessages {
			b.msgs = slices.Clone(b.msgs[len(b.msgs)-gizmoMessages:])
			b.reindex()
		}
		return true, false
	case haip.TypeTextMessagePart:
		var p haip.TextMessagePartPayload
		if env.DecodePayload(&p) != nil {
			return false, false
		}
		if i, ok := b.index[p.MessageID]; ok && p.Text != "" {
			b.msgs[i].Text += p.Text
			return true, false
		}
	}
	return false, false
}

func (b *agentBuilder) reindex() {
	clear(b.index)
	for i, m := range b.msgs {
		b.index[m.ID] = i
	}
}

func (b *agentBuilder) slice() gizmoAgent {
	return gizmoAgent{Messages: append([]gizmoMessage{}, b.msgs...)}
}

// gizmoView is a session's Gizmo state as one reader holds it: the
// slices, the agent slice's builder and the conversation cursor it has
// read to.
type gizmoView struct {
	s       *Server
	session string
	agent   *agentBuilder
	cursor  streams.ConversationCursor
	slices  map[string]any
}

// newGizmoView reads a session's state: the agent slice from the last
// gizmoScan entries of its conversation.
func (s *Server) newGizmoView(ctx context.Context, session string) (*gizmoView, error) {
	v := &gizmoView{s: s, session: session, agent: newAgentBuilder(), slices: map[string]any{}}
	// Back from the end, then forward through what was read.
	var pages []streams.ConversationPage
	cur, read := streams.ConversationCursor(""), 0
	for read < gizmoScan {
		p, err := s.log.Conversation(ctx, session, cur, true, streams.MaxConversationPage)
		if err != nil {
			return nil, err
		}
		pages = append(pages, p)
		read += len(p.Entries)
		if !p.HasBefore || len(p.Entries) == 0 {
			break
		}
		cur = p.Before
	}
	for i := len(pages) - 1; i >= 0; i-- {
		for _, e := range pages[i].Entries {
			v.agent.add(e)
		}
	}
	if len(pages) > 0 {
		v.cursor = pages[0].After
	}
	if err := v.refresh(ctx, true, true); err != nil {
		return nil, err
	}
	return v, nil
}

// refresh recomputes the slices other than agent's (all of them when
// runs is true; tools when tools is true).
func (v *gizmoView) refresh(ctx context.Context, runs, tools bool) error {
	v.slices[sliceAgent] = v.agent.slice()
	if runs {
		pending, err := v.s.pendingApprovals(ctx, v.session)
		if err != nil {
			return err
		}
		ex, err := v.s.gizmoExecution(ctx, v.session, pending)
		if err != nil {
			return err
		}
		v.slices[sliceExecution], v.slices[sliceHITL] = ex, gizmoHITL{Pending: pending}
	}
	if tools {
		t, err := v.s.gizmoTools(ctx)
		if err != nil {
			return err
		}
		v.slices[sliceTools] = t
	}
	return nil
}

// advance reads what the conversation stored since the view's cursor and
// refreshes what it touches. It reports whether anything was read.
func (v *gizmoView) advance(ctx context.Context) (bool, error) {
	var runs, any bool
	for {
		p, err := v.s.log.Conversation(ctx, v.session, v.cursor, false, streams.MaxConversationPage)
		if err != nil {
			return any, err
		}
		for _, e := range p.Entries {
			_, other := v.agent.add(e)
			runs = runs || other
		}
		any = any || len(p.Entries) > 0
		v.cursor = p.After
		if !p.HasAfter {
			break
		}
	}
	if !any {
		return false, nil
	}
	return true, v.refresh(ctx, runs, false)
}

// snapshot returns the slices as JSON values.
func (v *gizmoView) snapshot() map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(v.slices))
	for k, val := range v.slices {
		raw, _ := json.Marshal(val)
		out[k] = raw
	}
	return out
}

// now is a Gizmo event timestamp.
func gizmoNow() int64 { return time.Now().UnixMilli() }
