package clustertest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/clustertest"
)

// An R3 stream survives a killed node, a restarted node and a full stop
// and start of the cluster.
func TestClusterHarness(t *testing.T) {
	c := clustertest.Start(t)
	_, js := c.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(batch int) {
		for i := range 10 {
			for {
				// A request lost with a killed node gets no answer: bound
				// each attempt, not only the whole test.
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "t.x", []byte{byte(i)}, jetstream.WithMsgID(fmt.Sprintf("m-%d-%d", batch, i)))
				pcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish: %v", err)
				}
			}
		}
	}
	publish(1)
	leader := c.WaitStreamLeader("T", 10*time.Second)
	c.Kill(leader)
	publish(2)
	c.Restart(leader)
	c.StopAll()
	c.StartAll()
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := js.Stream(actx, "T")
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(actx)
		}
		acancel()
		if err == nil {
			if info.State.Msgs != 20 {
				t.Fatalf("%d messages after restart, want 20", info.State.Msgs)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("stream after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}
