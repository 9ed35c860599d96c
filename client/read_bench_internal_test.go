package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
)

// sseBody is b.N log messages as the edge writes them on an SSE stream,
// encoded beforehand, so that only reading costs.
func sseBody(b *testing.B) io.ReadCloser {
	env, err := haip.New("s", haip.ChannelAgent, haip.TypeTextMessagePart,
		haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: strings.Repeat("x", 256)})
	if err != nil {
		b.Fatal(err)
	}
	var buf []byte
	for i := 1; i <= b.N; i++ {
		env.Seq = haip.U64(i)
		data, err := haip.Encode(env)
		if err != nil {
			b.Fatal(err)
		}
		buf = sse.AppendEvent(buf, strconv.Itoa(i), "", data)
	}
	return io.NopCloser(bytes.NewReader(buf))
}

// The cost of reading SSE events on the caller's goroutine (what the load
// tool's own client did) against a Conn over the one-way transport.
func BenchmarkSSERead(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		body := sseBody(b)
		defer body.Close()
		rd := sse.NewReader(body, 0)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ev, err := rd.Next()
			if err != nil {
				b.Fatal(err)
			}
			env, err := haip.Decode(ev.Data)
			if err != nil || strconv.FormatUint(uint64(env.Seq), 10) != ev.ID {
				b.Fatal(err)
			}
		}
	})
	b.Run("conn", func(b *testing.B) {
		body := sseBody(b)
		_, cancel := context.WithCancel(context.Background())
		t := newOneway("s", nil, &http.Response{Body: body}, cancel)
		rd := sse.NewReader(body, 0)
		t.start(func() (frame, error) {
			ev, err := rd.Next()
			if err != nil {
				return frame{}, err
			}
			return frame{data: ev.Data, eventID: ev.ID, hasEventID: ev.HasID}, nil
		}, decodeEvent)
		c := &Conn{t: t, manual: true}
		defer c.CloseNow()
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
