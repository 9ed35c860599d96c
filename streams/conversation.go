package streams

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A session's conversation is both its logs, what users sent (In) and
// what they received (Out), merged in the order they were stored: the
// stream sequence of the one stream that holds them. Reading it costs in
// proportion to the page read (plus O(log n) direct gets to find where a
// backward page starts), never to the length of the log.

// ConversationCursor is an opaque position between two entries of a
// session's conversation. The empty cursor is the start when reading
// forward and the end when reading backward. A cursor is only meaningful
// for the session it came from.
type ConversationCursor string

// ConversationEntry is one envelope of a conversation.
type ConversationEntry struct {
	// Direction is the log it is stored in: In (a user sent it) or Out.
	Direction Direction
	Entry
}

// ConversationPage is a page of a conversation.
type ConversationPage struct {
	// Entries are in stored order, oldest first.
	Entries []ConversationEntry
	// Before is the cursor of the page before this one (read backward
	// from it), After the cursor of the page after it (read forward).
	Before, After ConversationCursor
	// HasBefore and HasAfter report whether entries are stored before
	// Before and after After (as far as the read could tell: entries
	// stored after the read are not counted).
	HasBefore, HasAfter bool
}

// ErrBadCursor is wrapped by every refusal of a conversation cursor.
var ErrBadCursor = errors.New("invalid conversation cursor")

// MaxConversationPage is the most entries one Conversation call returns.
const MaxConversationPage = 1000

// convPos is a decoded cursor: stream seq of the last entry before the
// position (0: the start), and the seqs of the last entry of each
// direction before it (0: none).
type convPos struct {
	stream, in, out uint64
}

const cursorVersion = "c1"

func (p convPos) cursor() ConversationCursor {
	raw := cursorVersion + "." + strconv.FormatUint(p.stream, 10) + "." + strconv.FormatUint(p.in, 10) + "." + strconv.FormatUint(p.out, 10)
	return ConversationCursor(base64.RawURLEncoding.EncodeToString([]byte(raw)))
}

func parseCursor(c ConversationCursor) (convPos, error) {
	raw, err := base64.RawURLEncoding.DecodeString(string(c))
	if err != nil || len(raw) > 80 {
		return convPos{}, fmt.Errorf("%w: not a cursor this server made", ErrBadCursor)
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 4 || parts[0] != cursorVersion {
		return convPos{}, fmt.Errorf("%w: not a cursor this server made", ErrBadCursor)
	}
	var n [3]uint64
	for i, s := range parts[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return convPos{}, fmt.Errorf("%w: not a cursor this server made", ErrBadCursor)
		}
		n[i] = v
	}
	p := convPos{stream: n[0], in: n[1], out: n[2]}
	if p.in > p.stream || p.out > p.stream || p.in+p.out > p.stream {
		return convPos{}, fmt.Errorf("%w: inconsistent position", ErrBadCursor)
	}
	return p, nil
}

// seqOf returns the position's seq for direction d.
func (p convPos) seqOf(d Direction) uint64 {
	if d == In {
		return p.in
	}
	return p.out
}

// after returns the position just after entry e.
func (p convPos) after(e ConversationEntry) convPos {
	p.stream = e.StreamSeq
	if e.Direction == In {
		p.in = e.Seq
	} else {
		p.out = e.Seq
	}
	return p
}

// Conversation reads up to limit entries of session's conversation:
// forward, the entries stored after from; backward, the last limit
// entries stored before it (returned oldest first). limit is clamped to
// [1, MaxConversationPage]. A cursor that does not parse wraps
// ErrBadCursor.
func (l *Log) Conversation(ctx context.Context, session string, from ConversationCursor, backward bool, limit int) (ConversationPage, error) {
	if err := ValidateSessionID(session); err != nil {
		return ConversationPage{}, err
	}
	limit = max(1, min(limit, MaxConversationPage))
	var pos convPos
	if from != "" {
		p, err := parseCursor(from)
		if err != nil {
			return ConversationPage{}, err
		}
		pos = p
	}
	if backward {
		return l.conversationBackward(ctx, session, pos, from == "", limit)
	}
	return l.conversationForward(ctx, session, pos, limit)
}

// conversationFilter is the subject filter of both logs of a session.
func conversationFilter(session string) string { return sessionPrefix + session + ".*" }

// directionOf tells which log subj (a log subject of session) is.
func directionOf(subj string) (Direction, bool) {
	i := strings.LastIndexByte(subj, '.')
	d := Direction(subj[i+1:])
	return d, i >= 0 && d.Valid()
}

// readConversation reads up to max entries of session on subject filter
// (both logs, or one) stored at or after stream seq start and at or
// before stream seq end (0: no end), in stored order. more reports
// entries left in that range after the ones returned.
func (l *Log) readConversation(ctx context.Context, session, filter string, start, end uint64, max int) (entries []ConversationEntry, more bool, err error) {
	for len(entries) < max {
		msgs, pending, err := directBatch(ctx, l.nc, SessionStream, directRequest{Seq: start, NextFor: filter, Batch: max - len(entries), MaxBytes: conversationReadBytes})
		if err != nil {
			return nil, false, fmt.Errorf("cannot read conversation of %s: %w", session, err)
		}
		for _, m := range msgs {
			if end > 0 && m.StreamSeq > end {
				return entries, false, nil
			}
			d, ok := directionOf(m.Subject)
			if !ok {
				continue
			}
			e, err := toEntry(m)
			if err != nil {
				return nil, false, fmt.Errorf("cannot read conversation of %s: %w", session, err)
			}
			entries = append(entries, ConversationEntry{Direction: d, Entry: e})
			start = m.StreamSeq + 1
		}
		if len(msgs) == 0 || pending == 0 {
			return entries, false, nil
		}
	}
	return entries, true, nil
}

