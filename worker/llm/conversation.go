package llm

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// historyWindow is how far back (messages of the outbound log) a run
// looks for the results of tool calls an earlier attempt made.
const historyWindow = 2048

// maxConversationPages bounds the pages of a conversation read for one
// model call, whatever the budget.
const maxConversationPages = 32

// maxToolResultChars bounds a tool result as the model reads it.
const maxToolResultChars = 32 << 10

// readLog reads a session's conversation (both logs, in stored order)
// backward from its end until the entries read hold about twice budget
// tokens (four bytes a token) of envelopes, or the start; it returns them
// oldest first. The rebuild then keeps what fits.
func readLog(ctx context.Context, log *streams.Log, session string, budget int) ([]streams.Entry, []streams.Direction, error) {
	var pages [][]streams.ConversationEntry
	var cursor streams.ConversationCursor
	size := 0
	for range maxConversationPages {
		page, err := log.Conversation(ctx, session, cursor, true, streams.MaxConversationPage)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot read the conversation: %w", err)
		}
		pages = append(pages, page.Entries)
		for _, e := range page.Entries {
			switch haip.Type(e.Type) {
			case haip.TypeTextMessageStart, haip.TypeTextMessagePart, haip.TypeToolCall, haip.TypeToolDone:
				size += len(e.Data)
			}
		}
		if !page.HasBefore || len(page.Entries) == 0 || size >= 8*budget {
			break
		}
		cursor = page.Before
	}
	var entries []streams.Entry
	var dirs []streams.Direction
	for i := len(pages) - 1; i >= 0; i-- {
		for _, e := range pages[i] {
			entries = append(entries, e.Entry)
			dirs = append(dirs, e.Direction)
		}
	}
	return entries, dirs, nil
}

// turn is a Message being rebuilt, with the results of its tool calls.
type turn struct {
	msg     Message
	runID   string
	ended   bool                  // a text message's END was seen
	results map[string]ToolResult // by call id
	textID  string                // the text message's id
}

// history is a conversation rebuilt from a session log for one run.
type history struct {
	// Messages are the turns, oldest first, within the budget.
	Messages []Message
	// Pending are this run's tool calls still without a result (an earlier
	// attempt made them; they are running or queued).
	Pending []string
	// Partial is this run's answer an earlier attempt left unfinished: its
	// message id and text so far (the last message of Messages).
	PartialID string
	// Answered means an earlier attempt finished this run's answer.
	Answered bool
}

// envelopeView is what rebuilding a conversation reads of an envelope.
type envelopeView struct {
	Channel haip.Channel `json:"channel"`
	RunID   string       `json:"run_id"`
	Payload struct {
		MessageID string          `json:"message_id"`
		Text      string          `json:"text"`
		CallID    string          `json:"call_id"`
		Tool      string          `json:"tool"`
		Params    json.RawMessage `json:"params"`
		Status    string          `json:"status"`
		Result    json.RawMessage `json:"result"`
	} `json:"payload"`
}

