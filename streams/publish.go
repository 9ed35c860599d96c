package streams

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// publishTimeout bounds publishIdempotent when ctx sets no deadline.
const publishTimeout = 30 * time.Second

// publishIdempotent stores data on subj with message id msgID, retrying a
// publish whose outcome is unknown (a stream leader election, an ack lost
// with a dying leader) for as long as ctx allows, each try bounded by
// try. The message id makes the retries store it once.
func publishIdempotent(ctx context.Context, js jetstream.JetStream, subj string, data []byte, msgID string, try time.Duration) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishTimeout)
		defer cancel()
	}
	var backoff Backoff
	for {
		actx, cancel := attempt(ctx, try)
		_, err := js.Publish(actx, subj, data, jetstream.WithMsgID(msgID))
		cancel()
		if err == nil || !isUncertain(err) || ctx.Err() != nil {
			return err
		}
		if !backoff.Wait(ctx) {
			return err
		}
	}
}
