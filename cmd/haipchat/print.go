package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/haipfabric/haipfabric/haip"
)

// maxShown is how much of a payload a summary shows, in bytes.
const maxShown = 160

// printer turns envelopes into terminal lines. Only run's goroutine uses
// it, so it has no lock. Write errors are ignored: there is nobody left
// to tell.
//
// Every session-log message's seq is printed exactly once: as a
// "[seq N]" prefix, or, for the parts and end of a text message streamed
// on one line, as a "[seq A-B]" suffix when the line ends.
type printer struct {
	out     io.Writer // messages, errors, status
	diag    io.Writer // in quiet mode: answers to commands and the resume hint
	quiet   bool
	verbose bool
	line    *textLine // the streamed message whose line is still open
	// cut is the message whose line was broken before its end, so that
	// its continuation names the same author.
	cut *textLine
}

// textLine is a text message being streamed on the current line.
type textLine struct {
	id       string
	author   string
	from, to uint64 // seqs on the line not printed yet; zero from: none
	spaced   bool   // the text so far ends in white space
}

// write appends text to the line.
func (l *textLine) write(w io.Writer, text string) {
	if text == "" {
		return
	}
	io.WriteString(w, text)
	l.spaced = strings.TrimRight(text, " \t") != text
}

// add counts seq among the line's unlabelled seqs.
func (l *textLine) add(seq uint64) {
	if l.from == 0 {
		l.from = seq
	}
	l.to = seq
}

// breakLine ends the open text line, naming the seqs it holds.
func (p *printer) breakLine() {
	if p.line == nil {
		return
	}
	p.endLine()
	p.cut = p.line
	p.line = nil
}

// endLine writes the open line's seqs and newline.
func (p *printer) endLine() {
	l := p.line
	if !p.quiet && l.from != 0 {
		sep := " "
		if l.spaced {
			sep = ""
		}
		if l.from == l.to {
			fmt.Fprintf(p.out, "%s[seq %d]", sep, l.from)
		} else {
			fmt.Fprintf(p.out, "%s[seq %d-%d]", sep, l.from, l.to)
		}
	}
	fmt.Fprintln(p.out)
}

// status prints a line about the connection; quiet mode drops it.
func (p *printer) status(format string, args ...any) {
	if p.quiet {
		return
	}
	p.breakLine()
	fmt.Fprintf(p.out, format+"\n", args...)
}

// say prints a line the user asked for (or must see): on stdout, or on
// stderr in quiet mode so that stdout stays the agent's text.
func (p *printer) say(format string, args ...any) {
	if p.quiet {
		fmt.Fprintf(p.diag, format+"\n", args...)
		return
	}
	p.breakLine()
	fmt.Fprintf(p.out, format+"\n", args...)
}

// protocolError prints an ERROR from the edge, in every mode.
func (p *printer) protocolError(e haip.ErrorPayload) {
	p.breakLine()
	fmt.Fprintf(p.out, "error %s: %s\n", e.Code, e.Message)
}

// control prints a connection-scoped message with -v.
func (p *printer) control(env *haip.Envelope) {
	if !p.verbose || p.quiet {
		return
	}
	p.breakLine()
	fmt.Fprintf(p.out, "[ctl @%d] %s %s\n", env.Seq, env.Type, clip(string(env.Payload)))
}