// rebuild turns log entries (both directions, stored order) into the
// conversation the model sees for run: the users' finished text messages
// (on USER) and the agents' answers, tool calls and results, up to the
// run's own user message and then the run's own output. budget bounds the
// estimated tokens; the oldest turns go first.
func rebuild(entries []streams.Entry, dirs []streams.Direction, req streams.RunRequest, budget int) history {
	var turns []*turn
	userText := map[string][]byte{}
	agentText := map[string]*turn{}
	callTurn := map[string]*turn{}
	triggered := false
	for i, e := range entries {
		var v envelopeView
		if json.Unmarshal(e.Data, &v) != nil {
			continue
		}
		if triggered && (dirs[i] == streams.In || v.RunID != req.RunID) {
			continue // later turns belong to later runs
		}
		switch {
		case dirs[i] == streams.In && v.Channel == haip.ChannelUser:
			switch haip.Type(e.Type) {
			case haip.TypeTextMessageStart, haip.TypeTextMessagePart:
				userText[v.Payload.MessageID] = append(userText[v.Payload.MessageID], v.Payload.Text...)
			case haip.TypeTextMessageEnd:
				text, ok := userText[v.Payload.MessageID]
				delete(userText, v.Payload.MessageID)
				if !ok && v.Payload.MessageID != req.MessageID {
					continue
				}
				if v.Payload.MessageID == req.MessageID {
					triggered = true
					if !ok {
						text = []byte(req.Text)
					}
				}
				turns = append(turns, &turn{msg: Message{Role: RoleUser, Text: string(text)}})
			}
		case dirs[i] == streams.Out && v.Channel == haip.ChannelAgent:
			switch haip.Type(e.Type) {
			case haip.TypeTextMessageStart, haip.TypeTextMessagePart:
				t := agentText[v.Payload.MessageID]
				if t == nil {
					t = &turn{msg: Message{Role: RoleAssistant}, runID: v.RunID, textID: v.Payload.MessageID}
					agentText[v.Payload.MessageID] = t
					turns = append(turns, t)
				}
				t.msg.Text += v.Payload.Text
			case haip.TypeTextMessageEnd:
				if t := agentText[v.Payload.MessageID]; t != nil {
					t.ended = true
				}
			case haip.TypeToolCall:
				if v.RunID == "" {
					continue
				}
				var t *turn
				if n := len(turns); n > 0 && turns[n-1].msg.Role == RoleAssistant && turns[n-1].runID == v.RunID {
					t = turns[n-1]
				} else {
					t = &turn{msg: Message{Role: RoleAssistant}, runID: v.RunID, ended: true}
					turns = append(turns, t)
				}
				args := v.Payload.Params
				if len(args) == 0 {
					args = json.RawMessage(`{}`)
				}
				t.msg.ToolCalls = append(t.msg.ToolCalls, ToolCall{ID: v.Payload.CallID, Name: v.Payload.Tool, Arguments: args})
				callTurn[v.Payload.CallID] = t
			case haip.TypeToolDone:
				t := callTurn[v.Payload.CallID]
				if t == nil {
					continue
				}
				if t.results == nil {
					t.results = map[string]ToolResult{}
				}
				t.results[v.Payload.CallID] = toolResult(v.Payload.CallID, haip.ToolDoneStatus(v.Payload.Status), v.Payload.Result)
			}
		}
	}
	if !triggered {
		turns = append(turns, &turn{msg: Message{Role: RoleUser, Text: req.Text}})
	}
	var h history
	if n := len(turns); n > 0 && turns[n-1].runID == req.RunID && turns[n-1].msg.Role == RoleAssistant && len(turns[n-1].msg.ToolCalls) == 0 {
		if turns[n-1].ended {
			h.Answered = true
		} else {
			h.PartialID = turns[n-1].textID
		}
	}
	// Flatten: each assistant turn with tool calls is followed by their
	// results, in call order. A call of an earlier run that never got one
	// says so; this run's are pending.
	var msgs []Message
	var cost []int
	for _, t := range turns {
		msgs = append(msgs, t.msg)
		cost = append(cost, estimate(t.msg))
		if len(t.msg.ToolCalls) == 0 {
			continue
		}
		res := Message{Role: RoleTool}
		for _, c := range t.msg.ToolCalls {
			r, ok := t.results[c.ID]
			if !ok {
				if t.runID == req.RunID {
					h.Pending = append(h.Pending, c.ID)
				}
				r = ToolResult{CallID: c.ID, Content: "no result was recorded for this call", IsError: true}
			}
			res.ToolResults = append(res.ToolResults, r)
		}
		msgs = append(msgs, res)
		cost = append(cost, estimate(res))
	}
	h.Messages = fitBudget(msgs, cost, budget)
	return h
}

// fitBudget drops the oldest messages until the rest fit in budget
// (estimated tokens; zero or less means no bound), keeping at least the
// last user message and what follows it, and starting on a user message.
func fitBudget(msgs []Message, cost []int, budget int) []Message {
	lastUser := 0
	for i, m := range msgs {
		if m.Role == RoleUser {
			lastUser = i
		}
	}
	total := 0
	for _, c := range cost {
		total += c
	}
	start := 0
	for budget > 0 && total > budget && start < lastUser {
		total -= cost[start]
		start++
	}
	for start < lastUser && msgs[start].Role != RoleUser {
		start++
	}
	return msgs[start:]
}

// estimate is a message's size in tokens, roughly: four bytes a token,
// plus a little for the message's framing.
func estimate(m Message) int {
	n := len(m.Text)
	for _, c := range m.ToolCalls {
		n += len(c.Name) + len(c.Arguments) + len(c.ID)
	}
	for _, r := range m.ToolResults {
		n += len(r.Content) + len(r.CallID)
	}
	return n/4 + 4
}

// toolResult is a TOOL_DONE as the model reads it: the result's JSON;
// anything but OK is an error result.
func toolResult(callID string, status haip.ToolDoneStatus, result json.RawMessage) ToolResult {
	content := string(result)
	if content == "" {
		content = "{}"
	}
	if len(content) > maxToolResultChars {
		content = content[:maxToolResultChars] + "…(truncated)"
	}
	isErr := status != "" && status != haip.ToolDoneOK
	if isErr {
		content = fmt.Sprintf("tool call ended with %s: %s", status, content)
	}
	return ToolResult{CallID: callID, Content: content, IsError: isErr}
}
