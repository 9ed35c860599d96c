package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
)

// Defaults and bounds.
const (
	// defaultURL is where `go run ./cmd/edge` listens.
	defaultURL = "ws://127.0.0.1:8080/haip/websocket"
	// tokenEnv names the environment variable read when -token is empty.
	tokenEnv = "HAIP_TOKEN"
	// maxTries bounds the reconnections after one connection loss.
	maxTries = 5
	// backoffBase is the wait before the first automatic reconnection; it
	// doubles on each further try, up to backoffMax.
	backoffBase = 200 * time.Millisecond
	backoffMax  = 5 * time.Second
	// dialTimeout bounds one connection attempt, handshake included.
	dialTimeout = 10 * time.Second
	// sendTimeout bounds sending one user message or request.
	sendTimeout = 10 * time.Second
	// feedBuffer is how many received envelopes may wait for printing.
	feedBuffer = 64
	// maxLineBytes is the longest stdin line accepted.
	maxLineBytes = 1 << 20
)

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

// config is the command line.
type config struct {
	// URL is the edge: its WebSocket endpoint, or any URL of it (see
	// client.Options.URL).
	URL string
	// Transport is the client transport (client.Transports).
	Transport string
	// Token is the JWT; empty means $HAIP_TOKEN.
	Token string
	// Session is the session to join; empty means a new one.
	Session string
	// LastSeq resumes the session after this seq; nil means "from now on".
	LastSeq *uint64
	// Quiet prints only the agent's text and errors.
	Quiet bool
	// Verbose also prints control messages.
	Verbose bool
}

// parseFlags reads args (without the program name). Mistakes wrap
// errUsage; -h returns flag.ErrHelp after printing the usage on stderr.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("haipchat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", defaultURL, "edge `URL`: its WebSocket endpoint, or http(s)://HOST:PORT (every transport finds its path from it)")
	fs.StringVar(&c.Transport, "transport", client.TransportWebSocket, "client transport: "+strings.Join(client.Transports(), ", "))
	fs.StringVar(&c.Token, "token", "", "JWT to present (default $"+tokenEnv+")")
	fs.StringVar(&c.Session, "session", "", "session `id` to join (default: a new session)")
	fs.Func("last-seq", "resume the session after seq `N` (needs -session)", func(s string) error {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return errors.New("want a seq number (0 or more)")
		}
		c.LastSeq = &v
		return nil
	})
	fs.BoolVar(&c.Quiet, "quiet", false, "print only the agent's streamed text and errors")
	fs.BoolVar(&c.Verbose, "v", false, "also print control messages (PING, PONG, FLOW_UPDATE, HAI)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: haipchat -url URL -token JWT [-transport T] [-session ID] [-last-seq N] [-quiet] [-v]")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nThen type messages, or /help for commands.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if c.Token == "" {
		c.Token = os.Getenv(tokenEnv)
	}
	var errs []error
	if c.Token == "" {
		errs = append(errs, fmt.Errorf("-token is empty and $%s is not set", tokenEnv))
	}
	if c.Session != "" && !haip.ValidSessionID(c.Session) {
		errs = append(errs, fmt.Errorf("-session %q: want 1-128 of [A-Za-z0-9_-]", c.Session))
	}
	if !slices.Contains(client.Transports(), c.Transport) {
		errs = append(errs, fmt.Errorf("-transport %q: want one of %s", c.Transport, strings.Join(client.Transports(), ", ")))
	}
	if c.LastSeq != nil && c.Session == "" {
		errs = append(errs, fmt.Errorf("-last-seq %d needs -session: a new session has no seqs yet", *c.LastSeq))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return c, nil
}

// run is the whole command: it returns when the user quits, stdin ends,
// a signal arrives (all nil) or the connection is lost for good.
//
// It owns two goroutines besides its own: the connection reader (one per
// connection, stopped and waited for before run returns) and the stdin
// reader. A Read on stdin cannot be interrupted, so run does not wait for
// the stdin reader: after run returns it may stay blocked in Read until
// the next line or end of input, then exits without doing anything else.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // frees the stdin reader if it is handing over a line

	c := &chat{cfg: cfg, out: &printer{out: stdout, diag: stderr, quiet: cfg.Quiet, verbose: cfg.Verbose}, session: cfg.Session}
	if cfg.LastSeq != nil {
		c.pos, c.havePos = *cfg.LastSeq, true
		c.out.status("resuming from seq %d", c.pos)
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	c.out.status("session %s", c.session)
	c.out.status("server speaks HAIP %s; type a message, or /help", c.conn.Hello.HaipVersion)

	err = c.loop(ctx, readInput(ctx, stdin))
	c.hangUp(true)
	c.readers.Wait()
	c.out.say("last seq %d (resume with -session %s -last-seq %d)", c.pos, c.session, c.pos)
	return err
}

