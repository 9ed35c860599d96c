package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits that keep every run bounded.
const (
	maxDuration = 10 * time.Minute
	maxSessions = 10_000
	maxMessages = 10_000_000
	maxConns    = 20_000
	maxClients  = 1_000
	maxRate     = 1_000_000
	maxWriters  = 256
	maxSize     = 512 << 10
	maxCalls    = 1_000_000
	maxConc     = 1_000
	maxWorkers  = 64
)

// Defaults per scenario for -messages (0 on the command line means these).
const (
	defaultBaselineMessages = 100_000
	defaultFanoutMessages   = 1_000 // per session
	defaultLatencyMessages  = 50_000
	defaultResumeMessages   = 100_000
	defaultToolCalls        = 1_000 // per worker count and phase
)

// config is the command line.
type config struct {
	Scenario string
	Self     bool
	URL      string // ws://127.0.0.1:PORT/haip/websocket (external mode)
	Token    string // user token for URL
	NATS     string // nats://127.0.0.1:4222 (external mode)
	EdgePID  int    // external mode: read the edge's VmRSS from /proc/PID
	Spawn    bool   // nats-server and the edge as child processes
	Cluster  bool   // internal/localcluster: 3 nats-servers, 2 edges, 2 tool workers
	EdgeBin  string // -spawn: prebuilt cmd/edge; empty builds it
	NATSBin  string // -spawn: prebuilt nats-server; empty builds it

	Transport   string // ws, sse, stream or stream-half
	ToolWorkers []int  // tools: worker counts, one run each
	Calls       int    // tools: calls per worker count and phase
	Concurrency int    // tools: outstanding calls in the throughput phase

	Duration time.Duration // cap per scenario
	Messages int           // meaning depends on the scenario; 0 = its default
	Baseline int           // messages of the raw JetStream baseline; 0 = default
	Sessions int
	Conns    int
	Clients  int
	// PerSession is fanout's clients per session (1: each session has its
	// own reader; more: every appended message goes to that many clients).
	PerSession int
	Rate       int // latency: total msg/s
	Writers    int // agent-side goroutines
	// SessionWriters is fanout's appending goroutines per agent-side
	// goroutine, sharing its sessions: concurrent appends to one session
	// (what the log's group commit batches).
	SessionWriters int
	Size           int // bytes of text per TEXT_MESSAGE_PART
	JSONFile       string
	CPUProf        string // write a CPU profile of the whole run here
	Quiet          bool   // no progress lines (tests)
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("haipbench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&c.Scenario, "scenario", "", "baseline, fanout, latency, resume, conns, tools, all, or a comma-separated list (required)")
	fs.BoolVar(&c.Self, "self", true, "start nats-server and an edge in this process (set false, or give -url, for an external edge)")
	fs.StringVar(&c.URL, "url", "", "external edge WebSocket URL, e.g. ws://127.0.0.1:8080/haip/websocket (loopback only)")
	fs.StringVar(&c.Token, "token", "", "external mode: a user token for -url")
	fs.StringVar(&c.NATS, "nats", "", "external mode: the edge's NATS, e.g. nats://127.0.0.1:4222 (loopback only)")
	fs.IntVar(&c.EdgePID, "edge-pid", 0, "external mode, conns: pid of the edge process, to read its RSS")
	fs.BoolVar(&c.Spawn, "spawn", false, "start nats-server and the edge (built with go build) as child processes on 127.0.0.1; clients stay in this process")
	fs.BoolVar(&c.Cluster, "cluster", false, "start a loopback cluster (3 nats-servers, R3 streams, 2 edges, 2 tool workers) as child processes; clients spread over the edges")
	fs.StringVar(&c.EdgeBin, "edge-bin", "", "-spawn: a built cmd/edge binary (default: go build it)")
	fs.StringVar(&c.NATSBin, "nats-server-bin", "", "-spawn: a built nats-server binary (default: go build it from the module's nats-server/v2)")
	fs.StringVar(&c.Transport, "transport", transportWS, "fanout, latency, resume, conns: client transport, "+strings.Join(transports, ", "))
	workers := fs.String("toolworkers", "1,2,4", fmt.Sprintf("tools: comma-separated tool-worker counts, one run each (each 1..%d)", maxWorkers))
	fs.IntVar(&c.Calls, "calls", defaultToolCalls, "tools: calls per worker count in each phase (latency at concurrency 1, then throughput)")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "tools: outstanding calls in the throughput phase, one WebSocket session each")
	fs.DurationVar(&c.Duration, "duration", 2*time.Minute, fmt.Sprintf("time cap per scenario (max %s)", maxDuration))
	fs.IntVar(&c.Messages, "messages", 0, fmt.Sprintf("fanout: per session (default %d); latency: total (default %d); resume: backlog (default %d)",
		defaultFanoutMessages, defaultLatencyMessages, defaultResumeMessages))
	fs.IntVar(&c.Baseline, "baseline-messages", defaultBaselineMessages, "messages published and read by the raw JetStream baseline")
	fs.IntVar(&c.Sessions, "sessions", 100, "fanout, latency: sessions, one WebSocket client each")
	fs.IntVar(&c.Conns, "conns", 2000, fmt.Sprintf("conns: idle WebSocket connections (max %d, and the open-file limit)", maxConns))
	fs.IntVar(&c.Clients, "clients", 1, "resume: clients resuming the same backlog at once")
	fs.IntVar(&c.PerSession, "per-session", 1, "fanout: clients following each session (each appended message is delivered to all of them)")
	fs.IntVar(&c.Rate, "rate", 10_000, "latency: total appended msg/s across sessions")
	fs.IntVar(&c.Writers, "writers", 8, "agent-side goroutines appending")
	fs.IntVar(&c.SessionWriters, "session-writers", 1, "fanout: goroutines appending concurrently to each writer's sessions (group commit batches them)")
	fs.IntVar(&c.Size, "size", 256, "bytes of text per TEXT_MESSAGE_PART")
	fs.StringVar(&c.JSONFile, "json", "", "write the results as JSON to this file")
	fs.StringVar(&c.CPUProf, "cpuprofile", "", "write a CPU profile (pprof) of the whole run, in-process parts only, to this file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.URL != "" || c.Spawn || c.Cluster {
		c.Self = false
	}
	var errs []error
	for _, w := range strings.Split(*workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 || n > maxWorkers {
			errs = append(errs, fmt.Errorf("-toolworkers %q: want counts 1..%d separated by commas", *workers, maxWorkers))
			break
		}
		c.ToolWorkers = append(c.ToolWorkers, n)
	}
	return c, errors.Join(append(errs, c.validate())...)
}

