package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/ndjson"
)

// streamTransport is full-duplex NDJSON on one POST /haip/stream: the
// request body is a pipe that stays open (its first line is the HAI), the
// response streams the edge's envelopes.
type streamTransport struct {
	resp   *http.Response
	rd     *ndjson.Reader
	cancel func() // ends the request and the body
	pw     *io.PipeWriter
	buf    []byte         // write buffer; writes are serialised by Conn
	last   *haip.Envelope // the last envelope read (reader only)
	once   sync.Once
}

var _ transport = (*streamTransport)(nil)

// dialStream opens the request with hello as the body's first line.
func dialStream(ctx context.Context, o *Options, hello []byte) (*streamTransport, error) {
	u, err := endpointURL(o.URL, pathStream)
	if err != nil {
		return nil, err
	}
	session := ""
	if o.SessionInQuery {
		session = o.Session
	}
	pr, pw := io.Pipe()
	req, cancelReq, err := o.streamRequest(http.MethodPost, withQuery(u, "session", session, "token", o.queryToken(), "conversation", o.Conversation), pr)
	if err != nil {
		return nil, err
	}
	// The HTTP client waits for the body's writer to stop before it gives
	// up on a request, so ending the request also ends the body.
	cancel := func() {
		cancelReq()
		_ = pw.CloseWithError(errClosed)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	// The connection is the stream's for its whole life anyway; asking to
	// close it after the response also makes an HTTP/1.1 server answer a
	// refusal (401, 403, …) at once instead of first reading the rest of a
	// request body that never ends.
	req.Close = true
	// Written while the HTTP client sends the request, so that its look
	// at the first body bytes finds them at once. The goroutine ends when
	// the client has read the line or the pipe is closed; every way out
	// of this function waits for it.
	wrote := make(chan error, 1)
	go func() {
		_, err := pw.Write(append(hello, '\n'))
		wrote <- err
	}()
	resp, err := o.open(ctx, req, cancel)
	if err != nil {
		cancel()
		<-wrote
		return nil, err
	}
	if err := <-wrote; err != nil {
		cancel()
		_ = resp.Body.Close()
		return nil, fmt.Errorf("cannot send HAI: %w", err)
	}
	return &streamTransport{resp: resp, rd: ndjson.NewReader(resp.Body, int(o.readLimit())), cancel: cancel, pw: pw}, nil
}

// dialStreamHalf opens POST /haip/stream?session=… whose whole body is
// hello: the response streams on, and the client sends by POST.
func dialStreamHalf(ctx context.Context, o *Options, hello []byte) (*oneway, error) {
	u, err := endpointURL(o.URL, pathStream)
	if err != nil {
		return nil, err
	}
	body := bytes.NewReader(append(hello, '\n'))
	req, cancel, err := o.streamRequest(http.MethodPost, withQuery(u, "session", o.Session, "token", o.queryToken(), "conversation", o.Conversation), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	t, resp, err := o.openOneway(ctx, req, cancel)
	if err != nil {
		return nil, err
	}
	rd := ndjson.NewReader(resp.Body, int(o.readLimit()))
	var last []byte // the last line read (the stream goroutine's)
	t.start(func() (frame, error) {
		line, err := rd.Next()
		if err != nil {
			var env *haip.Envelope
			if last != nil {
				env, _ = haip.Decode(last)
			}
			return frame{}, streamEnd(env, fmt.Errorf("stream ended: %w", err))
		}
		last = append([]byte(nil), line...)
		return frame{data: last}, nil
	}, decodeLine)
	return t, nil
}

// decodeLine decodes an NDJSON line's envelope.
func decodeLine(f frame) (*haip.Envelope, error) {
	env, err := haip.Decode(f.data)
	if err != nil {
		return nil, fmt.Errorf("bad envelope in a line: %w", err)
	}
	return env, nil
}

// nextLine reads and decodes the next NDJSON line.
func nextLine(rd *ndjson.Reader) (*haip.Envelope, error) {
	line, err := rd.Next()
	if err != nil {
		return nil, fmt.Errorf("stream ended: %w", err)
	}
	env, err := haip.Decode(line)
	if err != nil {
		return nil, fmt.Errorf("bad envelope on line %d: %w", rd.Line(), err)
	}
	return env, nil
}

func (t *streamTransport) write(ctx context.Context, batch []outgoing) error {
	t.buf = t.buf[:0]
	for _, o := range batch {
		t.buf = append(append(t.buf, o.data...), '\n')
	}
	// A pipe write waits for the HTTP client to take the bytes, which
	// only the request's end interrupts.
	stop := context.AfterFunc(ctx, t.cancel)
	_, err := t.pw.Write(t.buf)
	stop()
	if err != nil {
		return fmt.Errorf("cannot send %s: %w", batch[0].typ, err)
	}
	return nil
}

func (t *streamTransport) writeBinary(context.Context, []byte, []byte) error {
	return errors.New("binary frames need the websocket transport")
}

func (t *streamTransport) read(ctx context.Context) (frame, error) {
	// Only the request's end interrupts a body read: tie it to ctx for
	// as long as the read lasts.
	stop := context.AfterFunc(ctx, t.cancel)
	env, err := nextLine(t.rd)
	stop()
	if err != nil {
		return frame{}, readErr(ctx, streamEnd(t.last, err))
	}
	t.last = env
	return frame{env: env}, nil
}

func (t *streamTransport) readBinary(context.Context) ([]byte, error) {
	return nil, errors.New("an envelope announced a binary frame, which this transport cannot carry")
}

func (t *streamTransport) binaryFrames() bool { return false }
func (t *streamTransport) answersPing() bool  { return true }

// close ends the body and the request: the edge keeps a stream whose
// body has ended, so ending the body alone would not end it.
func (t *streamTransport) close() error { return t.closeNow() }

func (t *streamTransport) closeNow() error {
	t.once.Do(func() {
		_ = t.pw.Close()
		t.cancel()
		_ = t.resp.Body.Close()
	})
	return nil
}

// queryToken is the token to put in a connection request's URL: none
// when it goes in the Authorization header.
func (o *Options) queryToken() string {
	if o.TokenInHeader {
		return ""
	}
	return o.Token
}

// streamRequest makes a connection request for u. It lives until cancel
// (Close), not until a dial's context.
func (o *Options) streamRequest(method string, u *url.URL, body io.Reader) (*http.Request, context.CancelFunc, error) {
	rctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(rctx, method, u.String(), body)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("cannot make the request: %w", redact(err, o.Token))
	}
	if o.TokenInHeader && o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	return req, cancel, nil
}

// open sends a connection request, giving up when ctx ends before the
// response's header; a refusal is an *HTTPError. On error the request is
// cancelled.
func (o *Options) open(ctx context.Context, req *http.Request, cancel context.CancelFunc) (*http.Response, error) {
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	resp, err := o.httpClient().Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cannot connect: %w", readErr(ctx, redact(err, o.Token)))
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		return nil, httpRefusal(resp)
	}
	return resp, nil
}

// poster sends the client's envelopes for a one-way transport: POST
// /haip/messages with the token in the Authorization header.
// openOneway opens a one-way stream's request (open), and the poster
// that carries the client's half: the connection's two ends.
func (o *Options) openOneway(ctx context.Context, req *http.Request, cancel context.CancelFunc) (*oneway, *http.Response, error) {
	resp, err := o.open(ctx, req, cancel)
	if err != nil {
		return nil, nil, err
	}
	p, err := o.poster()
	if err != nil {
		cancel()
		_ = resp.Body.Close()
		return nil, nil, err
	}
	return newOneway(o.Session, p, resp, cancel), resp, nil
}

func (o *Options) poster() (*poster, error) {
	u, err := endpointURL(o.URL, pathMessages)
	if err != nil {
		return nil, err
	}
	u.RawQuery = ""
	return &poster{hc: o.httpClient(), url: u.String(), token: o.Token}, nil
}

func (o *Options) httpClient() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return http.DefaultClient
}

func (o *Options) readLimit() int64 {
	if o.ReadLimit > 0 {
		return o.ReadLimit
	}
	return defaultReadLimit
}
