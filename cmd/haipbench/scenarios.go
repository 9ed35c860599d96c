package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// allScenarios is the order of -scenario all.
var allScenarios = []string{"baseline", "fanout", "latency", "resume", "conns", "tools"}

// bench runs scenarios on one fabric; the baseline is measured once per
// run and is the denominator of every ratio.
type bench struct {
	cfg  config
	f    *fabric
	dial dialer // -transport, spread over the fabric's edges
	base *Result
	out  io.Writer
}

// newBench makes the dialer of -transport over every edge of f.
func newBench(cfg config, f *fabric) (*bench, error) {
	m := &multiDialer{}
	for _, ep := range f.eps {
		d, err := newDialer(cfg.Transport, ep, f.hc)
		if err != nil {
			return nil, err
		}
		m.ds = append(m.ds, d)
	}
	if len(m.ds) == 0 {
		return nil, errors.New("the fabric has no edge")
	}
	return &bench{cfg: cfg, f: f, dial: m}, nil
}

// baseRead is the raw ordered-consumer read rate of this run's baseline.
func (b *bench) baseRead() float64 {
	if b.base == nil {
		return 0
	}
	return b.base.get(rowRawRead)
}

func (b *bench) runScenarios(ctx context.Context, out io.Writer) ([]*Result, error) {
	b.out = out
	names := b.cfg.scenarios()
	var results []*Result
	for _, name := range names {
		// Every scenario that reports a ratio needs the baseline of this run.
		if b.base == nil && name != "conns" && b.f.nc != nil {
			r, err := b.scenario(ctx, "baseline")
			if err != nil {
				return results, err
			}
			b.base = r
			results = append(results, r)
			if name == "baseline" {
				continue
			}
		}
		r, err := b.scenario(ctx, name)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

// scenario runs one scenario under the -duration cap and prints its table.
func (b *bench) scenario(ctx context.Context, name string) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Duration)
	defer cancel()
	r := &Result{Scenario: name, Mode: b.f.mode, Params: map[string]any{"size": b.cfg.Size}}
	switch name {
	case "fanout", "latency", "resume", "conns":
		r.Params["transport"] = b.cfg.Transport
	}
	if len(b.f.eps) > 1 {
		r.Params["edges"] = len(b.f.eps)
	}
	var err error
	switch name {
	case "baseline":
		err = b.baseline(ctx, r)
	case "fanout":
		err = b.fanout(ctx, r)
	case "latency":
		err = b.latency(ctx, r)
	case "resume":
		err = b.resume(ctx, r)
	case "conns":
		err = b.conns(ctx, r)
	case "tools":
		err = b.tools(ctx, r)
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (stopped by -duration %s)", err, b.cfg.Duration)
		}
		return nil, fmt.Errorf("scenario %s: %w", name, err)
	}
	r.print(b.out)
	return r, nil
}

// Row names the test and the docs refer to.
const (
	rowRawPublish   = "raw JetStream async publish"
	rowRawRead      = "raw JetStream ordered-consumer read"
	rowMsgBytes     = "stored message size"
	rowDelivered    = "delivered to clients"
	rowAppended     = "agent appends (streams.Log.Append)"
	rowP50          = "latency p50"
	rowP99          = "latency p99"
	rowP999         = "latency p99.9"
	rowMax          = "latency max"
	rowAppendP50    = "of which the Append p50"
	rowAppendP99    = "of which the Append p99"
	rowRawP50       = "raw JetStream latency p50"
	rowRawP99       = "raw JetStream latency p99"
	rowRawP999      = "raw JetStream latency p99.9"
	rowAchievedRate = "achieved append rate"
	rowBacklogFill  = "backlog fill (Append)"
	rowCatchup      = "catch-up delivered (total)"
	rowRSSPerConn   = "RSS growth per connection"
	rowHeapPerConn  = "Go heap growth per connection"
	rowGorPerConn   = "goroutines per connection"
	rowDialRate     = "connections opened"
	rowConns        = "idle connections held"
)

// baselineStallWait is how long a baseline publish may wait for room
// among the outstanding acks.
const baselineStallWait = 30 * time.Second

