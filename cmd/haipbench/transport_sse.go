package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
)

// sseDialer opens GET /haip/sse?session=…&token=… streams, as a browser
// EventSource does; a resume sends Last-Event-ID. The edge builds the HAI
// from the request (no flow_control).
type sseDialer struct {
	ep endpoint
	hc *http.Client
}

// sseConn reads envelopes from the event stream with internal/sse. The
// client cannot send on it (PINGs need no answer on SSE).
type sseConn struct {
	session string
	resp    *http.Response
	rd      *sse.Reader
	cancel  context.CancelFunc // ends the request
	w       watchCtx           // reader goroutine only
	once    sync.Once
}

func (d sseDialer) dial(ctx context.Context, o dialOptions) (benchConn, error) {
	if o.Session == "" {
		o.Session = haip.NewUUID()
	}
	q := url.Values{"session": {o.Session}, "token": {d.ep.token}}
	// The request lives until Close, not until ctx (a dial timeout).
	rctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, d.ep.base+"/haip/sse?"+q.Encode(), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("sse request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if o.LastRx != nil {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*o.LastRx, 10))
	}
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	resp, err := d.hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("sse dial: %w", readErr(ctx, err))
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		return nil, fmt.Errorf("sse dial: %w", httpRefusal(resp))
	}
	c := &sseConn{session: o.Session, resp: resp, rd: sse.NewReader(resp.Body, wsReadLimit), cancel: cancel}
	for {
		env, err := c.Read(ctx)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("sse: waiting for HAI: %w", err)
		}
		switch env.Type {
		case haip.TypeHAI:
			return c, nil
		case haip.TypeError:
			_ = c.Close()
			return nil, handshakeError(env)
		}
	}
}

func (c *sseConn) Session() string { return c.session }

// Read returns the next event's envelope; comments (keep-alives) and the
// retry field are consumed by the reader.
func (c *sseConn) Read(ctx context.Context) (*haip.Envelope, error) {
	c.w.watch(ctx, c.cancel)
	ev, err := c.rd.Next()
	if err != nil {
		return nil, readErr(ctx, fmt.Errorf("sse read: %w", err))
	}
	env, err := haip.Decode(ev.Data)
	if err != nil {
		return nil, fmt.Errorf("bad envelope in event %q: %w", ev.ID, err)
	}
	if ev.HasID && !isControl(env.Type) && ev.ID != strconv.FormatUint(uint64(env.Seq), 10) {
		return nil, fmt.Errorf("event id %q is not the envelope's seq %d", ev.ID, env.Seq)
	}
	return env, nil
}

// Close ends the request. Safe from any goroutine, more than once.
func (c *sseConn) Close() error {
	c.once.Do(func() {
		c.cancel()
		_ = c.resp.Body.Close()
	})
	return nil
}
