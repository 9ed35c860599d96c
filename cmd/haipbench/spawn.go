package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haipfabric/haipfabric/auth"
)

const (
	// buildTimeout bounds go build of nats-server and the edge.
	buildTimeout = 5 * time.Minute
	// childStopGrace is how long a child has after SIGTERM before SIGKILL.
	childStopGrace = 10 * time.Second
	// childLogLines is how many last output lines of a child an error
	// quotes.
	childLogLines = 20
)

var (
	reNATSListen = regexp.MustCompile(`Listening for client connections on (\S+:\d+)`)
	reEdgeListen = regexp.MustCompile(`HAIP edge listening on (http://\S+)`)
)

// openSpawn builds (or takes) nats-server and cmd/edge, starts them as
// children on 127.0.0.1 (the edge with NATS_URL, so it embeds no server,
// and without its demo agent and built-in tools), and connects the agent
// side and the baseline to that nats-server over TCP.
func (f *fabric) openSpawn(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "haipbench-spawn-")
	if err != nil {
		return fmt.Errorf("cannot create work dir: %w", err)
	}
	f.closers = append(f.closers, func() { _ = os.RemoveAll(dir) })
	natsBin, edgeBin := cfg.NATSBin, cfg.EdgeBin
	if natsBin == "" || edgeBin == "" {
		bctx, cancel := context.WithTimeout(ctx, buildTimeout)
		defer cancel()
		if natsBin == "" {
			if natsBin, err = goBuild(bctx, dir, "nats-server", "github.com/nats-io/nats-server/v2"); err != nil {
				return err
			}
		}
		if edgeBin == "" {
			if edgeBin, err = goBuild(bctx, dir, "edge", "github.com/haipfabric/haipfabric/cmd/edge"); err != nil {
				return err
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()

	ns, err := f.startChild(ctx, "nats-server", natsBin,
		[]string{"-js", "-sd", filepath.Join(dir, "jetstream"), "-a", "127.0.0.1", "-p", "-1", "-n", "haipbench"},
		nil, reNATSListen)
	if err != nil {
		return err
	}
	natsURL := "nats://" + ns.addr

	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("cannot generate secret: %w", err)
	}
	hexSecret := hex.EncodeToString(secret)
	e, err := f.startChild(ctx, "edge", edgeBin, nil, withEnv(map[string]string{
		"NATS_URL":        natsURL,
		"HOST":            "127.0.0.1",
		"PORT":            "0",
		"DATA_DIR":        filepath.Join(dir, "edge"),
		"JWT_SECRET":      hexSecret,
		"DEMO_AGENT":      "false",
		"BUILTIN_TOOLS":   "false",
		"MAX_CONNECTIONS": strconv.Itoa(maxConns + 16),
		"LOG_LEVEL":       "warn",
	}, noUserLimits()), reEdgeListen)
	if err != nil {
		return err
	}
	signer, err := auth.NewHMACSigner([]byte(hexSecret))
	if err != nil {
		return err
	}
	token, err := signer.Mint(auth.MintOptions{Subject: "haipbench", Role: auth.RoleUser, TTL: 2 * time.Hour})
	if err != nil {
		return err
	}
	f.eps = []endpoint{{base: e.addr, token: token}}
	f.procs = []proc{{role: "edge", pid: e.pid()}, {role: "nats-server", pid: ns.pid()}}
	return f.dialNATS(ctx, natsURL)
}

// goBuild builds pkg into dir/name with the go command, from the module
// this program belongs to (found from the working directory).
func goBuild(ctx context.Context, dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s (run haipbench inside the module, or give -edge-bin and -nats-server-bin): %w\n%s", pkg, err, log.String())
	}
	return out, nil
}

// child is a process haipbench started. Its output is scanned for the
// line saying where it listens, and the last lines are kept for errors.
type child struct {
	name string
	cmd  *exec.Cmd
	addr string        // from the ready line
	done chan struct{} // closed when the process has exited
	out  *lineLog
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// startChild starts bin, stops it when the fabric closes, and waits until
// its output matches ready (whose first group is its address).
func (f *fabric) startChild(ctx context.Context, name, bin string, args []string, env map[string]string, ready *regexp.Regexp) (*child, error) {
	c := &child{name: name, done: make(chan struct{}), out: newLineLog(ready)}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.Env = os.Environ() // later entries win: ours below
	for k, v := range env {
		c.cmd.Env = append(c.cmd.Env, k+"="+v)
	}
	setChildAttrs(c.cmd)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	f.closers = append(f.closers, c.stop)
	select {
	case c.addr = <-c.out.found:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s exited at start: %s\n%s", name, c.cmd.ProcessState, c.out.tail())
	case <-ctx.Done():
		return nil, fmt.Errorf("%s not ready: %w\n%s", name, ctx.Err(), c.out.tail())
	}
}

// stop sends SIGTERM, then SIGKILL after childStopGrace, and waits for
// the exit.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(childStopGrace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// lineLog is a child's stdout and stderr: it reports the first match of
// ready on found and keeps the last childLogLines lines.
type lineLog struct {
	ready *regexp.Regexp
	found chan string // buffered; receives one address

	mu      sync.Mutex
	partial []byte
	lines   []string
	matched bool
}

func newLineLog(ready *regexp.Regexp) *lineLog {
	return &lineLog{ready: ready, found: make(chan string, 1)}
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(bytes.TrimRight(l.partial[:i], "\r"))
		l.partial = l.partial[i+1:]
		if !l.matched {
			if m := l.ready.FindStringSubmatch(line); m != nil {
				l.matched = true
				l.found <- m[1]
			}
		}
		l.lines = append(l.lines, line)
		if len(l.lines) > childLogLines {
			l.lines = l.lines[1:]
		}
	}
	if len(l.partial) > 64<<10 { // a line without end: keep memory bounded
		l.partial = l.partial[:0]
	}
	return len(p), nil
}

// tail is the last lines written.
func (l *lineLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// noUserLimits turns an edge process's per-user limits off: the load
// tool's one token speaks for every simulated client.
func noUserLimits() map[string]string {
	return map[string]string{
		"USER_MAX_CONNECTIONS": "-1", "USER_MESSAGES_PER_SECOND": "-1", "USER_SESSIONS_PER_MINUTE": "-1",
		"USER_RUNS_PER_MINUTE": "-1", "USER_TOOL_CALLS_PER_MINUTE": "-1", "USER_REPLAY_BYTES_PER_MINUTE": "-1",
		"USER_MAX_RUNS": "-1", "USER_MAX_TOOL_CALLS": "-1",
	}
}

// withEnv returns env with every entry of more added.
func withEnv(env map[string]string, more map[string]string) map[string]string {
	out := maps.Clone(env)
	maps.Copy(out, more)
	return out
}
