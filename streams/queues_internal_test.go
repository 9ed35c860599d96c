package streams

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
)

// Every user lands in a shard, always the same; the shards are all used;
// the subjects built have their fixed number of tokens whatever the user
// (haip.runs.<shard>.<user key>.<session>, haip.tools.<tool>.<shard>.<user key>).
func TestUserShardSubjects(t *testing.T) {
	t.Parallel()
	used := map[int]int{}
	for _, user := range []string{"", "alice", "bob", "a.b", "*", ">", "with space", "é", strings.Repeat("x", 4096)} {
		k := UserShard(user)
		if k < 0 || k >= QueueShards || UserShard(user) != k {
			t.Fatalf("UserShard(%q) = %d", user, k)
		}
		run, err := RunSubject("s1", user)
		if err != nil || len(strings.Split(run, ".")) != 5 || strings.ContainsAny(run, "*> ") {
			t.Fatalf("RunSubject(s1, %q) = %q, %v", user, run, err)
		}
		tool, err := ToolSubject("echo", user)
		if err != nil || len(strings.Split(tool, ".")) != 5 || strings.ContainsAny(tool, "*> ") {
			t.Fatalf("ToolSubject(echo, %q) = %q, %v", user, tool, err)
		}
	}
	for i := range 10 * QueueShards {
		used[UserShard("user-"+string(rune('a'+i%26))+string(rune('a'+i/26)))]++
	}
	if len(used) != QueueShards {
		t.Fatalf("160 users fill %d of %d shards: %v", len(used), QueueShards, used)
	}
}

// A fabric upgraded from the single-subject queues (runs on
// haip.runs.<session>, taken through one unfiltered consumer; tool calls
// on haip.tools.<tool>): Ensure widens the streams, the queue consumers
// narrow the old consumer instead of clashing with it, and what was queued
// before the upgrade is taken through it, next to new work in its shard.
func TestQueueConsumersUpgradeFromOneSubject(t *testing.T) {
	t.Parallel()
	ns := natstest.Server(t)
	js, err := jetstream.New(natstest.Conn(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The topology as it was.
	for _, sc := range []jetstream.StreamConfig{
		{Name: RunStream, Subjects: []string{runPrefix + "*"}, Retention: jetstream.WorkQueuePolicy},
		{Name: ToolStream, Subjects: []string{toolPrefix + "*"}, Retention: jetstream.WorkQueuePolicy},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateConsumer(ctx, RunStream, jetstream.ConsumerConfig{Durable: "demo", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, ToolStream, jetstream.ConsumerConfig{Durable: "tool-echo", FilterSubject: toolPrefix + "echo", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	oldRun, _ := LegacyRunSubject("before")
	oldCall, _ := LegacyToolSubject("echo")
	for _, subj := range []string{oldRun, oldCall} {
		if _, err := js.Publish(ctx, subj, []byte(`{"queued":"before"}`)); err != nil {
			t.Fatal(err)
		}
	}

	if err := Ensure(ctx, js, Config{}); err != nil {
		t.Fatal(err)
	}
	if err := PublishRun(ctx, js, RunRequest{RunID: "r-after", Session: "after", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := PublishToolCall(ctx, js, ToolCall{CallID: "c-after", Tool: "echo", Session: "after", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	runCfgs, err := RunConsumerConfigs("demo", time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	toolCfgs, err := ToolConsumerConfigs("echo", time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		stream string
		cfgs   []jetstream.ConsumerConfig
		after  string // the id in the message queued after the upgrade
	}{{RunStream, runCfgs, `"run_id":"r-after"`}, {ToolStream, toolCfgs, `"call_id":"c-after"`}} {
		cons, err := EnsureQueueConsumers(ctx, js, q.stream, q.cfgs)
		if err != nil {
			t.Fatal(err)
		}
		if len(cons) != QueueShards+1 {
			t.Fatalf("%s: %d consumers", q.stream, len(cons))
		}
		if got := fetchOne(t, cons[0]); got != `{"queued":"before"}` {
			t.Fatalf("%s: the consumer of the old layout took %q", q.stream, got)
		}
		if got := fetchOne(t, cons[1+UserShard("alice")]); !strings.Contains(got, q.after) {
			t.Fatalf("%s: alice's shard took %q", q.stream, got)
		}
	}
	// Ensuring again changes nothing (a second worker starting).
	if _, err := EnsureQueueConsumers(ctx, js, RunStream, runCfgs); err != nil {
		t.Fatal(err)
	}
}

// fetchOne takes one message from c and acks it.
func fetchOne(t *testing.T, c jetstream.Consumer) string {
	t.Helper()
	msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("%s: %v", c.CachedInfo().Name, err)
	}
	if err := msg.Ack(); err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(msg.Data(), &v); err != nil {
		t.Fatal(err)
	}
	return string(msg.Data())
}

// InFlight counts a user's runs and tool calls until they are acked, and
// no one else's.
func TestQueuesInFlight(t *testing.T) {
	t.Parallel()
	_, _, js := ensured(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := OpenQueues(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for i, user := range []string{"alice", "alice", "alice", "bob"} {
		id := "r" + string(rune('0'+i))
		if err := PublishRun(ctx, js, RunRequest{RunID: id, Session: "s" + string(rune('0'+i)), User: user}); err != nil {
			t.Fatal(err)
		}
		if err := PublishToolCall(ctx, js, ToolCall{CallID: "c" + id, Tool: "echo", Session: "s1", User: user}); err != nil {
			t.Fatal(err)
		}
	}
	if err := PublishToolCall(ctx, js, ToolCall{CallID: "cx", Tool: "sleep", Session: "s1", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	runs, calls, err := q.InFlight(ctx, "alice")
	if err != nil || runs != 3 || calls != 4 {
		t.Fatalf("alice: %d runs, %d calls, %v; want 3 and 4", runs, calls, err)
	}
	// A taken and acked call leaves the count.
	cfgs, err := ToolConsumerConfigs("echo", time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := EnsureQueueConsumers(ctx, js, ToolStream, cfgs)
	if err != nil {
		t.Fatal(err)
	}
	fetchOne(t, cons[1+UserShard("alice")])
	testkit.Eventually(t, 10*time.Second, func() bool {
		runs, calls, err = q.InFlight(ctx, "alice")
		return err == nil && runs == 3 && calls == 3
	}, "an acked call still counted")
	if runs, calls, err = q.InFlight(ctx, "carol"); err != nil || runs != 0 || calls != 0 {
		t.Fatalf("carol: %d runs, %d calls, %v; want none", runs, calls, err)
	}
}