// logMessage prints a session-log message; replayed ones (seq not after
// the last one seen) get a line of their own.
func (p *printer) logMessage(env *haip.Envelope, replayed bool) {
	seq := uint64(env.Seq)
	if replayed {
		if !p.quiet {
			p.breakLine()
			fmt.Fprintf(p.out, "[seq %d] (replayed) %s\n", seq, summary(env))
		}
		return
	}
	switch env.Type {
	case haip.TypeTextMessageStart:
		var pl haip.TextMessageStartPayload
		_ = env.DecodePayload(&pl)
		p.breakLine()
		p.line = &textLine{id: pl.MessageID, author: author(env.Channel, pl.Author)}
		if !p.quiet {
			fmt.Fprintf(p.out, "[seq %d] %s: ", seq, p.line.author)
		}
		p.line.write(p.out, pl.Text)
		return
	case haip.TypeTextMessagePart:
		var pl haip.TextMessagePartPayload
		_ = env.DecodePayload(&pl)
		if p.line != nil && p.line.id == pl.MessageID {
			p.line.add(seq)
		} else {
			// Its start was on an earlier line (before a reconnect, say).
			p.breakLine()
			p.line = &textLine{id: pl.MessageID, author: author(env.Channel, "")}
			if p.cut != nil && p.cut.id == pl.MessageID {
				p.line.author = p.cut.author
			}
			if !p.quiet {
				fmt.Fprintf(p.out, "[seq %d] %s: … ", seq, p.line.author)
			}
		}
		p.line.write(p.out, pl.Text)
		return
	case haip.TypeTextMessageEnd:
		var pl haip.TextMessageEndPayload
		_ = env.DecodePayload(&pl)
		if p.line != nil && p.line.id == pl.MessageID {
			p.line.add(seq)
			p.endLine()
			p.line, p.cut = nil, nil
			return
		}
		if !p.quiet {
			p.breakLine()
			fmt.Fprintf(p.out, "[seq %d] end of message\n", seq)
		}
		return
	case haip.TypeRunError:
		var pl haip.ErrorPayload
		_ = env.DecodePayload(&pl)
		p.breakLine()
		if p.quiet {
			fmt.Fprintf(p.out, "error %s: %s\n", pl.Code, pl.Message)
		} else {
			fmt.Fprintf(p.out, "[seq %d] RUN_ERROR %s: %s\n", seq, pl.Code, pl.Message)
		}
		return
	}
	if !p.quiet {
		p.breakLine()
		fmt.Fprintf(p.out, "[seq %d] %s\n", seq, summary(env))
	}
}

// author names a text message's writer.
func author(ch haip.Channel, name string) string {
	if name != "" {
		return name
	}
	return strings.ToLower(string(ch))
}

// summary is a one-line description of a log message.
func summary(env *haip.Envelope) string {
	t := string(env.Type)
	switch env.Type {
	case haip.TypeRunStarted:
		if env.RunID == "" {
			return t
		}
		return t + " run " + env.RunID
	case haip.TypeRunFinished:
		var p haip.RunFinishedPayload
		_ = env.DecodePayload(&p)
		return join(t, string(p.Status), p.Summary)
	case haip.TypeRunCancel:
		var p haip.RunCancelPayload
		_ = env.DecodePayload(&p)
		return join(t, "run", p.RunID)
	case haip.TypeRunError:
		var p haip.ErrorPayload
		_ = env.DecodePayload(&p)
		return fmt.Sprintf("%s %s: %s", t, p.Code, p.Message)
	case haip.TypeTextMessageStart:
		var p haip.TextMessageStartPayload
		_ = env.DecodePayload(&p)
		return join(t, author(env.Channel, p.Author), quote(p.Text))
	case haip.TypeTextMessagePart:
		var p haip.TextMessagePartPayload
		_ = env.DecodePayload(&p)
		return t + " " + quote(p.Text)
	case haip.TypeToolCall:
		var p haip.ToolCallPayload
		_ = env.DecodePayload(&p)
		return join(t, p.Tool, clip(string(p.Params)), "(call "+p.CallID+")")
	case haip.TypeToolUpdate:
		var p haip.ToolUpdatePayload
		_ = env.DecodePayload(&p)
		s := join(t, p.CallID, string(p.Status))
		if p.Progress != nil {
			s += fmt.Sprintf(" %.0f%%", *p.Progress)
		}
		return join(s, clip(string(p.Partial)))
	case haip.TypeToolDone:
		var p haip.ToolDonePayload
		_ = env.DecodePayload(&p)
		status := p.Status
		if status == "" {
			status = haip.ToolDoneOK
		}
		return join(t, p.CallID, string(status), clip(string(p.Result)))
	case haip.TypeToolCancel:
		var p haip.ToolCancelPayload
		_ = env.DecodePayload(&p)
		return join(t, p.CallID, p.Reason)
	case haip.TypeToolList:
		var p haip.ToolListPayload
		_ = env.DecodePayload(&p)
		names := make([]string, len(p.Tools))
		for i, tool := range p.Tools {
			names[i] = tool.Name
		}
		return join(t, strings.Join(names, ", "))
	case haip.TypeToolSchema:
		var p haip.ToolSchemaPayload
		_ = env.DecodePayload(&p)
		return join(t, p.Tool)
	}
	return join(t, clip(string(env.Payload)))
}

// join joins the non-empty parts with spaces.
func join(parts ...string) string {
	var b strings.Builder
	for _, s := range parts {
		if s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return b.String()
}

// quote shows text as a JSON string (escaping newlines), clipped.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return clip(string(b))
}

// clip shortens s to about maxShown bytes.
func clip(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
