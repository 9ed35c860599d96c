package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/haipfabric/haipfabric/streams"
)

// How a worker takes work. A queue (the runs, or one tool's calls) is
// split into shards of users, each with a durable consumer of its own
// (streams.RunConsumerConfigs, streams.ToolConsumerConfigs). A dispatcher
// polls every shard for one message at a time and hands the handler slots
// out in the order the shards' messages came to wait for one, so that a
// shard holding a thousand messages gets a slot no more often than a
// shard holding one: a user's flood delays the others by a bounded
// amount. One shard also never holds more than its share of the slots
// (ShardConcurrency), so that long work from one user cannot take them
// all while others wait.
//
// Nothing is fetched ahead: a message is taken from JetStream only when
// its shard may run one more, so work this worker cannot start soon stays
// in the stream for other workers, and a message that waits for a slot is
// kept from redelivery with InProgress. When the worker stops, a message
// still waiting for a slot is handed back (Nak) at once.

const (
	// fetchWait is how long one poll of a shard waits for a message.
	// An idle worker sends one pull request per shard this often.
	fetchWait = time.Minute
	// fetchHeartbeat is how often the server confirms a waiting poll: a
	// poll lost on the server (a consumer leader moved, the server
	// restarted) is noticed after two are missed, as the consume loop of
	// nats.go would with its default 30 s expiry.
	fetchHeartbeat = 15 * time.Second
)

// shardShare is the default ShardConcurrency: all of concurrency but a
// quarter of it, and at least one slot left to the other shards whenever
// there are two slots or more.
func shardShare(concurrency int) int {
	return max(1, concurrency-max(1, concurrency/4))
}

// dispatcher runs handle for the messages of a queue's consumers, at most
// slots at once and at most perShard of one consumer's at once. handlers
// counts the running handlers, so that the caller can drain them.
type dispatcher struct {
	slots     *semaphore.Weighted // FIFO: the waiting shards take turns
	perShard  int
	keepAlive time.Duration // InProgress period of a message waiting for a slot
	handlers  *sync.WaitGroup
	logger    *slog.Logger
	handle    func(jetstream.Msg)
	health    *health             // nil: not followed
	js        jetstream.JetStream // recreates a consumer deleted under it (nil: it cannot)
}

func newDispatcher(slots, perShard int, ackWait time.Duration, handlers *sync.WaitGroup, logger *slog.Logger, handle func(jetstream.Msg)) *dispatcher {
	return &dispatcher{slots: semaphore.NewWeighted(int64(slots)), perShard: min(perShard, slots), keepAlive: ackWait / 3,
		handlers: handlers, logger: logger, handle: handle}
}

// run polls every consumer until ctx ends and returns once every poll has
// stopped; handlers started may still be running (see drain).
func (d *dispatcher) run(ctx context.Context, cons []jetstream.Consumer) {
	var polls sync.WaitGroup
	for _, c := range cons {
		polls.Add(1)
		go func() {
			defer polls.Done()
			d.poll(ctx, c)
		}()
	}
	polls.Wait()
}

// poll takes one consumer's messages while it has fewer than perShard
// handlers running: one at a time, waiting for a slot in turn with the
// other shards, and more at once only into slots no one waits for.
func (d *dispatcher) poll(ctx context.Context, c jetstream.Consumer) {
	held := make(chan struct{}, d.perShard) // one token per running handler of this shard
	// A failed poll (the consumer gone, JetStream away) is retried by the
	// fabric's retry policy.
	var backoff streams.Backoff
	failing := false
	for {
		select {
		case held <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msg, err := fetchOne(ctx, c)
		if msg == nil {
			<-held
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				d.noteHealth(c, err)
				if again, ok := d.recreate(ctx, c, err); ok {
					// Consumption goes on from the new consumer at once.
					c = again
					continue
				}
				level := slog.LevelWarn
				if failing {
					level = slog.LevelDebug // said once until it works again
				}
				d.logger.Log(ctx, level, "cannot take work", slog.String("consumer", c.CachedInfo().Name), slog.Any("err", err))
				failing = true
				if !backoff.Wait(ctx) {
					return
				}
				continue
			}
			d.noteHealth(c, nil) // an empty long poll is a served one
			continue
		}
		d.noteHealth(c, nil)
		backoff.Reset()
		failing = false
		if !d.acquire(ctx, msg) {
			_ = msg.Nak() // stopping: another worker takes it now
			<-held
			return
		}
		d.start(msg, held)
		if ctx.Err() == nil {
			d.burst(c, held)
		}
	}
}

