package streams_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// Benchmarks of the seq scheme, each beside the raw JetStream operation it
// builds on, measured on the same embedded server in the same run:
//
//	go test -run '^$' -bench . -benchtime 2s ./streams/

var catchupBatch = 256

var payload256 = []byte(strings.Repeat("x", 256))

func body256(uint64) ([]byte, error) { return payload256, nil }

func benchSetup(b *testing.B) (*streams.Log, jetstream.JetStream) {
	l, js, _ := benchSetupNC(b)
	return l, js
}

func benchSetupNC(b *testing.B) (*streams.Log, jetstream.JetStream, *nats.Conn) {
	b.Helper()
	f := harness.New(b, streams.Config{})
	return f.Log(), f.JS, f.NC
}

// Raw baseline: synchronous publish, no checks.
func BenchmarkRawPublishSync(b *testing.B) {
	_, js := benchSetup(b)
	ctx := context.Background()
	b.SetBytes(int64(len(payload256)))
	for b.Loop() {
		if _, err := js.Publish(ctx, "haip.session.raw.out", payload256); err != nil {
			b.Fatal(err)
		}
	}
}

// Raw baseline: async publish, no checks (the upper bound on ingest).
func BenchmarkRawPublishAsync(b *testing.B) {
	_, js := benchSetup(b)
	b.SetBytes(int64(len(payload256)))
	for b.Loop() {
		if _, err := js.PublishAsync("haip.session.raw.out", payload256, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
}

// Append: one writer, one session (CAS, one round trip per message).
func BenchmarkAppendOneSession(b *testing.B) {
	l, _ := benchSetup(b)
	ctx := context.Background()
	b.SetBytes(int64(len(payload256)))
	for b.Loop() {
		if _, err := l.Append(ctx, "bench", streams.Out, streams.Record{}, body256); err != nil {
			b.Fatal(err)
		}
	}
}

// Append: two independent writers (two Logs, as two processes) racing on
// one session; reports CAS retries per message.
func BenchmarkAppendTwoWritersOneSession(b *testing.B) {
	l1, js, nc := benchSetupNC(b)
	l2, err := streams.OpenLog(context.Background(), nc, js) // no shared cache or lock: another process
	if err != nil {
		b.Fatal(err)
	}
	defer l2.Close(context.Background())
	ctx := context.Background()
	var n atomic.Int64
	b.SetBytes(int64(len(payload256)))
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / 2
	for _, l := range []*streams.Log{l1, l2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				if _, err := l.Append(ctx, "two", streams.Out, streams.Record{}, body256); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "msgs/s")
}

// Append: many sessions at once, one writer each (the normal shape).
func BenchmarkAppendManySessions(b *testing.B) {
	l, _ := benchSetup(b)
	ctx := context.Background()
	var id atomic.Int64
	b.SetBytes(int64(len(payload256)))
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		session := fmt.Sprintf("s%d", id.Add(1))
		for pb.Next() {
			if _, err := l.Append(ctx, session, streams.Out, streams.Record{}, body256); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Append: w writers at once on one session (one Log): what group commit
// is for. Appends that queue while one is in flight ride one atomic
// batch; reports the messages per batch commit.
func BenchmarkAppendOneSessionWriters(b *testing.B) {
	for _, w := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			l, _ := benchSetup(b)
			appendConcurrently(b, l, w, func(int) string { return "one" })
		})
	}
}

// Append: 100 sessions, one writer each (the normal shape), beside raw
// async publish of the same bytes on the same server in the same run
// (sub-benchmarks "raw-async" and "append"; compare their msgs/s).
func BenchmarkAppend100Sessions(b *testing.B) {
	b.Run("raw-async", func(b *testing.B) {
		_, js := benchSetup(b)
		rawAsync(b, js)
	})
	b.Run("append", func(b *testing.B) {
		l, _ := benchSetup(b)
		appendConcurrently(b, l, 100, func(i int) string { return fmt.Sprintf("s%d", i) })
	})
}

// rawAsync publishes b.N messages of payload256 asynchronously and waits
// for every ack; reports msgs/s.
func rawAsync(b *testing.B, js jetstream.JetStream) {
	b.SetBytes(int64(len(payload256)))
	b.ResetTimer()
	for range b.N {
		if _, err := js.PublishAsync("haip.session.raw.out", payload256, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks timed out")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// appendConcurrently runs w goroutines appending b.N messages in all,
// goroutine i to session(i); reports msgs/s.
func appendConcurrently(b *testing.B, l *streams.Log, w int, session func(i int) string) {
	ctx := context.Background()
	var left atomic.Int64
	left.Store(int64(b.N))
	b.SetBytes(int64(len(payload256)))
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := session(i)
			for left.Add(-1) >= 0 {
				if _, err := l.Append(ctx, s, streams.Out, streams.Record{}, body256); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// Find: locate seq k in a session interleaved with 99 others in a stream
// of 200k messages; reports direct gets (probes) per lookup.
func BenchmarkFind(b *testing.B) {
	l, js := benchSetup(b)
	ctx := context.Background()
	const sessions, per = 100, 2000
	for i := range per {
		for s := range sessions {
			pubSeq(b, js, fmt.Sprintf("haip.session.f%d.out", s), uint64(i+1))
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("fill timed out")
	}
	var k uint64
	for b.Loop() {
		k = k%per + 1
		p, err := l.Find(ctx, "f42", streams.Out, k)
		if err != nil || p.Seq != k {
			b.Fatalf("find %d: %+v %v", k, p, err)
		}
	}
}

// Read: catch-up of one session by batched direct gets, versus an ordered
// consumer (the raw baseline) over the same messages.
func BenchmarkCatchup(b *testing.B) {
	l, js := benchSetup(b)
	ctx := context.Background()
	const n = 20000
	for i := range n {
		pubSeq(b, js, "haip.session.c.out", uint64(i+1))
	}
	<-js.PublishAsyncComplete()
	b.Run("batched-direct-get", func(b *testing.B) {
		b.SetBytes(int64(n * len(payload256)))
		for b.Loop() {
			got, from := 0, uint64(1)
			for got < n {
				es, _, err := l.Read(ctx, "c", streams.Out, from, catchupBatch, catchupBatch*1024)
				if err != nil || len(es) == 0 {
					b.Fatalf("read: %d %v", len(es), err)
				}
				got += len(es)
				from = es[len(es)-1].StreamSeq + 1
			}
		}
	})
	b.Run("reader", func(b *testing.B) {
		b.SetBytes(int64(n * len(payload256)))
		for b.Loop() {
			r, err := l.NewReader("c", streams.Out, streams.ReaderOptions{})
			if err != nil {
				b.Fatal(err)
			}
			got, from, pulls := 0, uint64(1), 0
			for got < n {
				es, _, err := r.Read(ctx, from, catchupBatch, catchupBatch*1024)
				if err != nil || len(es) == 0 {
					b.Fatalf("read: %d %v", len(es), err)
				}
				if r.UsesConsumer() {
					pulls++
				}
				got += len(es)
				from = es[len(es)-1].StreamSeq + 1
			}
			r.Close(ctx)
			b.ReportMetric(float64(pulls), "consumer-reads/op")
		}
	})
	b.Run("ordered-consumer", func(b *testing.B) {
		b.SetBytes(int64(n * len(payload256)))
		for b.Loop() {
			cons, err := js.OrderedConsumer(ctx, streams.SessionStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"haip.session.c.out"}})
			if err != nil {
				b.Fatal(err)
			}
			it, err := cons.Messages()
			if err != nil {
				b.Fatal(err)
			}
			for range n {
				if _, err := it.Next(); err != nil {
					b.Fatal(err)
				}
			}
			it.Stop()
		}
	})
}

// pubSeq publishes a log message with its Haip-Seq header without the
// CAS, to fill a stream fast.
func pubSeq(b *testing.B, js jetstream.JetStream, subj string, seq uint64) {
	m := &nats.Msg{Subject: subj, Data: payload256, Header: nats.Header{}}
	m.Header.Set(streams.HeaderSeq, strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
		b.Fatal(err)
	}
}
