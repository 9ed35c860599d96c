package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
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
)

// Defaults per scenario for -messages (0 on the command line means these).
const (
	defaultBaselineMessages = 100_000
	defaultFanoutMessages   = 1_000 // per session
	defaultLatencyMessages  = 50_000
	defaultResumeMessages   = 100_000
)

// config is the command line.
type config struct {
	Scenario string
	Self     bool
	URL      string // ws://127.0.0.1:PORT/haip/websocket (external mode)
	Token    string // user token for URL
	NATS     string // nats://127.0.0.1:4222 (external mode)
	EdgePID  int    // external mode: read the edge's VmRSS from /proc/PID

	Duration time.Duration // cap per scenario
	Messages int           // meaning depends on the scenario; 0 = its default
	Baseline int           // messages of the raw JetStream baseline; 0 = default
	Sessions int
	Conns    int
	Clients  int
	Rate     int // latency: total msg/s
	Writers  int // agent-side goroutines
	Size     int // bytes of text per TEXT_MESSAGE_PART
	JSONFile string
	Quiet    bool // no progress lines (tests)
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("haipbench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&c.Scenario, "scenario", "", "baseline, fanout, latency, resume, conns or all (required)")
	fs.BoolVar(&c.Self, "self", true, "start nats-server and an edge in this process (set false, or give -url, for an external edge)")
	fs.StringVar(&c.URL, "url", "", "external edge WebSocket URL, e.g. ws://127.0.0.1:8080/haip/websocket (loopback only)")
	fs.StringVar(&c.Token, "token", "", "external mode: a user token for -url")
	fs.StringVar(&c.NATS, "nats", "", "external mode: the edge's NATS, e.g. nats://127.0.0.1:4222 (loopback only)")
	fs.IntVar(&c.EdgePID, "edge-pid", 0, "external mode, conns: pid of the edge process, to read its RSS")
	fs.DurationVar(&c.Duration, "duration", 2*time.Minute, fmt.Sprintf("time cap per scenario (max %s)", maxDuration))
	fs.IntVar(&c.Messages, "messages", 0, fmt.Sprintf("fanout: per session (default %d); latency: total (default %d); resume: backlog (default %d)",
		defaultFanoutMessages, defaultLatencyMessages, defaultResumeMessages))
	fs.IntVar(&c.Baseline, "baseline-messages", defaultBaselineMessages, "messages published and read by the raw JetStream baseline")
	fs.IntVar(&c.Sessions, "sessions", 100, "fanout, latency: sessions, one WebSocket client each")
	fs.IntVar(&c.Conns, "conns", 2000, fmt.Sprintf("conns: idle WebSocket connections (max %d, and the open-file limit)", maxConns))
	fs.IntVar(&c.Clients, "clients", 1, "resume: clients resuming the same backlog at once")
	fs.IntVar(&c.Rate, "rate", 10_000, "latency: total appended msg/s across sessions")
	fs.IntVar(&c.Writers, "writers", 8, "agent-side goroutines appending")
	fs.IntVar(&c.Size, "size", 256, "bytes of text per TEXT_MESSAGE_PART")
	fs.StringVar(&c.JSONFile, "json", "", "write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.URL != "" {
		c.Self = false
	}
	return c, c.validate()
}

// validate reports every bad field at once.
func (c config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Scenario {
	case "baseline", "fanout", "latency", "resume", "conns", "all":
	case "":
		bad("-scenario is required")
	default:
		bad("-scenario %q: want baseline, fanout, latency, resume, conns or all", c.Scenario)
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
	rng("-rate", c.Rate, 1, maxRate)
	rng("-writers", c.Writers, 1, maxWriters)
	rng("-size", c.Size, 1, maxSize)
	if !c.Self {
		if c.URL == "" || c.Token == "" {
			bad("external mode needs -url and -token")
		}
		if c.URL != "" {
			if err := checkLoopbackURL(c.URL, "ws", "wss"); err != nil {
				bad("-url: %w", err)
			}
		}
		if c.NATS == "" && c.Scenario != "conns" {
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
