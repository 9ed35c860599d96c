package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	defer resp.Body.Close()
	var answer struct {
		Results []postResult `json:"results"`
	}
	if resp.StatusCode != http.StatusOK {
		// A POST whose every envelope was refused has the first refusal's
		// status, and every envelope's result beside the error: those
		// are the answers, as after a 200.
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxPostAnswer))
		if json.Unmarshal(data, &answer) == nil && len(answer.Results) == len(batch) && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return answer.Results, nil
		}
		return nil, &HTTPError{Status: resp.StatusCode, Body: strings.TrimSpace(string(data[:min(len(data), maxRefusalBody)]))}
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
// is the same for both. A goroutine reads the response stream and queues
// its frames, undecoded; what the edge answers to POSTs (refusals as
// ERROR, PONG, TOOL_LIST and TOOL_SCHEMA answers, replayed messages) joins
// the same queue, in the order it arrives. read takes from the queue and
// decodes, so the decoding is the reader's work and the stream goroutine
// runs ahead (at most onewayBuffer frames) with little to do.
//
// The stream goroutine is the transport's: it starts in start and ends
// when the request does (close), which waits for it.
type oneway struct {
	session string
	post    *poster
	resp    *http.Response
	cancel  context.CancelFunc // ends the request
	decode  func(frame) (*haip.Envelope, error)

	stop chan struct{} // closed by close
	done chan struct{} // closed when the stream goroutine has returned

	mu      sync.Mutex
	queue   []frame // frames not yet read, queue[head:]
	head    int
	ended   bool          // the stream has ended: err says why
	err     error         // under mu
	waiting bool          // the stream goroutine waits for room
	notify  chan struct{} // one token: the queue grew or the stream ended
	room    chan struct{} // one token: the queue is down to half, after waiting
	once    sync.Once
}

// onewayBuffer is how many stream frames the stream goroutine may read
// ahead of Read; the edge's credit and the socket bound the rest.
const onewayBuffer = 64

func newOneway(session string, p *poster, resp *http.Response, cancel context.CancelFunc) *oneway {
	return &oneway{session: session, post: p, resp: resp, cancel: cancel,
		stop: make(chan struct{}), done: make(chan struct{}), notify: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// signal leaves a token in ch unless one is there.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// start reads the stream with next on a goroutine of its own until next
// fails, and decode turns each frame read into an envelope (on the
// reader's side).
func (o *oneway) start(next func() (frame, error), decode func(frame) (*haip.Envelope, error)) {
	o.decode = decode
	go func() {
		defer close(o.done)
		for {
			f, err := next()
			o.mu.Lock()
			if err != nil {
				o.ended, o.err = true, err
				o.mu.Unlock()
				signal(o.notify)
				return
			}
			o.queue = append(o.queue, f)
			o.mu.Unlock()
			signal(o.notify)
			if !o.waitRoom() {
				return
			}
		}
	}()
}

// waitRoom holds the stream goroutine while the queue is full, until
// read has taken half of it (so that the two goroutines do not wake each
// other for every frame); false means the connection was closed meanwhile.
func (o *oneway) waitRoom() bool {
	o.mu.Lock()
	if len(o.queue)-o.head < onewayBuffer {
		o.mu.Unlock()
		return true
	}
	o.waiting = true
	o.mu.Unlock()
	select {
	case <-o.room:
		return true
	case <-o.stop:
		o.mu.Lock()
		o.ended, o.err = true, errClosed
		o.mu.Unlock()
		return false
	}
}

// errClosed is what reads return once the client closed the connection.
var errClosed = errors.New("connection closed by the client")

func (o *oneway) write(ctx context.Context, batch []outgoing) error {
	// POSTs need no stream, but a connection that has ended sends nothing,
	// as on the other transports.
	o.mu.Lock()
	ended, why := o.ended, o.err
	o.mu.Unlock()
	if ended {
		return fmt.Errorf("connection ended: %w", why)
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
		o.queue = append(o.queue, got...)
		o.mu.Unlock()
		signal(o.notify)
	}
	return nil
}

func (o *oneway) read(ctx context.Context) (frame, error) {
	for {
		o.mu.Lock()
		if o.head < len(o.queue) {
			f := o.queue[o.head]
			o.queue[o.head] = frame{}
			if o.head++; o.head == len(o.queue) {
				o.queue, o.head = o.queue[:0], 0
			}
			wake := o.waiting && len(o.queue)-o.head <= onewayBuffer/2
			if wake {
				o.waiting = false
			}
			o.mu.Unlock()
			if wake {
				o.room <- struct{}{} // the one token of this wait
			}
			if f.env == nil {
				env, err := o.decode(f)
				if err != nil {
					_ = o.closeNow()
					return frame{}, err
				}
				f.env = env
			}
			return f, nil
		}
		ended, err := o.ended, o.err
		o.mu.Unlock()
		if ended {
			return frame{}, err
		}
		select {
		case <-o.notify:
		case <-ctx.Done():
			_ = o.closeNow()
			return frame{}, ctx.Err()
		}
	}
}

func (o *oneway) writeBinary(context.Context, []byte, []byte) error {
	return errors.New("binary frames need the websocket transport")
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