// chat is the client's state. Only run's goroutine touches it; the
// reader goroutine hands envelopes over through feed.
type chat struct {
	cfg     config
	out     *printer
	session string
	conn    *client.Conn // nil between connections
	feed    *feed        // conn's reader; nil with conn
	readers sync.WaitGroup
	// pos is the highest session-log seq received (or the position the
	// edge reported): where a resume continues. havePos is false only
	// while joining an existing session "from now on" before the edge
	// has said where now is; a reconnect then resumes from now on too.
	pos     uint64
	havePos bool
}

// feed carries one connection's envelopes to run's goroutine. The reader
// closes envs when Read fails, after setting err.
type feed struct {
	envs chan *haip.Envelope
	err  error
}

// connect dials once and starts the reader.
func (c *chat) connect(ctx context.Context) error {
	// The token goes in a header, where it stays out of URLs and so out
	// of dial errors and proxy logs; the session in the query lets the
	// edge refuse a foreign session with 403 before the stream starts.
	o := client.Options{URL: c.cfg.URL, Transport: c.cfg.Transport, Token: c.cfg.Token, TokenInHeader: true, Session: c.session, SessionInQuery: true}
	if c.havePos {
		p := c.pos
		o.LastRxSeq = &p
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	conn, err := client.Dial(dctx, o)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot connect to %s: %w", c.cfg.URL, err)
	}
	c.conn, c.session = conn, conn.Session()
	f := &feed{envs: make(chan *haip.Envelope, feedBuffer)}
	c.feed = f
	// The reader sends without select: whoever ends the connection
	// (hangUp, or loop on a loss) drains envs until it is closed.
	c.readers.Go(func() {
		defer close(f.envs)
		for {
			env, err := conn.Read(ctx)
			if err != nil {
				f.err = err
				return
			}
			f.envs <- env
		}
	})
	return nil
}

// hangUp closes the connection (with a close handshake when graceful,
// else abruptly, like a lost network) and prints what was already
// received.
func (c *chat) hangUp(graceful bool) {
	if c.conn == nil {
		return
	}
	if graceful {
		_ = c.conn.Close()
	} else {
		_ = c.conn.CloseNow()
	}
	for env := range c.feed.envs {
		c.show(env)
	}
	c.conn, c.feed = nil, nil
}

// inputLine is one line of stdin, or the error that ended it.
type inputLine struct {
	text string
	err  error
}

// readInput reads stdin on its own goroutine; the channel closes at end of
// input. See run for why nobody waits for this goroutine.
func readInput(ctx context.Context, r io.Reader) <-chan inputLine {
	ch := make(chan inputLine)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
		for sc.Scan() {
			select {
			case ch <- inputLine{text: sc.Text()}:
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			select {
			case ch <- inputLine{err: err}:
			case <-ctx.Done():
			}
		}
	}()
	return ch
}

// loop serves stdin and the connection until the user leaves (nil) or
// the session cannot go on.
func (c *chat) loop(ctx context.Context, input <-chan inputLine) error {
	for {
		var envs <-chan *haip.Envelope
		if c.feed != nil {
			envs = c.feed.envs
		}
		select {
		case <-ctx.Done():
			return nil // interrupted: leave as cleanly as /quit
		case in, ok := <-input:
			if !ok {
				return nil
			}
			if in.err != nil {
				return fmt.Errorf("cannot read stdin: %w", in.err)
			}
			quit, err := c.command(ctx, in.text)
			if quit || err != nil {
				return err
			}
		case env, ok := <-envs:
			if ok {
				c.show(env)
				continue
			}
			if err := c.lost(ctx, c.feed.err); err != nil {
				return err
			}
		}
	}
}

// command acts on one line of input; quit asks to leave.
func (c *chat) command(ctx context.Context, line string) (quit bool, err error) {
	line = strings.TrimSpace(line)
	switch {
	case line == "":
		return false, nil
	case strings.HasPrefix(line, "//"):
		c.sendText(ctx, line[1:])
		return false, nil
	case !strings.HasPrefix(line, "/"):
		c.sendText(ctx, line)
		return false, nil
	}
	fields := strings.Fields(line)
	switch fields[0] {
	case "/quit", "/exit":
		return true, nil
	case "/help":
		c.out.say("%s", helpText)
	case "/resume":
		c.hangUp(false)
		return false, c.reconnect(ctx, true)
	case "/replay":
		c.replay(ctx, fields[1:])
	case "/approve", "/reject":
		c.decide(ctx, fields[0][1:], fields[1:])
	default:
		c.out.say("unknown command %s; /help lists them", fields[0])
	}
	return false, nil
}

const helpText = `commands:
  TEXT               send a message (the demo agent answers it)
  /resume            drop the connection abruptly and resume from the last seq
  /replay FROM [TO]  ask the edge to send seqs FROM to TO (default: the newest) again
  /approve CALL [COMMENT], /reject CALL [COMMENT]
                     decide the agent's approval request (a TOOL_CALL of user_approval)
  /quit              leave (so does end of input)
  /help              this list
  //TEXT             send TEXT starting with "/"`

