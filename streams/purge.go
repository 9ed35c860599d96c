package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// PurgeSession removes what the fabric stores for a session but its
// record: both logs, their tails, the run states, its approvals and the
// run requests still queued. The caller marks the record deleted first
// (Sessions.MarkDeleted), so that the id is never opened again, and ends
// the session's runs: an agent still writing into the log after the
// purge would leave its last messages behind.
func (f *Fabric) PurgeSession(ctx context.Context, session string) error {
	if err := ValidateSessionID(session); err != nil {
		return err
	}
	var errs []error
	if err := f.log.purge(ctx, session); err != nil {
		errs = append(errs, err)
	}
	if err := f.runs.kv.Delete(ctx, session); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		errs = append(errs, fmt.Errorf("cannot delete run states of %s: %w", session, err))
	}
	if err := f.approvals.Purge(ctx, session); err != nil {
		errs = append(errs, fmt.Errorf("cannot delete approvals of %s: %w", session, err))
	}
	if s, err := f.js.Stream(ctx, RunStream); err != nil {
		errs = append(errs, fmt.Errorf("cannot purge queued runs of %s: %w", session, err))
	} else {
		for _, subj := range []string{runPrefix + "*.*." + session, runPrefix + session} {
			if err := s.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
				errs = append(errs, fmt.Errorf("cannot purge queued runs of %s: %w", session, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cannot purge session %s: %w", session, errors.Join(errs...))
	}
	return nil
}

// purge removes both logs of session and forgets their positions and
// tails.
func (l *Log) purge(ctx context.Context, session string) error {
	if err := l.stream.Purge(ctx, jetstream.WithPurgeSubject(conversationFilter(session))); err != nil {
		return fmt.Errorf("cannot purge the log of %s: %w", session, err)
	}
	var errs []error
	for _, d := range []Direction{In, Out} {
		subj, _ := LogSubject(session, d)
		key := tailKey(session, d)
		l.mu.Lock()
		delete(l.cache, subj)
		delete(l.dirty, key)
		l.mu.Unlock()
		if err := l.tails.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, fmt.Errorf("cannot delete the tail %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}
