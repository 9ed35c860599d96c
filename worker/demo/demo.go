// Package demo is the demo agent shipped with the fabric: it answers every
// user message by streaming a short text word by word, so that the whole
// path (run queue, session log, delivery, resume) works with no LLM. Asked
// "add 2 3", "echo hello" or "sleep 500", it calls that tool first and
// answers with the result, so the tool path works end to end too. Asked
// "approve add 2 3" (any tool request after "approve"), it asks the user
// for approval first (Run.RequestApproval) and calls the tool only if
// approved, so the human-in-the-loop path works end to end as well.
package demo

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// DefaultDelay is the pause between streamed words.
const DefaultDelay = 50 * time.Millisecond

// Agent is the demo run handler.
type Agent struct {
	// Delay is the pause between words; zero means DefaultDelay, negative
	// means none.
	Delay time.Duration
	// Author names the agent in TEXT_MESSAGE_START; empty means "demo-agent".
	Author string
}

var _ worker.RunHandler = (*Agent)(nil)

// Answer is the text the demo agent streams for a user's text.
func Answer(text string) string {
	text = strings.TrimSpace(text)
	if text == "" {
		text = "(nothing)"
	}
	return fmt.Sprintf("Hello from the demo agent. You said: %q. "+
		"Each word of this answer is stored in JetStream before you see it, "+
		"so if you drop now and resume from your last seq you get exactly the rest.", text)
}

// ApprovalPrefix, before a tool request, makes the demo agent ask for
// approval before it calls the tool.
const ApprovalPrefix = "approve "

// ApprovalTimeout is how long the demo agent waits for a decision.
const ApprovalTimeout = 10 * time.Minute

// RejectedAnswer is the text the demo agent streams when the user rejects
// the tool call it asked about.
func RejectedAnswer(tool, comment string) string {
	if comment == "" {
		return fmt.Sprintf("You rejected the call of %s, so I did not make it.", tool)
	}
	return fmt.Sprintf("You rejected the call of %s (%s), so I did not make it.", tool, comment)
}

// ToolRequest reads a tool request out of a user's text: "add A B",
// "echo TEXT" or "sleep MS". ok is false for any other text.
func ToolRequest(text string) (tool string, params map[string]any, ok bool) {
	f := strings.Fields(text)
	if len(f) == 0 {
		return "", nil, false
	}
	switch strings.ToLower(f[0]) {
	case "add":
		if len(f) == 3 {
			a, errA := strconv.ParseFloat(f[1], 64)
			b, errB := strconv.ParseFloat(f[2], 64)
			if errA == nil && errB == nil {
				return "add", map[string]any{"a": a, "b": b}, true
			}
		}
	case "echo":
		if len(f) > 1 {
			return "echo", map[string]any{"message": strings.Join(f[1:], " ")}, true
		}
	case "sleep":
		if len(f) == 2 {
			if ms, err := strconv.Atoi(f[1]); err == nil && ms >= 0 {
				return "sleep", map[string]any{"ms": ms}, true
			}
		}
	}
	return "", nil, false
}

// ToolAnswer is the text the demo agent streams after a tool call.
func ToolAnswer(tool string, done haip.ToolDonePayload) string {
	if done.Status == haip.ToolDoneOK {
		return fmt.Sprintf("I called the tool %s. It answered %s.", tool, done.Result)
	}
	return fmt.Sprintf("I called the tool %s. It ended with %s: %s.", tool, done.Status, done.Result)
}

// HandleRun streams the answer: RUN_STARTED, for a tool request the
// TOOL_CALL and its updates and TOOL_DONE, then TEXT_MESSAGE_START, one
// TEXT_MESSAGE_PART per word, TEXT_MESSAGE_END, RUN_FINISHED.
func (a *Agent) HandleRun(ctx context.Context, run *worker.Run) error {
	delay := a.Delay
	if delay == 0 {
		delay = DefaultDelay
	}
	if run.Request.Kind == streams.RunKindAudio {
		return a.echoAudio(ctx, run)
	}
	answer := Answer(run.Request.Text)
	text, ask := strings.CutPrefix(strings.TrimSpace(run.Request.Text), ApprovalPrefix)
	if tool, params, ok := ToolRequest(text); ok {
		approved := true
		if ask {
			d, err := run.RequestApproval(ctx, worker.ApprovalRequest{What: "call the tool " + tool,
				Why: "you asked me to call it, with approval first", Tool: tool, Params: params, Timeout: ApprovalTimeout})
			if err != nil {
				return err
			}
			approved = d.Approved
			if !approved {
				answer = RejectedAnswer(tool, d.Approval.Comment)
			}
		}
		if approved {
			done, err := run.CallTool(ctx, tool, params)
			if err != nil {
				return err
			}
			answer = ToolAnswer(tool, done)
		}
	}
	msgID := haip.NameUUID("demo-answer", run.Request.RunID)
	author := a.Author
	if author == "" {
		author = "demo-agent"
	}
	if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID, Author: author}); err != nil {
		return err
	}
	words := strings.Fields(answer)
	var t *time.Timer
	for i, w := range words {
		if i > 0 && delay > 0 {
			if t == nil {
				t = time.NewTimer(delay)
				defer t.Stop()
			} else {
				t.Reset(delay)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
		if i < len(words)-1 {
			w += " "
		}
		if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: msgID, Text: w}); err != nil {
			return err
		}
	}
	_, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msgID})
	return err
}

// AudioIdle is how long the demo agent waits for the next chunk of an
// utterance before it considers the utterance over.
const AudioIdle = time.Second

// maxEchoChunks bounds one utterance's echo.
const maxEchoChunks = 10_000

// echoAudio answers an utterance by sending each of its chunks back on
// AUDIO_OUT, same bytes and mime, as they arrive.
func (a *Agent) echoAudio(ctx context.Context, run *worker.Run) error {
	out := haip.NameUUID("demo-echo", run.Request.RunID)
	n := 0
	var emitErr error
	err := run.Follow(ctx, run.Request.FromSeq, AudioIdle, func(e streams.Entry) bool {
		if e.Type != string(haip.TypeAudioChunk) {
			return true
		}
		env, err := haip.Decode(e.Data)
		if err != nil || env.Channel != haip.ChannelAudioIn {
			return true
		}
		var p haip.AudioChunkPayload
		if env.DecodePayload(&p) != nil || p.MessageID != run.Request.MessageID {
			return true
		}
		data := e.Bin
		if data == nil && p.Data != "" {
			if data, err = base64.StdEncoding.DecodeString(p.Data); err != nil {
				return true
			}
		}
		if _, emitErr = run.EmitAudio(ctx, haip.ChannelAudioOut, haip.AudioChunkPayload{MessageID: out, Mime: p.Mime, DurationMS: p.DurationMS}, data); emitErr != nil {
			return false
		}
		n++
		return n < maxEchoChunks
	})
	if emitErr != nil {
		return emitErr
	}
	return err
}
