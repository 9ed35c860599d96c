package streams

import (
	"context"
	"errors"
	"fmt"
)

// Defaults of ScanOptions.
const (
	defaultScanBatch = 256
	defaultScanBytes = 1 << 20
)

// ScanOptions tune Log.Scan. The zero value means the defaults.
type ScanOptions struct {
	// Batch is the most messages one read returns; zero means 256.
	Batch int
	// MaxBytes is about the most bytes one read returns; zero means 1 MiB.
	MaxBytes int
	// Start, when its StreamSeq is set, is where fromSeq (or a message
	// before it) is stored, as found by Find or Bounds: Scan does not look
	// it up again.
	Start Position
	// Oldest makes a fromSeq that retention dropped start the scan at the
	// oldest message kept instead of failing with ErrTooOld.
	Oldest bool
	// Read, when set, does each read instead of Log.Read with Batch and
	// MaxBytes: a caller that paces its reads (the edge takes a catch-up
	// slot for each) passes its own. It has Log.Read's contract, from
	// stream seq cursor.
	Read func(ctx context.Context, cursor uint64) (entries []Entry, more bool, err error)
}

// Scan calls fn with each message of a session log from seq fromSeq on,
// in order and each once, until fn returns false or the messages stored
// when the last read was answered run out; then it returns nil. It is the
// one way to read a log forward: a lookup of fromSeq (O(log n) direct
// gets, see Find) and then bounded batches, each one request.
//
// A fromSeq not written yet fails with ErrBeyondEnd, one retention
// dropped with ErrTooOld (see ScanOptions.Oldest), and a failed read with
// its error; fn may already have been called. Entries passed to fn are
// fn's to keep. Scan blocks on the network and ends with ctx.
func (l *Log) Scan(ctx context.Context, session string, d Direction, fromSeq uint64, opts ScanOptions, fn func(Entry) bool) error {
	fromSeq = max(fromSeq, 1)
	read := opts.Read
	if read == nil {
		batch, maxBytes := opts.Batch, opts.MaxBytes
		if batch <= 0 {
			batch = defaultScanBatch
		}
		if maxBytes <= 0 {
			maxBytes = defaultScanBytes
		}
		read = func(ctx context.Context, cursor uint64) ([]Entry, bool, error) {
			return l.Read(ctx, session, d, cursor, batch, maxBytes)
		}
	}
	start := opts.Start
	if start.StreamSeq == 0 {
		p, err := l.Find(ctx, session, d, fromSeq)
		if errors.Is(err, ErrTooOld) && opts.Oldest {
			var b Bounds
			if b, err = l.Bounds(ctx, session, d); err == nil {
				p = b.First
			}
		}
		if err != nil {
			return fmt.Errorf("cannot scan from seq %d: %w", fromSeq, err)
		}
		start = p
	}
	for cursor := start.StreamSeq; ; {
		entries, more, err := read(ctx, cursor)
		if err != nil {
			return fmt.Errorf("cannot scan: %w", err)
		}
		for _, e := range entries {
			cursor = e.StreamSeq + 1
			if e.Seq < fromSeq {
				continue
			}
			if !fn(e) {
				return nil
			}
		}
		if !more || len(entries) == 0 {
			return nil
		}
	}
}
