package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/ndjson"
)

// streamDialer opens POST /haip/stream connections, NDJSON both ways.
//
// Full duplex (half false): the request body is a pipe that stays open;
// its first line is our HAI (without flow_control) and PONGs follow.
// Half duplex: ?session= (and ?last_rx_seq=) with an empty body, so the
// edge builds the HAI from the request; the client can no longer send on
// this request.
type streamDialer struct {
	ep   endpoint
	hc   *http.Client
	half bool
}

// streamConn reads NDJSON lines with internal/ndjson.
type streamConn struct {
	session string
	resp    *http.Response
	rd      *ndjson.Reader
	cancel  context.CancelFunc // ends the request
	w       watchCtx           // reader goroutine only
	once    sync.Once

	mu  sync.Mutex     // held while writing to body
	pw  *io.PipeWriter // nil in half duplex
	seq uint64         // our own numbering, under mu
}

func (d streamDialer) dial(ctx context.Context, o dialOptions) (benchConn, error) {
	if o.Session == "" {
		o.Session = haip.NewUUID()
	}
	rctx, cancel := context.WithCancel(context.Background())
	target := d.ep.base + "/haip/stream"
	var (
		body  io.Reader = http.NoBody
		pw    *io.PipeWriter
		wrote = make(chan error, 1)
	)
	if d.half {
		q := url.Values{"session": {o.Session}}
		if o.LastRx != nil {
			q.Set("last_rx_seq", fmt.Sprint(*o.LastRx))
		}
		target += "?" + q.Encode()
		wrote <- nil
	} else {
		hai, err := helloEnvelope(o.Session, o.LastRx)
		if err != nil {
			cancel()
			return nil, err
		}
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		body = pr
		// Written while the transport sends the request, so that its
		// look at the first body bytes finds them at once. Ends when the
		// transport has read the line or the pipe is closed.
		go func() {
			_, err := pw.Write(append(hai, '\n'))
			wrote <- err
		}()
	}
	fail := func(err error) (benchConn, error) {
		cancel()
		if pw != nil {
			_ = pw.CloseWithError(err)
		}
		<-wrote
		return nil, err
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, target, body)
	if err != nil {
		return fail(fmt.Errorf("stream request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+d.ep.token)
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	resp, err := d.hc.Do(req)
	if err != nil {
		return fail(fmt.Errorf("stream dial: %w", readErr(ctx, err)))
	}
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("stream dial: %w", httpRefusal(resp)))
	}
	if err := <-wrote; err != nil {
		_ = resp.Body.Close()
		return fail(fmt.Errorf("stream: send HAI: %w", err))
	}
	wrote <- nil // for fail below
	c := &streamConn{session: o.Session, resp: resp, rd: ndjson.NewReader(resp.Body, wsReadLimit), cancel: cancel, pw: pw, seq: 1}
	for {
		env, err := c.Read(ctx)
		if err != nil {
			_ = c.Close()
			return fail(fmt.Errorf("stream: waiting for HAI: %w", err))
		}
		switch env.Type {
		case haip.TypeHAI:
			return c, nil
		case haip.TypeError:
			_ = c.Close()
			return fail(handshakeError(env))
		}
	}
}

func (c *streamConn) Session() string { return c.session }

// Read returns the next line's envelope, answering PINGs in full duplex.
func (c *streamConn) Read(ctx context.Context) (*haip.Envelope, error) {
	c.w.watch(ctx, c.cancel)
	line, err := c.rd.Next()
	if err != nil {
		return nil, readErr(ctx, fmt.Errorf("stream read: %w", err))
	}
	env, err := haip.Decode(line)
	if err != nil {
		return nil, fmt.Errorf("bad envelope on line %d: %w", c.rd.Line(), err)
	}
	if env.Type == haip.TypePing && c.pw != nil {
		c.mu.Lock()
		c.seq++
		pong, err := pongFor(c.session, env, c.seq)
		if err == nil {
			_, err = c.pw.Write(append(pong, '\n'))
		}
		c.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("answer PING: %w", err)
		}
	}
	return env, nil
}

// Close ends the body and the request. Safe from any goroutine, more
// than once.
func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.cancel()
		if c.pw != nil {
			_ = c.pw.Close()
		}
		_ = c.resp.Body.Close()
	})
	return nil
}
