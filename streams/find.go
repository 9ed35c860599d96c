package streams

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
)

// Bounds returns the retained range of a session log.
func (l *Log) Bounds(ctx context.Context, session string, d Direction) (Bounds, error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return Bounds{}, err
	}
	return l.bounds(ctx, session, d, subj)
}

func (l *Log) bounds(ctx context.Context, session string, d Direction, subj string) (Bounds, error) {
	last, err := l.last(ctx, subj)
	if errors.Is(err, errNotFound) {
		// Empty: new, or emptied by retention. The tail bucket remembers.
		t, err := l.tail(ctx, tailKey(session, d))
		if err != nil {
			return Bounds{}, err
		}
		return Bounds{First: Position{Seq: t + 1}, Last: Position{Seq: t}}, nil
	}
	if err != nil {
		return Bounds{}, err
	}
	first, err := l.next(ctx, subj, 1)
	if errors.Is(err, errNotFound) {
		// Dropped between the two gets.
		first = Entry{Position: Position{Seq: last.Seq + 1}}
	} else if err != nil {
		return Bounds{}, err
	}
	return Bounds{First: first.Position, Last: last.Position}, nil
}

// Find returns the position of message seq. It answers ErrTooOld when
// retention dropped it and ErrBeyondEnd when it was never written. It costs
// O(log n) direct gets: an interpolation search on stream sequence, with a
// bisection every other probe so that an uneven spread cannot degrade it.
func (l *Log) Find(ctx context.Context, session string, d Direction, seq uint64) (Position, error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return Position{}, err
	}
	b, err := l.bounds(ctx, session, d, subj)
	if err != nil {
		return Position{}, err
	}
	return l.find(ctx, subj, b, seq)
}

func (l *Log) find(ctx context.Context, subj string, b Bounds, seq uint64) (Position, error) {
	switch {
	case seq > b.Last.Seq:
		return Position{}, fmt.Errorf("seq %d (last is %d): %w", seq, b.Last.Seq, ErrBeyondEnd)
	case seq < b.First.Seq:
		return Position{}, fmt.Errorf("seq %d (first retained is %d): %w", seq, b.First.Seq, ErrTooOld)
	case seq == b.First.Seq:
		return b.First, nil
	case seq == b.Last.Seq:
		return b.Last, nil
	}
	lo, hi := b.First, b.Last
	// Messages with Seq in (lo.Seq, hi.Seq) have StreamSeq in [a, z].
	a, z := lo.StreamSeq+1, hi.StreamSeq-1
	for probe := 0; a <= z; probe++ {
		guess := a + (z-a)/2
		if probe%2 == 0 {
			guess = interpolate(lo, hi, seq)
			guess = max(a, min(z, guess))
		}
		e, err := l.next(ctx, subj, guess)
		if errors.Is(err, errNotFound) || (err == nil && e.StreamSeq > z) {
			z = guess - 1 // nothing of ours in [guess, z]
			continue
		}
		if err != nil {
			return Position{}, err
		}
		switch {
		case e.Seq == seq:
			return e.Position, nil
		case e.Seq < seq:
			lo, a = e.Position, e.StreamSeq+1
		default:
			hi, z = e.Position, guess-1
		}
	}
	// Dense numbering makes this unreachable unless messages were removed
	// from the middle of the log by hand.
	return Position{}, fmt.Errorf("seq %d of %s missing between stream seqs %d and %d: %w", seq, subj, lo.StreamSeq, hi.StreamSeq, ErrTooOld)
}

// interpolate guesses the stream seq of seq between lo and hi, assuming
// the session's messages are spread evenly among other sessions'.
func interpolate(lo, hi Position, seq uint64) uint64 {
	span := hi.StreamSeq - lo.StreamSeq
	h, l := bits.Mul64(seq-lo.Seq, span)
	q, _ := bits.Div64(h%(hi.Seq-lo.Seq), l, hi.Seq-lo.Seq)
	if h >= hi.Seq-lo.Seq {
		return hi.StreamSeq
	}
	return lo.StreamSeq + q
}