// recreate makes a consumer again, with its config, when a fetch failed
// because it was deleted (by an operator, or with the stream it was on):
// the worker goes on taking work instead of failing for ever.
func (d *dispatcher) recreate(ctx context.Context, c jetstream.Consumer, err error) (jetstream.Consumer, bool) {
	if d.js == nil || !(errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted)) {
		return nil, false
	}
	info := c.CachedInfo()
	rctx, cancel := context.WithTimeout(ctx, recreateTimeout)
	defer cancel()
	again, cerr := d.js.CreateOrUpdateConsumer(rctx, info.Stream, info.Config)
	if cerr != nil {
		d.logger.Warn("cannot make a deleted consumer again", slog.String("consumer", info.Name), slog.Any("err", cerr))
		return nil, false
	}
	d.logger.Info("a deleted consumer was made again", slog.String("consumer", info.Name))
	return again, true
}

// recreateTimeout bounds making a deleted consumer again.
const recreateTimeout = 10 * time.Second

// noteHealth records a fetch from c that failed with err (nil: served).
func (d *dispatcher) noteHealth(c jetstream.Consumer, err error) {
	if d.health == nil {
		return
	}
	name := c.CachedInfo().Name
	if err != nil {
		d.health.failed(name, err)
		return
	}
	d.health.ok(name)
}

// start runs handle for msg, which holds a slot and one of its shard's
// held tokens; both are released when the handler returns.
func (d *dispatcher) start(msg jetstream.Msg, held chan struct{}) {
	d.handlers.Add(1)
	go func() {
		defer func() {
			d.slots.Release(1)
			<-held
			d.handlers.Done()
		}()
		d.handle(msg)
	}()
}

// burst takes more of a shard's messages at once after one came, as many
// as there are free slots that no other shard waits for (and the shard's
// share allows), without waiting: a lone user's queue is not taken one
// round trip at a time, and a waiting shard still gets the next slot.
func (d *dispatcher) burst(c jetstream.Consumer, held chan struct{}) {
	n := 0
	for n < d.perShard && d.reserve(held) {
		n++
	}
	if n == 0 {
		return
	}
	got := 0
	if batch, err := c.FetchNoWait(n); err == nil {
		for msg := range batch.Messages() {
			d.start(msg, held)
			got++
		}
	}
	if n > got {
		d.slots.Release(int64(n - got))
		for range n - got {
			<-held
		}
	}
}

// reserve takes, without waiting, one of the shard's held tokens and a
// free slot that no other shard waits for.
func (d *dispatcher) reserve(held chan struct{}) bool {
	select {
	case held <- struct{}{}:
	default:
		return false
	}
	if !d.slots.TryAcquire(1) {
		<-held
		return false
	}
	return true
}

// acquire waits for a handler slot, in turn with the other shards'
// messages, keeping msg from redelivery meanwhile. It fails when ctx ends
// first.
func (d *dispatcher) acquire(ctx context.Context, msg jetstream.Msg) bool {
	if d.slots.TryAcquire(1) {
		return true
	}
	stop := keepInProgress(ctx, msg, d.keepAlive, nil)
	defer stop()
	return d.slots.Acquire(ctx, 1) == nil
}

// fetchOne waits up to fetchWait for one message of c. A nil message with
// a nil error means none came (or ctx ended).
func fetchOne(ctx context.Context, c jetstream.Consumer) (jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	batch, err := c.Fetch(1, jetstream.FetchContext(fctx), jetstream.FetchHeartbeat(fetchHeartbeat))
	if err != nil {
		return nil, err
	}
	for msg := range batch.Messages() {
		return msg, nil
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	return nil, nil
}

// drain waits up to wait for the handlers counted by wg, then cancels
// them (their work is handed back) and waits for them to return.
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
