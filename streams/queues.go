package streams

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The work queues (runs, tool calls) are taken through one durable
// consumer per shard of users (see QueueShards), plus one for work queued
// before the shards existed. A WorkQueue stream admits only consumers
// whose filters do not overlap, so the shards' filters are disjoint and
// every worker of a queue shares the same consumers.

// MaxToolConsumers is the consumer limit of the tool stream: every tool
// takes QueueShards+1 consumers, so the server's default of 1,000 per
// stream would admit only 58 tools.
const MaxToolConsumers = 1000 * (QueueShards + 1)

// RunConsumerConfigs are the durable consumers through which the agent
// named name takes runs: first the one for requests queued before the
// shards (named name, filter haip.runs.<session>), then one per shard
// (name-s<k>, filter haip.runs.<k>.*.*). ackWait is how long a delivered run
// may go without an ack or progress signal; maxDeliver how often one run
// is delivered at most.
func RunConsumerConfigs(name string, ackWait time.Duration, maxDeliver int) ([]jetstream.ConsumerConfig, error) {
	if err := ValidateSessionID(name); err != nil {
		return nil, fmt.Errorf("agent name: %w", err)
	}
	cfgs := []jetstream.ConsumerConfig{queueConsumer(name, "agent run handlers: runs queued before the shards", runPrefix+"*", ackWait, maxDeliver)}
	for k := range QueueShards {
		shard := strconv.Itoa(k)
		cfgs = append(cfgs, queueConsumer(name+"-s"+shard, "agent run handlers: shard "+shard, runPrefix+shard+".*.*", ackWait, maxDeliver))
	}
	return cfgs, nil
}

// ToolConsumerConfigs are the durable consumers through which the workers
// of tool take its calls: first the one for calls queued before the
// shards (tool-<tool>, filter haip.tools.<tool>), then one per shard
// (tool<k>-<tool>, filter haip.tools.<tool>.<k>.*). The digits keep the
// names of two tools apart, whatever their names.
func ToolConsumerConfigs(tool string, ackWait time.Duration, maxDeliver int) ([]jetstream.ConsumerConfig, error) {
	legacy, err := LegacyToolSubject(tool)
	if err != nil {
		return nil, err
	}
	cfgs := []jetstream.ConsumerConfig{queueConsumer("tool-"+tool, "workers of tool "+tool+": calls queued before the shards", legacy, ackWait, maxDeliver)}
	for k := range QueueShards {
		shard := strconv.Itoa(k)
		cfgs = append(cfgs, queueConsumer("tool"+shard+"-"+tool, "workers of tool "+tool+": shard "+shard, legacy+"."+shard+".*", ackWait, maxDeliver))
	}
	return cfgs, nil
}

func queueConsumer(name, description, filter string, ackWait time.Duration, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   description,
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    maxDeliver,
		MaxAckPending: -1,
	}
}

// EnsureQueueConsumers creates or updates the consumers cfgs (from
// RunConsumerConfigs or ToolConsumerConfigs) on stream, in order, and
// returns them in the same order. The first, the consumer of work queued
// before the shards, goes first: an older worker may have left it with no
// filter at all, which would overlap every shard's.
func EnsureQueueConsumers(ctx context.Context, js jetstream.JetStream, stream string, cfgs []jetstream.ConsumerConfig) ([]jetstream.Consumer, error) {
	out := make([]jetstream.Consumer, 0, len(cfgs))
	for _, cfg := range cfgs {
		var c jetstream.Consumer
		err := ensureRetrying(ctx, func(ctx context.Context) error {
			var err error
			c, err = js.CreateOrUpdateConsumer(ctx, stream, cfg)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("cannot ensure consumer %s of %s: %w", cfg.Durable, stream, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Queues counts what users have in the work queues. Safe for concurrent
// use.
type Queues struct {
	runs, tools jetstream.Stream
}

// OpenQueues binds to the run and tool queues made by Ensure.
func OpenQueues(ctx context.Context, js jetstream.JetStream) (*Queues, error) {
	runs, err := js.Stream(ctx, RunStream)
	if err != nil {
		return nil, fmt.Errorf("cannot open queue %s: %w", RunStream, err)
	}
	tools, err := js.Stream(ctx, ToolStream)
	if err != nil {
		return nil, fmt.Errorf("cannot open queue %s: %w", ToolStream, err)
	}
	return &Queues{runs: runs, tools: tools}, nil
}

// InFlight returns how many runs and tool calls of user are queued or
// being worked on: a work queue keeps a message until its worker acks
// it, and the user's key is in its subject. It costs one request per
// queue, answered from the stream's subject index (work queued before
// the shards existed carries no user and is not counted).
func (q *Queues) InFlight(ctx context.Context, user string) (runs, calls int, err error) {
	key := UserKey(user)
	shard := strconv.Itoa(UserShard(user))
	if runs, err = countSubjects(ctx, q.runs, runPrefix+shard+"."+key+".*"); err != nil {
		return 0, 0, err
	}
	if calls, err = countSubjects(ctx, q.tools, toolPrefix+"*."+shard+"."+key); err != nil {
		return 0, 0, err
	}
	return runs, calls, nil
}

// countSubjects adds up the messages on the subjects of s that filter
// matches.
func countSubjects(ctx context.Context, s jetstream.Stream, filter string) (int, error) {
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, fmt.Errorf("cannot count %s: %w", filter, err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}