// scenarios is -scenario as a list (all expanded).
func (c config) scenarios() []string {
	if c.Scenario == "all" {
		return allScenarios
	}
	var out []string
	for _, s := range strings.Split(c.Scenario, ",") {
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// validate reports every bad field at once.
func (c config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Scenario == "" {
		bad("-scenario is required")
	} else {
		for _, s := range c.scenarios() {
			if !slices.Contains(allScenarios, s) {
				bad("-scenario %q: want %s, all, or a comma-separated list", s, strings.Join(allScenarios, ", "))
			}
		}
	}
	if !slices.Contains(transports, c.Transport) {
		bad("-transport %q: want %s", c.Transport, strings.Join(transports, ", "))
	}
	modes := 0
	for _, on := range []bool{c.URL != "", c.Spawn, c.Cluster} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		bad("-url, -spawn and -cluster exclude each other")
	}
	if (c.EdgeBin != "" || c.NATSBin != "") && !c.Spawn {
		bad("-edge-bin and -nats-server-bin are for -spawn")
	}
	rng := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			bad("%s is %d: want %d..%d", name, v, lo, hi)
		}
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		bad("-duration is %s: want >0 and <= %s", c.Duration, maxDuration)
	}
	rng("-messages", c.Messages, 0, maxMessages)
	rng("-baseline-messages", c.Baseline, 1, maxMessages)
	rng("-sessions", c.Sessions, 1, maxSessions)
	rng("-conns", c.Conns, 1, maxConns)
	rng("-clients", c.Clients, 1, maxClients)
	rng("-per-session", c.PerSession, 1, maxClients)
	if c.Sessions*c.PerSession > maxConns {
		bad("-sessions × -per-session is %d: want at most %d connections", c.Sessions*c.PerSession, maxConns)
	}
	rng("-rate", c.Rate, 1, maxRate)
	rng("-writers", c.Writers, 1, maxWriters)
	rng("-session-writers", c.SessionWriters, 1, maxWriters)
	rng("-size", c.Size, 1, maxSize)
	rng("-calls", c.Calls, 1, maxCalls)
	rng("-concurrency", c.Concurrency, 1, maxConc)
	if c.Spawn || c.Cluster {
		if c.NATS != "" || c.Token != "" || c.EdgePID != 0 {
			bad("-nats, -token and -edge-pid are for external mode (-url)")
		}
	} else if !c.Self {
		if c.URL == "" || c.Token == "" {
			bad("external mode needs -url and -token")
		}
		if c.URL != "" {
			if err := checkLoopbackURL(c.URL, "ws", "wss"); err != nil {
				bad("-url: %w", err)
			}
		}
		if c.NATS == "" && slices.ContainsFunc(c.scenarios(), func(s string) bool { return s != "conns" }) {
			bad("external mode needs -nats for scenario %s (the agent side and the baseline)", c.Scenario)
		}
		if c.NATS != "" {
			if err := checkLoopbackURL(c.NATS, "nats", "tls"); err != nil {
				bad("-nats: %w", err)
			}
		}
	} else if c.NATS != "" || c.Token != "" || c.EdgePID != 0 {
		bad("-nats, -token and -edge-pid are for external mode (-url)")
	}
	return errors.Join(errs...)
}

// errNotLoopback refuses targets off this machine.
var errNotLoopback = errors.New("not a loopback address (127.0.0.0/8, ::1 or localhost)")

// checkLoopbackURL accepts only the given schemes and a loopback host,
// without resolving names other than "localhost".
func checkLoopbackURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return fmt.Errorf("%q: scheme %q, want %s", raw, u.Scheme, strings.Join(schemes, " or "))
	}
	if !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%q: host %q: %w", raw, u.Hostname(), errNotLoopback)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// messages returns -messages or the scenario's default.
func (c config) messages(def int) int {
	if c.Messages > 0 {
		return c.Messages
	}
	return def
}