func (l *Log) conversationForward(ctx context.Context, session string, pos convPos, limit int) (ConversationPage, error) {
	entries, more, err := l.readConversation(ctx, session, conversationFilter(session), pos.stream+1, 0, limit)
	if err != nil {
		return ConversationPage{}, err
	}
	page := ConversationPage{Entries: entries, Before: pos.cursor(), HasBefore: pos.in > 0 || pos.out > 0, HasAfter: more}
	for _, e := range entries {
		pos = pos.after(e)
	}
	page.After = pos.cursor()
	return page, nil
}

// conversationBackward reads the last limit entries stored before pos
// (before the end when atEnd). They are among the limit last entries of
// each direction before pos, so it reads those (at most 2×limit entries,
// after an O(log n) search for where each starts) and keeps the last
// limit of them in stored order.
func (l *Log) conversationBackward(ctx context.Context, session string, pos convPos, atEnd bool, limit int) (ConversationPage, error) {
	type span struct {
		subj  string
		start uint64
	}
	var spans []span
	for _, d := range []Direction{In, Out} {
		subj, err := LogSubject(session, d)
		if err != nil {
			return ConversationPage{}, err
		}
		b, err := l.bounds(ctx, session, d, subj)
		if err != nil {
			return ConversationPage{}, fmt.Errorf("cannot read conversation of %s: %w", session, err)
		}
		if b.Empty() {
			continue
		}
		last := pos.seqOf(d)
		if atEnd {
			last = b.Last.Seq
			if d == In {
				pos.in = last
			} else {
				pos.out = last
			}
			pos.stream = max(pos.stream, b.Last.StreamSeq)
		}
		if last < b.First.Seq {
			continue // nothing of d retained before pos
		}
		first := b.First.Seq
		if last >= uint64(limit) {
			first = max(first, last-uint64(limit)+1)
		}
		p, err := l.find(ctx, subj, b, first)
		if errors.Is(err, ErrTooOld) {
			p = b.First // dropped by retention while we looked
		} else if err != nil {
			return ConversationPage{}, fmt.Errorf("cannot read conversation of %s: %w", session, err)
		}
		spans = append(spans, span{subj, p.StreamSeq})
	}
	var read []ConversationEntry
	for _, sp := range spans {
		if sp.start > pos.stream {
			continue
		}
		es, _, err := l.readConversation(ctx, session, sp.subj, sp.start, pos.stream, limit)
		if err != nil {
			return ConversationPage{}, err
		}
		read = append(read, es...)
	}
	slices.SortFunc(read, func(a, b ConversationEntry) int { return cmp.Compare(a.StreamSeq, b.StreamSeq) })
	kept := read
	if len(kept) > limit {
		kept = kept[len(kept)-limit:]
	}
	// kept is the suffix of the conversation before pos: an entry of a
	// direction stored after kept[0] is in it. So at the position before
	// kept[0], each direction's seq is one less than its first kept
	// entry's, or the same as at pos when none is kept.
	before := pos
	seen := map[Direction]bool{}
	for _, e := range kept {
		if !seen[e.Direction] {
			seen[e.Direction] = true
			if e.Direction == In {
				before.in = e.Seq - 1
			} else {
				before.out = e.Seq - 1
			}
		}
	}
	if len(kept) > 0 {
		before.stream = kept[0].StreamSeq - 1
	}
	return ConversationPage{
		Entries: kept, Before: before.cursor(), After: pos.cursor(),
		HasBefore: len(read) > len(kept) || (len(kept) > 0 && (before.in > 0 || before.out > 0) && l.retainedBefore(ctx, session, before)),
		HasAfter:  !atEnd,
	}, nil
}

// retainedBefore reports whether any entry of session is stored at or
// before pos (pos counts entries, some of which retention may have
// dropped). On a failure to tell it says yes: a backward read from pos
// then returns what there is.
func (l *Log) retainedBefore(ctx context.Context, session string, pos convPos) bool {
	es, _, err := l.readConversation(ctx, session, conversationFilter(session), 1, pos.stream, 1)
	return err != nil || len(es) > 0
}

// conversationReadBytes bounds one direct-get batch of a conversation read.
const conversationReadBytes = 1 << 20

// FirstAtOrAfter returns the seq of the first entry of a session log
// stored at or after stream seq streamSeq, or the seq the next entry will
// get when there is none. It lets a reader of one direction start where a
// position in the other direction is.
func (l *Log) FirstAtOrAfter(ctx context.Context, session string, d Direction, streamSeq uint64) (uint64, error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return 0, err
	}
	// The end first: an entry stored after it is found by the get below,
	// so "none found" means the next entry will be after that end.
	b, err := l.bounds(ctx, session, d, subj)
	if err != nil {
		return 0, err
	}
	e, err := l.next(ctx, subj, max(streamSeq, 1))
	if err == nil {
		return e.Seq, nil
	}
	if !errors.Is(err, errNotFound) {
		return 0, fmt.Errorf("cannot read %s: %w", subj, err)
	}
	return b.Last.Seq + 1, nil
}

// CursorAfter returns the cursor just after entry e of a page read forward
// from cursor at (e and the entries before it in the page taken).
func CursorAfter(at ConversationCursor, e ConversationEntry) ConversationCursor {
	var pos convPos
	if at != "" {
		p, err := parseCursor(at)
		if err != nil {
			return ""
		}
		pos = p
	}
	return pos.after(e).cursor()
}
