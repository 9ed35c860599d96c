package streams

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The fabric's one retry policy, for every failure that may pass on its
// own (IsTransient, a starting cluster, a work queue that cannot be
// fetched): wait MinBackoff after the first failure, twice as long after
// each further one, never more than MaxBackoff, and stop when the
// caller's ctx ends. No jitter: the retrying parties are few (one per
// process and session or queue), and each bounds its own attempts.
const (
	// MinBackoff is the first wait of a Backoff.
	MinBackoff = 20 * time.Millisecond
	// MaxBackoff is the longest wait of a Backoff.
	MaxBackoff = time.Second
)

// Backoff paces the retries of one operation by the fabric's retry policy
// (MinBackoff doubling up to MaxBackoff). The zero Backoff is ready to
// use; it is not safe for concurrent use.
type Backoff struct {
	next time.Duration
}

// Next returns the wait before the next retry and advances the policy,
// for callers that wait in a select of their own.
func (b *Backoff) Next() time.Duration {
	d := max(b.next, MinBackoff)
	b.next = min(2*d, MaxBackoff)
	return d
}

// Wait sleeps the wait before the next retry (Next). It returns false,
// at once, when ctx ends first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Reset starts the policy over, after a success.
func (b *Backoff) Reset() { b.next = 0 }

// attemptTimeout bounds one request of a retried operation.
const attemptTimeout = defaultRequestTimeout

// attempt bounds one request by try, within ctx.
func attempt(ctx context.Context, try time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, try)
}

// isConflict reports a lost compare-and-set: 10071 on R1 streams, 10164 on
// replicated ones.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// IsTransient reports a failure that may pass on its own: JetStream did
// not answer in time or nobody served the request (a stream leader
// election, a NATS reconnection). Worth retrying with backoff.
func IsTransient(err error) bool { return isUncertain(err) }

// isUncertain reports a publish whose outcome is unknown: it may have been
// stored.
func isUncertain(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}