// baseline: raw JetStream on the same server, same message size: async
// publish to a dedicated subject of HAIP_SESSIONS, then an ordered
// consumer reading those messages back.
func (b *bench) baseline(ctx context.Context, r *Result) error {
	if err := b.f.needNATS(); err != nil {
		return err
	}
	n := b.cfg.Baseline
	r.Params["messages"] = n
	subj := "haip.session.bench-raw-" + strings.ReplaceAll(haip.NewUUID(), "-", "")[:12] + ".out"
	body, err := b.sampleBody()
	if err != nil {
		return err
	}
	js := b.f.rawJS
	defer b.purge(ctx, subj)

	start := time.Now()
	for i := range n {
		// A loaded server makes the client wait for acks rather than fail.
		if _, err := js.PublishAsync(subj, body, jetstream.WithStallWait(baselineStallWait)); err != nil {
			return fmt.Errorf("raw publish %d: %w", i, err)
		}
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return fmt.Errorf("raw publish acks: %w", ctx.Err())
	}
	pub := time.Since(start)

	cons, err := js.OrderedConsumer(ctx, streams.SessionStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("ordered consumer: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	start = time.Now()
	for i := range n {
		if _, err := it.Next(); err != nil {
			return fmt.Errorf("ordered consumer read %d of %d: %w", i, n, err)
		}
	}
	read := time.Since(start)
	r.add(rowRawPublish, rate(n, pub), "msg/s")
	r.addRatio(rowRawRead, rate(n, read), "msg/s", rate(n, read))
	r.add(rowMsgBytes, float64(len(body)), "bytes")
	r.note("subject %s (purged afterwards); body = an encoded TEXT_MESSAGE_PART envelope with %d bytes of text, as the log stores it", subj, b.cfg.Size)
	return nil
}

// fanout: N sessions with one WebSocket client each; W agent goroutines
// append M messages per session (round robin over their sessions); each
// client checks it gets seqs 1..M densely.
func (b *bench) fanout(ctx context.Context, r *Result) error {
	if err := b.f.needNATS(); err != nil {
		return err
	}
	n, m, w, k := b.cfg.Sessions, b.cfg.messages(defaultFanoutMessages), min(b.cfg.Writers, b.cfg.Sessions), b.cfg.PerSession
	r.Params["sessions"], r.Params["messages_per_session"], r.Params["writers"], r.Params["clients_per_session"] = n, m, w, k
	r.Params["session_writers"] = b.cfg.SessionWriters
	cs, err := b.dialAll(ctx, n, nil)
	if err != nil {
		return err
	}
	defer closeAll(cs)
	// More readers of the same sessions, from now on (all dialled before
	// the first append).
	readersOf := cs
	for range k - 1 {
		for _, c := range cs {
			more, err := b.dial.dial(ctx, dialOptions{Session: c.Session()})
			if err != nil {
				return fmt.Errorf("dial another client of %s: %w", c.Session(), err)
			}
			defer more.Close()
			readersOf = append(readersOf, more)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	start := time.Now()
	readers := make(chan error, len(readersOf))
	for _, c := range readersOf {
		go func() { readers <- readDense(ctx, c, 1, uint64(m), nil) }()
	}
	appendDone := make(chan time.Duration, 1)
	go func() {
		err := b.concurrentAgents(ctx, cs, w, b.cfg.SessionWriters, m)
		if err != nil {
			cancel(err)
		}
		appendDone <- time.Since(start)
	}()
	for range readersOf {
		if err := <-readers; err != nil {
			return errors.Join(err, context.Cause(ctx))
		}
	}
	elapsed := time.Since(start)
	appended := <-appendDone
	total := n * m * k
	r.addRatio(rowDelivered, rate(total, elapsed), "msg/s", b.baseRead())
	r.addRatio(rowAppended, rate(n*m, appended), "msg/s", b.baseRead())
	r.add("messages delivered, dense", float64(total), "msgs")
	r.add("elapsed", elapsed.Seconds(), "s")
	b.noteSelf(r)
	return nil
}

// concurrentAgents is agents with s goroutines sharing each agent
// goroutine's sessions: together they append m messages to each session,
// s at a time, in an order of their own (the seqs are dense whatever it).
func (b *bench) concurrentAgents(ctx context.Context, cs []benchConn, w, s, m int) error {
	if s <= 1 {
		return b.agents(ctx, cs, w, m, nil, nil)
	}
	errs := make(chan error, s)
	for j := range s {
		share := m / s
		if j < m%s {
			share++
		}
		go func() { errs <- b.agents(ctx, cs, w, share, nil, nil) }()
	}
	var first error
	for range s {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// agents runs w goroutines appending m messages to each session of cs;
// goroutine i owns sessions i, i+w, … and appends one message to each per
// round. pace, if set, is called before each append and may block;
// appended, if set, gets each append's duration (from goroutine i).
func (b *bench) agents(ctx context.Context, cs []benchConn, w, m int, pace func(worker int) error, appended func(worker int, d time.Duration)) error {
	errs := make(chan error, w)
	for i := range w {
		go func() {
			var mine []benchConn
			for j := i; j < len(cs); j += w {
				mine = append(mine, cs[j])
			}
			ids := make([]string, len(mine))
			for k := range ids {
				ids[k] = haip.NewUUID()
			}
			for range m {
				for k, c := range mine {
					if pace != nil {
						if err := pace(i); err != nil {
							errs <- err
							return
						}
					}
					began := time.Now()
					if err := b.appendPart(ctx, c.Session(), ids[k]); err != nil {
						errs <- err
						return
					}
					if appended != nil {
						appended(i, time.Since(began))
					}
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range w {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// latency: a fixed total append rate across N sessions, paced by a ticker
// in each agent goroutine; the append start time travels in the text and
// the client computes append → receive.
func (b *bench) latency(ctx context.Context, r *Result) error {
	if err := b.f.needNATS(); err != nil {
		return err
	}
	n, w, rt := b.cfg.Sessions, min(b.cfg.Writers, b.cfg.Sessions), b.cfg.Rate
	per := max(1, b.cfg.messages(defaultLatencyMessages)/n)
	total := per * n
	r.Params["sessions"], r.Params["messages"], r.Params["rate"], r.Params["writers"] = n, total, rt, w
	cs, err := b.dialAll(ctx, n, nil)
	if err != nil {
		return err
	}
	defer closeAll(cs)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	lats := make([][]time.Duration, n)
	readers := make(chan error, n)
	for i, c := range cs {
		lats[i] = make([]time.Duration, 0, per)
		go func() {
			readers <- readDense(ctx, c, 1, uint64(per), func(env *haip.Envelope, at time.Time) error {
				sent, err := sentAt(env)
				if err != nil {
					return err
				}
				lats[i] = append(lats[i], at.Sub(sent))
				return nil
			})
		}()
	}
	pace, stopPacing := newPacing(ctx, rt, n, w)
	defer stopPacing()
	start := time.Now()
	appendLats := make([][]time.Duration, w)
	appendDone := make(chan time.Duration, 1)
	go func() {
		if err := b.agents(ctx, cs, w, per, pace, func(i int, d time.Duration) { appendLats[i] = append(appendLats[i], d) }); err != nil {
			cancel(err)
		}
		appendDone <- time.Since(start)
	}()
	for range n {
		if err := <-readers; err != nil {
			return errors.Join(err, context.Cause(ctx))
		}
	}
	appended := <-appendDone
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sortDurations(all)
	closeAll(cs)
	var appends []time.Duration
	for _, l := range appendLats {
		appends = append(appends, l...)
	}
	sortDurations(appends)

	// The same load on raw JetStream, now that the clients are gone.
	raw, err := b.rawLatency(ctx, n, w, per, rt)
	if err != nil {
		return fmt.Errorf("raw JetStream latency: %w", err)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.add(rowP50, ms(percentile(all, 0.50)), "ms")
	r.add(rowP99, ms(percentile(all, 0.99)), "ms")
	r.add(rowP999, ms(percentile(all, 0.999)), "ms")
	r.add(rowMax, ms(all[len(all)-1]), "ms")
	r.add(rowAchievedRate, rate(total, appended), "msg/s")
	r.add("messages received, dense", float64(len(all)), "msgs")
	r.add(rowAppendP50, ms(percentile(appends, 0.50)), "ms")
	r.add(rowAppendP99, ms(percentile(appends, 0.99)), "ms")
	r.add(rowRawP50, ms(percentile(raw, 0.50)), "ms")
	r.add(rowRawP99, ms(percentile(raw, 0.99)), "ms")
	r.add(rowRawP999, ms(percentile(raw, 0.999)), "ms")
	r.note("latency = client receive − start of the agent's Append (CAS round trip, edge hub, WebSocket write, client decode); the Append rows are its compare-and-set round trip alone")
	r.note("raw = the same rate, writers and sessions on raw JetStream: synchronous publish (no headers, no compare-and-set) → ordered consumer; p99 is %.1f× raw", ms(percentile(all, 0.99))/max(ms(percentile(raw, 0.99)), 1e-9))
	b.noteSelf(r)
	return nil
}

// purge removes a raw scenario's messages (subjects matching filter) from
// the session stream, so that nothing is left behind on an external
// server; it runs even when ctx has ended.
func (b *bench) purge(ctx context.Context, filter string) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if s, err := b.f.rawJS.Stream(pctx, streams.SessionStream); err == nil {
		_ = s.Purge(pctx, jetstream.WithPurgeSubject(filter))
	}
}

// newPacing paces w goroutines sharing a total rate over n sessions: each
// owns ~n/w of them and may go on while sent < elapsed × its share, and
// waits for a 1 ms ticker otherwise. pace(i) blocks goroutine i; stop
// releases the tickers.
func newPacing(ctx context.Context, rt, n, w int) (pace func(worker int) error, stop func()) {
	type pacer struct {
		share float64
		sent  int
		tick  *time.Ticker
	}
	pacers := make([]*pacer, w)
	for i := range w {
		owned := (n - i + w - 1) / w
		pacers[i] = &pacer{share: float64(rt) * float64(owned) / float64(n), tick: time.NewTicker(time.Millisecond)}
	}
	start := time.Now()
	pace = func(i int) error {
		p := pacers[i]
		for float64(p.sent) >= time.Since(start).Seconds()*p.share {
			select {
			case <-p.tick.C:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		p.sent++
		return nil
	}
	stop = func() {
		for _, p := range pacers {
			p.tick.Stop()
		}
	}
	return pace, stop
}

// rawLatency is the latency scenario's load on raw JetStream, in the same
// run: w goroutines publish synchronously (no headers, no compare-and-set)
// per messages to each of n subjects of HAIP_SESSIONS, at the same total
// rate and message size; one ordered consumer on all of them measures
// publish start → receive. The subjects are purged afterwards.
func (b *bench) rawLatency(ctx context.Context, n, w, per, rt int) ([]time.Duration, error) {
	js := b.f.rawJS
	prefix := "haip.session.bench-rawlat-" + strings.ReplaceAll(haip.NewUUID(), "-", "")[:12] + "."
	defer b.purge(ctx, prefix+"*")
	size, err := b.sampleBody()
	if err != nil {
		return nil, err
	}
	cons, err := js.OrderedConsumer(ctx, streams.SessionStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + "*"}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	defer it.Stop()
	stopIt := context.AfterFunc(ctx, it.Stop)
	defer stopIt()
	total := n * per
	lats := make([]time.Duration, 0, total)
	received := make(chan error, 1)
	go func() {
		for range total {
			m, err := it.Next()
			if err != nil {
				received <- err
				return
			}
			at := time.Now()
			ns, err := strconv.ParseInt(string(m.Data()[:19]), 10, 64)
			if err != nil {
				received <- fmt.Errorf("raw message without its send time: %w", err)
				return
			}
			lats = append(lats, at.Sub(time.Unix(0, ns)))
		}
		received <- nil
	}()

	pace, stopPacing := newPacing(ctx, rt, n, w)
	defer stopPacing()
	published := make(chan error, w)
	for i := range w {
		go func() {
			body := make([]byte, len(size))
			for k := range body {
				body[k] = 'x'
			}
			for range per {
				for j := i; j < n; j += w {
					if err := pace(i); err != nil {
						published <- err
						return
					}
					copy(body, fmt.Sprintf("%019d", time.Now().UnixNano()))
					if _, err := js.Publish(ctx, prefix+strconv.Itoa(j), body); err != nil {
						published <- fmt.Errorf("raw publish: %w", err)
						return
					}
				}
			}
			published <- nil
		}()
	}
	var first error
	for range w {
		if err := <-published; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		it.Stop()
		<-received
		return nil, first
	}
	if err := <-received; err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	sortDurations(lats)
	return lats, nil
}

// resume: one session with a backlog of M messages; K clients dial at once
// with last_rx_seq 0 and each reads seqs 1..M densely.
func (b *bench) resume(ctx context.Context, r *Result) error {
	if err := b.f.needNATS(); err != nil {
		return err
	}
	m, k := b.cfg.messages(defaultResumeMessages), b.cfg.Clients
	r.Params["backlog"], r.Params["clients"] = m, k
	session := "bench-resume-" + strings.ReplaceAll(haip.NewUUID(), "-", "")[:12]
	msgID := haip.NewUUID()
	start := time.Now()
	for i := range m {
		if err := b.appendPart(ctx, session, msgID); err != nil {
			return fmt.Errorf("backlog %d: %w", i, err)
		}
	}
	r.add(rowBacklogFill, rate(m, time.Since(start)), "msg/s")

	zero := uint64(0)
	errs := make(chan error, k)
	start = time.Now()
	for range k {
		go func() {
			c, err := b.dial.dial(ctx, dialOptions{Session: session, LastRx: &zero})
			if err != nil {
				errs <- fmt.Errorf("dial: %w", err)
				return
			}
			defer c.Close()
			errs <- readDense(ctx, c, 1, uint64(m), nil)
		}()
	}
	var first error
	for range k {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	elapsed := time.Since(start)
	r.addRatio(rowCatchup, rate(m*k, elapsed), "msg/s", b.baseRead())
	if k > 1 {
		r.addRatio("catch-up per client", rate(m, elapsed), "msg/s", b.baseRead())
	}
	r.add("messages delivered, dense", float64(m*k), "msgs")
	r.add("elapsed (dial + read)", elapsed.Seconds(), "s")
	b.noteSelf(r)
	return nil
}

// noteSelf records that both ends share the process and the CPUs.
func (b *bench) noteSelf(r *Result) {
	if b.f.mode == modeSelf {
		r.note("-self: nats-server, edge, agent side and clients share this process and its CPUs")
	}
}

// appendPart appends one TEXT_MESSAGE_PART of -size bytes to session's
// out log, as an agent does. The text starts with the append start time
// (see sentAt).
func (b *bench) appendPart(ctx context.Context, session, msgID string) error {
	now := time.Now()
	env, err := haip.New(session, haip.ChannelAgent, haip.TypeTextMessagePart,
		haip.TextMessagePartPayload{MessageID: msgID, Text: b.text(now)})
	if err != nil {
		return err
	}
	if _, err = b.f.log.AppendEnvelope(ctx, session, streams.Out, env); err != nil {
		return fmt.Errorf("append to %s: %w", session, err)
	}
	return nil
}

// text is "t=<unix ns>;" padded with x to -size bytes.
func (b *bench) text(now time.Time) string {
	p := fmt.Sprintf("t=%d;", now.UnixNano())
	if len(p) >= b.cfg.Size {
		return p
	}
	return p + strings.Repeat("x", b.cfg.Size-len(p))
}

// sentAt reads the time text put into env's text.
func sentAt(env *haip.Envelope) (time.Time, error) {
	var p haip.TextMessagePartPayload
	if err := env.DecodePayload(&p); err != nil {
		return time.Time{}, err
	}
	var ns int64
	if _, err := fmt.Sscanf(p.Text, "t=%d;", &ns); err != nil {
		return time.Time{}, fmt.Errorf("no send time in seq %d: %w", env.Seq, err)
	}
	return time.Unix(0, ns), nil
}

// sampleBody is a stored log message of this run's size (for the baseline).
func (b *bench) sampleBody() ([]byte, error) {
	env, err := haip.New("bench-raw", haip.ChannelAgent, haip.TypeTextMessagePart,
		haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: b.text(time.Now())})
	if err != nil {
		return nil, err
	}
	env.Seq = 1
	return haip.Encode(env)
}

// readDense reads until seq last, failing on any gap or repeat: log
// messages must arrive as next, next+1, …, last. Control messages (PING,
// FLOW_UPDATE, …) are skipped. on, if set, sees each log message.
func readDense(ctx context.Context, c benchConn, next, last uint64, on func(*haip.Envelope, time.Time) error) error {
	for next <= last {
		env, err := c.Read(ctx)
		if err != nil {
			return fmt.Errorf("session %s: read after seq %d of %d: %w", c.Session(), next-1, last, err)
		}
		at := time.Now()
		if client.IsControl(env.Type) {
			continue
		}
		if uint64(env.Seq) != next {
			return fmt.Errorf("session %s: got seq %d, want %d (not dense)", c.Session(), env.Seq, next)
		}
		if on != nil {
			if err := on(env, at); err != nil {
				return err
			}
		}
		next++
	}
	return nil
}

// dialConcurrency bounds simultaneous handshakes.
const dialConcurrency = 16

// dialAll opens n handshaken connections of -transport, each on a fresh
// session.
func (b *bench) dialAll(ctx context.Context, n int, lastRx *uint64) ([]benchConn, error) {
	return dialMany(ctx, b.dial, n, lastRx)
}

// dialMany opens n handshaken connections with d, each on a fresh session,
// dialConcurrency at a time.
func dialMany[C benchConn](ctx context.Context, d interface {
	dial(context.Context, dialOptions) (C, error)
}, n int, lastRx *uint64) ([]C, error) {
	cs := make([]C, n)
	ok := make([]bool, n)
	sem := make(chan struct{}, dialConcurrency)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			c, err := d.dial(ctx, dialOptions{LastRx: lastRx})
			if err != nil {
				errs <- fmt.Errorf("dial %d of %d: %w", i+1, n, err)
				return
			}
			cs[i], ok[i] = c, true
			errs <- nil
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		for i, c := range cs {
			if ok[i] {
				_ = c.Close()
			}
		}
		return nil, first
	}
	return cs, nil
}

// closeAll drops every connection.
func closeAll[C benchConn](cs []C) {
	for _, c := range cs {
		_ = c.Close()
	}
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
