package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Defaults of a Follower.
const (
	// defaultFollowQuiet is FollowOptions.Quiet's default.
	defaultFollowQuiet = 5 * time.Second
	// followPendingBytes bounds what the live subscription holds unread;
	// past it messages are dropped and come back by a catch-up.
	followPendingBytes = 64 << 20
)

// FollowOptions tune Follower.Follow. The zero value means the defaults.
type FollowOptions struct {
	// Quiet is how long the live subscription may stay silent before the
	// log is read again: a message stored while this process's NATS
	// connection was down never comes live. Zero means 5 s.
	Quiet time.Duration
	// UntilIdle makes Follow return nil once a quiet period passes and the
	// read after it finds nothing new.
	UntilIdle bool
}

// Follower follows one session log as it grows: a core subscription to
// its live subject, made when the Follower is made so that nothing stored
// after that slips by, and reads of the log (Scan) from where the caller
// is whenever live delivery has a gap or goes quiet. Each message reaches
// the caller once and in order.
//
// A Follower is for one goroutine; Follow may be called again (e.g. for
// another position). Close it when done.
type Follower struct {
	l       *Log
	session string
	d       Direction
	sub     *nats.Subscription
}

// NewFollower subscribes to the live subject of a session log. It fails
// on a bad session id or a closed NATS connection.
func (l *Log) NewFollower(session string, d Direction) (*Follower, error) {
	live, err := LiveSubject(session, d)
	if err != nil {
		return nil, err
	}
	sub, err := l.nc.SubscribeSync(live)
	if err != nil {
		return nil, fmt.Errorf("cannot follow %s: %w", live, err)
	}
	_ = sub.SetPendingLimits(-1, followPendingBytes)
	return &Follower{l: l, session: session, d: d, sub: sub}, nil
}

// Close ends the subscription. It is idempotent.
func (f *Follower) Close() {
	_ = f.sub.Unsubscribe() // already gone: nothing to do
}

// Follow calls fn with each message of the log from seq fromSeq on, in
// order and each once, as they are stored, until fn returns false (nil),
// ctx ends (its error), the subscription fails (its error), a read of the
// log fails other than transiently (its error), or, with UntilIdle, the
// log goes quiet (nil). A read that fails transiently (IsTransient) is
// tried again at the next gap or quiet period. It blocks until then.
func (f *Follower) Follow(ctx context.Context, fromSeq uint64, opts FollowOptions, fn func(Entry) bool) error {
	quiet := opts.Quiet
	if quiet <= 0 {
		quiet = defaultFollowQuiet
	}
	next, stopped := max(fromSeq, 1), false
	deliver := func(e Entry) bool {
		next = e.Seq + 1
		stopped = !fn(e)
		return !stopped
	}
	// catchUp reads the log from next to its end; ok is false when the
	// read failed transiently.
	catchUp := func() (ok bool, err error) {
		err = f.l.Scan(ctx, f.session, f.d, next, ScanOptions{}, deliver)
		switch {
		case err == nil:
			return true, nil
		case ctx.Err() != nil:
			return false, ctx.Err()
		case errors.Is(err, ErrBeyondEnd):
			return true, nil // nothing at next yet: live brings it
		case IsTransient(err):
			return false, nil
		}
		return false, err
	}
	if _, err := catchUp(); err != nil || stopped {
		return err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, quiet)
		m, err := f.sub.NextMsgWithContext(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, nats.ErrBadSubscription) || errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("cannot follow %s: %w", f.sub.Subject, err)
		case err != nil:
			// Quiet (or live messages dropped): read the log.
			before := next
			ok, err := catchUp()
			if err != nil || stopped {
				return err
			}
			if ok && next == before && opts.UntilIdle {
				return nil
			}
			continue
		}
		e, err := ParseEntry(m)
		if err != nil || e.Seq < next {
			continue
		}
		if e.Seq > next {
			if _, err := catchUp(); err != nil || stopped {
				return err
			}
			continue
		}
		if !deliver(e) {
			return nil
		}
	}
}
