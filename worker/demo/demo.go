// Package demo is the demo agent shipped with the fabric: it answers every
// user message by streaming a short text word by word, so that the whole
// path (run queue, session log, delivery, resume) works with no LLM.
package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/haipfabric/haipfabric/haip"
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

// HandleRun streams the answer: RUN_STARTED, TEXT_MESSAGE_START, one
// TEXT_MESSAGE_PART per word, TEXT_MESSAGE_END, RUN_FINISHED.
func (a *Agent) HandleRun(ctx context.Context, run *worker.Run) error {
	delay := a.Delay
	if delay == 0 {
		delay = DefaultDelay
	}
	if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeRunStarted, map[string]any{}); err != nil {
		return err
	}
	msgID := haip.NameUUID("demo-answer", run.Request.RunID)
	author := a.Author
	if author == "" {
		author = "demo-agent"
	}
	if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID, Author: author}); err != nil {
		return err
	}
	words := strings.Fields(Answer(run.Request.Text))
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
	if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msgID}); err != nil {
		return err
	}
	_, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusOK})
	return err
}
