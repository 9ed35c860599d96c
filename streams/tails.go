package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func (l *Log) cached(subj string) (Position, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.cache[subj]
	return p, ok
}

func (l *Log) remember(subj, key string, p Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.cache) >= maxCachedPositions {
		// Forget an arbitrary half; a miss costs one direct get.
		n := 0
		for k := range l.cache {
			delete(l.cache, k)
			if n++; n >= maxCachedPositions/2 {
				break
			}
		}
	}
	l.cache[subj] = p
	l.dirty[key] = p.Seq
}

func (l *Log) tail(ctx context.Context, key string) (uint64, error) {
	e, err := l.tails.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read tail %s: %w", key, err)
	}
	v, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad tail %s: %w", key, err)
	}
	return v, nil
}

func (l *Log) flushLoop(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(tailFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, defaultRequestTimeout)
			_ = l.flushTails(fctx) // retried at the next tick: entries stay dirty
			cancel()
		}
	}
}

// flushTails records the highest seq of every log written since the last
// flush. It only ever raises a tail, so racing writers cannot lower it.
func (l *Log) flushTails(ctx context.Context) error {
	l.mu.Lock()
	batch := l.dirty
	l.dirty = make(map[string]uint64, len(batch))
	l.mu.Unlock()
	var errs []error
	for key, seq := range batch {
		if err := l.raiseTail(ctx, key, seq); err != nil {
			errs = append(errs, err)
			l.mu.Lock()
			if l.dirty[key] < seq {
				l.dirty[key] = seq
			}
			l.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

func (l *Log) raiseTail(ctx context.Context, key string, seq uint64) error {
	val := []byte(strconv.FormatUint(seq, 10))
	for range 5 {
		e, err := l.tails.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err = l.tails.Create(ctx, key, val); err == nil {
				return nil
			}
		case err != nil:
			return fmt.Errorf("cannot read tail %s: %w", key, err)
		default:
			if cur, perr := strconv.ParseUint(string(e.Value()), 10, 64); perr == nil && cur >= seq {
				return nil
			}
			if _, err = l.tails.Update(ctx, key, val, e.Revision()); err == nil {
				return nil
			}
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !isConflict(err) {
			return fmt.Errorf("cannot write tail %s: %w", key, err)
		}
	}
	return fmt.Errorf("cannot write tail %s: %w", key, ErrConflictLimit)
}

// isConflict reports a lost compare-and-set: 10071 on R1 streams, 10164 on
