package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// consume takes messages from it until ctx ends (it is stopped then),
// running handle for each on a goroutine of its own, at most limit at
// once; wg counts those goroutines so that the caller can drain them.
func consume(ctx context.Context, it jetstream.MessagesContext, limit int, wg *sync.WaitGroup, logger *slog.Logger, handle func(jetstream.Msg)) {
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	sem := make(chan struct{}, limit)
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return
			}
			logger.Warn("next message", slog.Any("err", err))
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			handle(msg)
		}()
	}
}

// drain waits up to wait for the handlers counted by wg, then cancels
// them (their work is redelivered) and waits for them to return.
func drain(wg *sync.WaitGroup, wait time.Duration, cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cancel()
		<-done
	}
}
