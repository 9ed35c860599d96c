package streams_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/internal/clustertest"
	"github.com/haipfabric/haipfabric/streams"
)

// Append on R3 streams of the 3-node loopback cluster (three nats-server
// processes): one session with 1 and 64 writers, beside raw async publish
// of the same bytes in the same run.
//
//	go test -run '^$' -bench R3 -benchtime 20000x ./streams/
func BenchmarkAppendR3(b *testing.B) {
	c := clustertest.Start(b)
	nc, js := c.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := streams.Ensure(ctx, js, streams.Config{Replicas: 3}); err != nil {
		b.Fatal(err)
	}
	l, err := streams.OpenLog(ctx, nc, js)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close(context.Background())
	b.Run("raw-async", func(b *testing.B) { rawAsync(b, js) })
	for _, w := range []int{1, 64} {
		b.Run(fmt.Sprintf("one-session/writers=%d", w), func(b *testing.B) {
			session := fmt.Sprintf("r3-%d-%d", w, b.N)
			appendConcurrently(b, l, w, func(int) string { return session })
		})
	}
}