func (c *chat) sendText(ctx context.Context, text string) {
	if c.conn == nil {
		c.out.say("not connected: message not sent")
		return
	}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	if _, err := c.conn.SendText(sctx, text); err != nil {
		// The reader sees the loss too and reconnects.
		c.out.say("message not sent (%v); send it again once resumed", err)
	}
}

// decide answers an approval request: the user's TOOL_DONE for its call.
func (c *chat) decide(ctx context.Context, decision string, args []string) {
	if len(args) < 1 {
		c.out.say("usage: /%s CALL [COMMENT]", decision)
		return
	}
	if c.conn == nil {
		c.out.say("not connected: decision not sent")
		return
	}
	result, _ := json.Marshal(map[string]string{"decision": decision, "comment": strings.Join(args[1:], " ")})
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	if _, err := c.conn.Send(sctx, haip.ChannelUser, haip.TypeToolDone, haip.ToolDonePayload{CallID: args[0], Result: result}); err != nil {
		c.out.say("decision not sent (%v); send it again once resumed", err)
	}
}

func (c *chat) replay(ctx context.Context, args []string) {
	if len(args) < 1 || len(args) > 2 {
		c.out.say("usage: /replay FROM [TO]")
		return
	}
	from, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		c.out.say("/replay: FROM %q is not a seq", args[0])
		return
	}
	p := haip.ReplayRequestPayload{FromSeq: haip.U64(from)}
	if len(args) == 2 {
		to, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			c.out.say("/replay: TO %q is not a seq", args[1])
			return
		}
		u := haip.U64(to)
		p.ToSeq = &u
	}
	if c.conn == nil {
		c.out.say("not connected: replay not asked")
		return
	}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	if _, err := c.conn.Send(sctx, haip.ChannelSystem, haip.TypeReplayRequest, p); err != nil {
		c.out.say("replay not asked (%v)", err)
	}
}

// lost handles the end of the connection's reader: final closes end the
// command, anything else is resumed.
func (c *chat) lost(ctx context.Context, err error) error {
	_ = c.conn.CloseNow()
	c.conn, c.feed = nil, nil
	if ctx.Err() != nil {
		return nil // we are leaving; the loop sees ctx
	}
	if code, reason := client.CloseStatus(err); code == websocket.StatusPolicyViolation {
		return fmt.Errorf("edge closed the connection with %d (policy violation: %s); not retrying", code, reason)
	}
	c.out.status("connection lost: %s", describe(err))
	return c.reconnect(ctx, false)
}

// describe says why a connection ended.
func describe(err error) string {
	if code, reason := client.CloseStatus(err); code != -1 {
		return fmt.Sprintf("closed by the edge with %d %s", code, reason)
	}
	return err.Error()
}

// reconnect resumes the session: up to maxTries dials, waiting
// backoffBase·2^n (at most backoffMax) before each — except the first
// when immediate. Final refusals stop at once.
func (c *chat) reconnect(ctx context.Context, immediate bool) error {
	if c.havePos {
		c.out.status("resuming from seq %d", c.pos)
	} else {
		c.out.status("resuming from now on")
	}
	var last error
	for try := range maxTries {
		if try > 0 || !immediate {
			d := min(backoffBase<<try, backoffMax)
			c.out.status("reconnecting in %s (try %d of %d)", d, try+1, maxTries)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		err := c.connect(ctx)
		if err == nil {
			c.out.status("resumed session %s", c.session)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if final(err) {
			return err
		}
		c.out.status("%v", err)
		last = err
	}
	return fmt.Errorf("cannot resume session %s after %d tries: %w", c.session, maxTries, last)
}

// final reports refusals that retrying as is cannot fix.
func final(err error) bool {
	var he *client.HTTPError
	if errors.As(err, &he) {
		switch he.Status {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
			return true
		}
	}
	if code, _ := client.CloseStatus(err); code == websocket.StatusPolicyViolation {
		return true
	}
	switch haip.CodeOf(err) {
	case haip.CodeAuthenticationFailed, haip.CodeSessionForbidden, haip.CodeVersionIncompatible, haip.CodeProtocolViolation:
		return true
	}
	return false
}

// show prints one received envelope and keeps the resume position.
// Control messages carry the edge's position (the last log seq it sent
// on this connection), which places a client that joined "from now on".
func (c *chat) show(env *haip.Envelope) {
	seq := uint64(env.Seq)
	if client.IsControl(env.Type) {
		c.pos, c.havePos = max(c.pos, seq), true
		if env.Type != haip.TypeError {
			c.out.control(env)
			return
		}
		var p haip.ErrorPayload
		_ = env.DecodePayload(&p)
		if p.Code == haip.CodeResumeFailed {
			// We asked to resume beyond the log's end; the edge goes on
			// from its end, which its position names.
			c.pos = seq
		}
		c.out.protocolError(p)
		return
	}
	replayed := c.havePos && seq <= c.pos
	if !replayed {
		c.pos, c.havePos = seq, true
	}
	c.out.logMessage(env, replayed)
}
