package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/haipfabric/haipfabric/haip"
)

// postResult is the edge's answer to one POSTed envelope (the fields of
// edge.PostResult the client uses).
type postResult struct {
	ID      string             `json:"id"`
	Status  string             `json:"status"`
	Replies []json.RawMessage  `json:"replies"`
	Error   *haip.ErrorPayload `json:"error"`
}

// maxPostAnswer bounds the body of a POST's answer the client reads: up
// to 1,000 results, or a replay of up to 1,000 messages.
const maxPostAnswer = 64 << 20

// poster sends envelopes by POST /haip/messages: the client→server half
// of the one-way transports. It is safe for concurrent use.
type poster struct {
	hc    *http.Client
	url   string
	token string
}

// post sends batch in one request and returns one result per envelope,
// in order. A refused request is an *HTTPError.
func (p *poster) post(ctx context.Context, batch []outgoing) ([]postResult, error) {
	body, ctype := batch[0].data, "application/json"
	if len(batch) > 1 {
		var b bytes.Buffer
		for _, o := range batch {
			b.Write(o.data)
			b.WriteByte('\n')
		}
		body, ctype = b.Bytes(), "application/x-ndjson"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("cannot make a POST: %w", err)
	}
	req.Header.Set("Content-Type", ctype)
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot POST %s: %w", batch[0].typ, redact(err, p.token))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, httpRefusal(resp)
	}
	defer resp.Body.Close()
	var answer struct {
		Results []postResult `json:"results"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPostAnswer)).Decode(&answer); err != nil {
		return nil, fmt.Errorf("cannot read the POST's answer: %w", err)
	}
	if len(answer.Results) != len(batch) {
		return nil, fmt.Errorf("the POST's answer has %d results for %d envelopes", len(answer.Results), len(batch))
	}
	return answer.Results, nil
}

// oneway is the part of the SSE and half-duplex stream transports that
// is the same for both: a goroutine reads the response stream into in,
// and what the edge answers to POSTs (refusals as ERROR, PONG, TOOL_LIST
// and TOOL_SCHEMA answers, replayed messages) is queued in replies; read
// takes replies first, then the stream.
//
// The reader goroutine is the transport's: it starts in start and ends
// when the request does (close), which waits for it.
type oneway struct {
	session string
	post    *poster
	resp    *http.Response
	cancel  context.CancelFunc // ends the request

	in   chan frame    // from the reader goroutine; closed when it ends
	stop chan struct{} // closed by close: the reader stops handing over
	done chan struct{} // closed when the reader goroutine has returned
	err  error         // why the stream ended; written before in is closed

	mu      sync.Mutex
	replies []frame       // POST answers not yet read, in order
	notify  chan struct{} // one token: replies has something
	once    sync.Once
}

// onewayBuffer is how many frames the reader goroutine may read ahead of
// Read; the edge's credit and the socket bound the rest.
const onewayBuffer = 64

func newOneway(session string, p *poster, resp *http.Response, cancel context.CancelFunc) *oneway {
	return &oneway{session: session, post: p, resp: resp, cancel: cancel,
		in: make(chan frame, onewayBuffer), stop: make(chan struct{}), done: make(chan struct{}), notify: make(chan struct{}, 1)}
}

// start runs next on the reader goroutine until it fails; end turns that
// failure into the stream's error.
func (o *oneway) start(next func() (frame, error)) {
	go func() {
		defer close(o.done)
		defer close(o.in)
		for {
			f, err := next()
			if err != nil {
				o.err = err
				return
			}
			select {
			case o.in <- f:
			case <-o.stop:
				o.err = errClosed
				return
			}
		}
	}()
}

// errClosed is what reads return once the client closed the connection.
var errClosed = errors.New("connection closed by the client")

func (o *oneway) write(ctx context.Context, batch []outgoing) error {
	// POSTs need no stream, but a connection that has ended sends nothing,
	// as on the other transports.
	select {
	case <-o.stop:
		return errClosed
	case <-o.done:
		return fmt.Errorf("connection ended: %w", o.err)
	default:
	}
	results, err := o.post.post(ctx, batch)
	if err != nil {
		return err
	}
	var got []frame
	for i, r := range results {
		if r.Status == "error" && r.Error != nil {
			env, err := haip.New(o.session, haip.ChannelSystem, haip.TypeError, *r.Error)
			if err != nil {
				return fmt.Errorf("cannot build the ERROR of a refused %s: %w", batch[i].typ, err)
			}
			got = append(got, frame{env: env, local: true})
			continue
		}
		// A replay's answers are log messages with their own seqs; the
		// rest (PONG, TOOL_LIST, TOOL_SCHEMA) are connection-scoped.
		local := batch[i].typ != haip.TypeReplayRequest
		for _, raw := range r.Replies {
			env, err := haip.Decode(raw)
			if err != nil {
				return fmt.Errorf("bad envelope in the answer to %s: %w", batch[i].typ, err)
			}
			got = append(got, frame{env: env, local: local})
		}
	}
	if len(got) > 0 {
		o.mu.Lock()
		o.replies = append(o.replies, got...)
		o.mu.Unlock()
		select {
		case o.notify <- struct{}{}:
		default:
		}
	}
	return nil
}

func (o *oneway) writeBinary(context.Context, []byte, []byte) error {
	return errors.New("binary frames need the websocket transport")
}

func (o *oneway) read(ctx context.Context) (frame, error) {
	for {
		o.mu.Lock()
		if len(o.replies) > 0 {
			f := o.replies[0]
			o.replies[0] = frame{}
			o.replies = o.replies[1:]
			o.mu.Unlock()
			return f, nil
		}
		o.mu.Unlock()
		select {
		case f, ok := <-o.in:
			if !ok {
				return frame{}, o.err
			}
			return f, nil
		case <-o.notify:
		case <-ctx.Done():
			_ = o.closeNow()
			return frame{}, ctx.Err()
		}
	}
}

func (o *oneway) readBinary(context.Context) ([]byte, error) {
	return nil, errors.New("an envelope announced a binary frame, which this transport cannot carry")
}

func (o *oneway) binaryFrames() bool { return false }

// The edge does not listen for PONG on a one-way stream.
func (o *oneway) answersPing() bool { return false }

// close ends the request (a one-way stream has no close handshake) and
// waits for the reader goroutine.
func (o *oneway) close() error { return o.closeNow() }

func (o *oneway) closeNow() error {
	o.once.Do(func() {
		close(o.stop)
		o.cancel()
		_ = o.resp.Body.Close()
	})
	<-o.done
	return nil
}
