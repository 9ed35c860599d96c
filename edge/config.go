package edge

import (
	"errors"
	"fmt"
	"github.com/haipfabric/haipfabric/auth"
	"strconv"
	"strings"
	"time"
)

// Defaults for Config fields whose zero value is not usable.
const (
	DefaultMaxConnections    = 1000
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultHeartbeatTimeout  = 10 * time.Second
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultMaxMessageBytes   = 1 << 20
	DefaultClientCredit      = 1000
	DefaultClientCreditBytes = 1 << 20
	DefaultCatchupBatch      = 256
	DefaultCatchupReads      = 64
	DefaultCatchupBytes      = 256 << 10
	DefaultLiveBuffer        = 32
	DefaultMaxUserText       = 64 << 10
	DefaultPostTimeout       = 30 * time.Second
	DefaultAPIQueryTimeout   = 2 * time.Minute
	DefaultPressureInterval  = time.Second
	DefaultMaxPendingAppends = 256
	DefaultMaxQueueDepth     = 10_000
	DefaultMaxConcurrentRuns = 8
	DefaultMaxAudioBytes     = 256 << 10
	DefaultMaxReplayBytes    = 1 << 20

	DefaultUserMaxConnections       = 100
	DefaultUserMessagesPerSecond    = 200
	DefaultUserSessionsPerMinute    = 60
	DefaultUserRunsPerMinute        = 120
	DefaultUserToolCallsPerMinute   = 600
	DefaultUserReplayBytesPerMinute = 32 << 20
	DefaultUserMaxRuns              = 16
	DefaultUserMaxSessions          = 10_000
	DefaultUserMaxToolCalls         = 64
	// HTTPConnectionsHeadroom is what the default MaxHTTPConnections
	// keeps beyond two per connection: health checks, scrapes, and
	// requests beyond MaxConnections that deserve a 503 rather than a
	// closed socket.
	HTTPConnectionsHeadroom = 100
	// MinMetricsTokenLen is the shortest MetricsToken accepted.
	MinMetricsTokenLen = 32
)

// Duration is a time.Duration read from the environment either as a Go
// duration ("30s") or, like the reference server's variables, as a bare
// number of milliseconds ("30000").
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler for env parsing.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		*d = Duration(time.Duration(ms) * time.Millisecond)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want milliseconds or a Go duration like 30s", s)
	}
	*d = Duration(v)
	return nil
}

// Config tunes an edge. The zero value is usable: every zero field takes
// the default named beside it. Env tags are the variable names cmd/edge
// reads (reference-server names where they exist).
type Config struct {
	// MaxConnections caps live client connections; further ones get 503
	// before any upgrade. Zero means DefaultMaxConnections.
	MaxConnections int `env:"MAX_CONNECTIONS"`
	// MaxHTTPConnections caps the HTTP server's open TCP connections
	// (SSE and NDJSON streams, requests in flight, idle keep-alives;
	// WebSocket connections leave the count when upgraded, and count in
	// MaxConnections): new ones beyond it are closed at once, so idle
	// sockets cannot take every file descriptor. It applies where
	// [Server.ConnState] is the http.Server's ConnState. Zero means twice
	// MaxConnections (a browser's SSE stream and its POSTs may use two)
	// plus HTTPConnectionsHeadroom.
	MaxHTTPConnections int `env:"MAX_HTTP_CONNECTIONS"`
	// HeartbeatInterval is how often the edge sends PING. Zero means
	// DefaultHeartbeatInterval.
	HeartbeatInterval Duration `env:"HEARTBEAT_INTERVAL"`
	// HeartbeatTimeout is how long past a heartbeat interval a silent peer
	// is kept before it is dropped as dead. Zero means DefaultHeartbeatTimeout.
	HeartbeatTimeout Duration `env:"HEARTBEAT_TIMEOUT"`
	// HandshakeTimeout is how long a connection may stay without a HAI.
	// Zero means DefaultHandshakeTimeout.
	HandshakeTimeout Duration `env:"HANDSHAKE_TIMEOUT"`
	// WriteTimeout is how long one write to a client may block before the
	// client is cut as too slow. Zero means DefaultWriteTimeout.
	WriteTimeout Duration `env:"WRITE_TIMEOUT"`
	// MaxMessageBytes is the largest inbound frame. Zero means
	// DefaultMaxMessageBytes (1 MiB).
	MaxMessageBytes int64 `env:"MAX_MESSAGE_BYTES"`
	// StrictSeq makes the edge refuse client seqs that are not the previous
	// one plus one (SEQ_VIOLATION). Off by default: the official SDK sends
	// timestamps as seqs; client messages are de-duplicated by id instead.
	StrictSeq bool `env:"STRICT_SEQ"`
	// ClientCreditMessages and ClientCreditBytes are the credit granted to
	// clients per channel with FLOW_UPDATE, and topped up as it is used.
	// Zero means DefaultClientCredit and DefaultClientCreditBytes.
	ClientCreditMessages int `env:"CLIENT_CREDIT_MESSAGES"`
	ClientCreditBytes    int `env:"CLIENT_CREDIT_BYTES"`
	// EnableCORS lets browser pages on the origins in CORSOrigins use the
	// edge (CORS headers, credentials included, and WebSocket upgrades).
	// Pages on the edge's own origin need neither; pages on any other
	// origin are refused (403), and so is Origin "null" always. With no
	// CORSOrigins no other origin is served. Each entry is an exact
	// origin, "scheme://host[:port]", or "*": any origin (but "null"),
	// answered with Access-Control-Allow-Origin: * and never credentials.
	// EnableCORS off serves the edge's own origin only, whatever the list.
	// Unlike the fields above, its zero value (off) is what an embedding
	// program gets; the edge command reads it from ENABLE_CORS, which
	// defaults to on.
	EnableCORS  bool     `env:"ENABLE_CORS" envDefault:"true"`
	CORSOrigins []string `env:"CORS_ORIGINS"`
	// MetricsToken is a bearer token (in the Authorization header) that
	// opens /stats and /metrics, for a Prometheus scraper; a JWT with
	// role admin opens them too. Empty means admin tokens only. At least
	// MinMetricsTokenLen bytes.
	MetricsToken string `env:"METRICS_TOKEN"`
	// ConsoleDevToken, when set, is offered by the web console
	// (/console) to pages loaded from a loopback address, so that a
	// developer signs in with one click. The edge command sets it to its
	// printed user token only when it made its own development secret
	// (single box, no JWT_SECRET, not ENV=production); empty (the
	// default) offers nothing.
	ConsoleDevToken string `env:"-"`
	// CatchupBatch and CatchupBytes bound one catch-up read from
	// JetStream, and so the edge memory a catching-up connection holds.
	// Zero means DefaultCatchupBatch and DefaultCatchupBytes.
	CatchupBatch int `env:"CATCHUP_BATCH"`
	CatchupBytes int `env:"CATCHUP_BYTES"`
	// CatchupReads caps the catch-up reads this edge has in flight at
	// once; more connections catching up (many clients resuming together,
	// or falling behind live together) wait for their turn instead of
	// piling requests onto JetStream until they time out. Zero means
	// DefaultCatchupReads.
	CatchupReads int `env:"CATCHUP_READS"`
	// LiveBuffer is how many live messages may wait for a connection's
	// writer; past that the connection falls back to catch-up from the log.
	// Zero means DefaultLiveBuffer.
	LiveBuffer int `env:"LIVE_BUFFER"`
	// PostTimeout bounds reading the body of a POST of envelopes, so a
	// client that trickles or stalls its body cannot hold the edge. Zero
	// means DefaultPostTimeout.
	PostTimeout Duration `env:"POST_TIMEOUT"`
	// APIQueryTimeout bounds how long a blocking query of the sessions
	// API (POST /api/v1/sessions/query) waits for its run to end; the run
	// goes on after it. Zero means DefaultAPIQueryTimeout.
	APIQueryTimeout Duration `env:"API_QUERY_TIMEOUT"`
	// MaxUserText caps the text of one user message collected for a run.
	// Zero means DefaultMaxUserText.
	MaxUserText int `env:"MAX_USER_TEXT"`
	// ServerCredit says whether the credit a client advertises in its HAI
	// paces delivery to it: CreditAuto (default), CreditOn or CreditOff.
	ServerCredit string `env:"SERVER_CREDIT"`
	// PressureInterval is how often the work-queue depth is sampled, and
	// how soon a held-back credit grant is tried again. Zero means
	// DefaultPressureInterval.
	PressureInterval Duration `env:"PRESSURE_INTERVAL"`
	// MaxPendingAppends and MaxQueueDepth are the back-pressure at which
	// the edge stops granting clients credit: appends awaiting their
	// JetStream ack on this edge, and messages waiting in the run and
	// tool work queues. Below them grants shrink in proportion. Zero
	// means DefaultMaxPendingAppends and DefaultMaxQueueDepth.
	MaxPendingAppends int `env:"BACKPRESSURE_MAX_APPENDS"`
	MaxQueueDepth     int `env:"BACKPRESSURE_MAX_QUEUE"`
	// MaxConcurrentRuns caps the runs one session may have queued or
	// running at once (a client's HAI may lower it for its own
	// requests); more are RUN_LIMIT_EXCEEDED. Zero means
	// DefaultMaxConcurrentRuns.
	MaxConcurrentRuns int `env:"MAX_CONCURRENT_RUNS"`
	// RunStaleAfter is how long a run may go without its agent's
	// heartbeat before the limit stops counting it. Zero means
	// streams.DefaultRunStaleAfter.
	RunStaleAfter Duration `env:"RUN_STALE_AFTER"`
	// MaxAudioBytes caps the binary data of one AUDIO_CHUNK (bin_len, or
	// the decoded base64). Zero means DefaultMaxAudioBytes.
	MaxAudioBytes int `env:"MAX_AUDIO_BYTES"`
	// MaxReplayBytes caps what one REPLAY_REQUEST resends (all those of
	// one POST together): past it the replay stops, and says from which
	// seq to ask again. At least one message is always sent. Zero means
	// DefaultMaxReplayBytes.
	MaxReplayBytes int `env:"REPLAY_MAX_BYTES"`

	// Per-user limits, counted by each edge for the users (role user) it
	// serves; agents and admins are not limited. A request over one gets
	// RATE_LIMITED (HTTP 429) naming the limit and when to retry. Zero
	// means the default named beside each; a negative value turns the
	// limit off.
	//
	// UserMaxConnections caps a user's live connections and POSTs in
	// progress (DefaultUserMaxConnections).
	UserMaxConnections int `env:"USER_MAX_CONNECTIONS"`
	// UserMessagesPerSecond caps the envelopes a user stores, with a burst
	// of two seconds' worth (DefaultUserMessagesPerSecond).
	UserMessagesPerSecond int `env:"USER_MESSAGES_PER_SECOND"`
	// UserSessionsPerMinute caps the sessions a user creates
	// (DefaultUserSessionsPerMinute).
	UserSessionsPerMinute int `env:"USER_SESSIONS_PER_MINUTE"`
	// UserMaxSessions caps the sessions (not deleted) a user has
	// (DefaultUserMaxSessions); past it a new one is refused with
	// TOO_MANY_SESSIONS until the user deletes some.
	UserMaxSessions int `env:"USER_MAX_SESSIONS"`
	// UserRunsPerMinute and UserToolCallsPerMinute cap the runs and tool
	// calls a user starts (DefaultUserRunsPerMinute,
	// DefaultUserToolCallsPerMinute).
	UserRunsPerMinute      int `env:"USER_RUNS_PER_MINUTE"`
	UserToolCallsPerMinute int `env:"USER_TOOL_CALLS_PER_MINUTE"`
	// UserReplayBytesPerMinute caps the bytes REPLAY_REQUESTs resend to a
	// user (DefaultUserReplayBytesPerMinute).
	UserReplayBytesPerMinute int `env:"USER_REPLAY_BYTES_PER_MINUTE"`
	// UserMaxRuns and UserMaxToolCalls cap a user's runs and tool calls
	// queued or running at once, counted by JetStream over every edge
	// (DefaultUserMaxRuns, DefaultUserMaxToolCalls). They also bound how
	// far one user's flood can delay a user who shares its queue shard.
	UserMaxRuns      int `env:"USER_MAX_RUNS"`
	UserMaxToolCalls int `env:"USER_MAX_TOOL_CALLS"`

	// ToolAccess says who may call which tool (auth.ToolAccess): a
	// TOOL_CALL from anyone else is refused with TOOL_NOT_FOUND, and the
	// tool lists (TOOL_LIST, TOOL_SCHEMA, GET /haip/tools) show each caller
	// only the tools it may call. Empty: every tool to everyone.
	ToolAccess auth.ToolAccess `env:"TOOL_ACCESS"`
}

// NoUserLimits turns every per-user limit off (for a load tool whose one
// token speaks for many simulated users).
func (c *Config) NoUserLimits() {
	c.UserMaxConnections, c.UserMessagesPerSecond, c.UserSessionsPerMinute = -1, -1, -1
	c.UserRunsPerMinute, c.UserToolCallsPerMinute, c.UserReplayBytesPerMinute = -1, -1, -1
	c.UserMaxRuns, c.UserMaxToolCalls, c.UserMaxSessions = -1, -1, -1
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *Duration, d time.Duration) {
		if *v <= 0 {
			*v = Duration(d)
		}
	}
	def(&c.MaxConnections, DefaultMaxConnections)
	def(&c.MaxHTTPConnections, 2*c.MaxConnections+HTTPConnectionsHeadroom)
	def(&c.ClientCreditMessages, DefaultClientCredit)
	def(&c.ClientCreditBytes, DefaultClientCreditBytes)
	def(&c.CatchupBatch, DefaultCatchupBatch)
	def(&c.CatchupBytes, DefaultCatchupBytes)
	def(&c.CatchupReads, DefaultCatchupReads)
	def(&c.LiveBuffer, DefaultLiveBuffer)
	def(&c.MaxUserText, DefaultMaxUserText)
	def(&c.MaxPendingAppends, DefaultMaxPendingAppends)
	def(&c.MaxQueueDepth, DefaultMaxQueueDepth)
	def(&c.MaxConcurrentRuns, DefaultMaxConcurrentRuns)
	def(&c.MaxAudioBytes, DefaultMaxAudioBytes)
	def(&c.MaxReplayBytes, DefaultMaxReplayBytes)
	defLimit := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defLimit(&c.UserMaxConnections, DefaultUserMaxConnections)
	defLimit(&c.UserMessagesPerSecond, DefaultUserMessagesPerSecond)
	defLimit(&c.UserSessionsPerMinute, DefaultUserSessionsPerMinute)
	defLimit(&c.UserMaxSessions, DefaultUserMaxSessions)
	defLimit(&c.UserRunsPerMinute, DefaultUserRunsPerMinute)
	defLimit(&c.UserToolCallsPerMinute, DefaultUserToolCallsPerMinute)
	defLimit(&c.UserReplayBytesPerMinute, DefaultUserReplayBytesPerMinute)
	defLimit(&c.UserMaxRuns, DefaultUserMaxRuns)
	defLimit(&c.UserMaxToolCalls, DefaultUserMaxToolCalls)
	defD(&c.PressureInterval, DefaultPressureInterval)
	if c.ServerCredit == "" {
		c.ServerCredit = CreditAuto
	}
	defD(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	defD(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	defD(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	defD(&c.WriteTimeout, DefaultWriteTimeout)
	defD(&c.PostTimeout, DefaultPostTimeout)
	defD(&c.APIQueryTimeout, DefaultAPIQueryTimeout)
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if int64(c.MaxAudioBytes) > c.MaxMessageBytes {
		// Only the default can be larger (Validate refuses a larger
		// MAX_AUDIO_BYTES): a binary frame is one frame.
		c.MaxAudioBytes = int(c.MaxMessageBytes)
	}
	return c
}

// Validate reports every bad field at once.
func (c Config) Validate() error {
	var errs []error
	neg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s is %d: want >= 0", name, v))
		}
	}
	neg("MAX_CONNECTIONS", int64(c.MaxConnections))
	neg("MAX_HTTP_CONNECTIONS", int64(c.MaxHTTPConnections))
	neg("MAX_MESSAGE_BYTES", c.MaxMessageBytes)
	neg("CLIENT_CREDIT_MESSAGES", int64(c.ClientCreditMessages))
	neg("CLIENT_CREDIT_BYTES", int64(c.ClientCreditBytes))
	neg("CATCHUP_BATCH", int64(c.CatchupBatch))
	neg("CATCHUP_BYTES", int64(c.CatchupBytes))
	neg("CATCHUP_READS", int64(c.CatchupReads))
	neg("LIVE_BUFFER", int64(c.LiveBuffer))
	neg("MAX_USER_TEXT", int64(c.MaxUserText))
	neg("BACKPRESSURE_MAX_APPENDS", int64(c.MaxPendingAppends))
	neg("BACKPRESSURE_MAX_QUEUE", int64(c.MaxQueueDepth))
	neg("MAX_CONCURRENT_RUNS", int64(c.MaxConcurrentRuns))
	neg("MAX_AUDIO_BYTES", int64(c.MaxAudioBytes))
	neg("REPLAY_MAX_BYTES", int64(c.MaxReplayBytes))
	switch c.ServerCredit {
	case "", CreditAuto, CreditOn, CreditOff:
	default:
		errs = append(errs, fmt.Errorf("SERVER_CREDIT is %q: want auto, on or off", c.ServerCredit))
	}
	// In a fixed order, so that the report reads the same every time.
	for _, d := range []struct {
		name string
		v    Duration
	}{
		{"HEARTBEAT_INTERVAL", c.HeartbeatInterval}, {"HEARTBEAT_TIMEOUT", c.HeartbeatTimeout},
		{"HANDSHAKE_TIMEOUT", c.HandshakeTimeout}, {"WRITE_TIMEOUT", c.WriteTimeout}, {"POST_TIMEOUT", c.PostTimeout}, {"API_QUERY_TIMEOUT", c.APIQueryTimeout},
		{"PRESSURE_INTERVAL", c.PressureInterval}, {"RUN_STALE_AFTER", c.RunStaleAfter},
	} {
		neg(d.name, int64(d.v))
	}
	maxMsg := c.MaxMessageBytes
	if maxMsg <= 0 {
		maxMsg = DefaultMaxMessageBytes
	}
	if c.MaxAudioBytes > 0 && int64(c.MaxAudioBytes) > maxMsg {
		errs = append(errs, fmt.Errorf("MAX_AUDIO_BYTES is %d: want <= MAX_MESSAGE_BYTES (%d): a binary frame is one frame", c.MaxAudioBytes, maxMsg))
	}
	for _, o := range c.CORSOrigins {
		if strings.TrimSpace(o) == "*" {
			continue
		}
		if _, err := normalizeOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("CORS_ORIGINS entry %q: %w", o, err))
		}
	}
	if n := len(c.MetricsToken); n > 0 && n < MinMetricsTokenLen {
		errs = append(errs, fmt.Errorf("METRICS_TOKEN is %d bytes: want at least %d", n, MinMetricsTokenLen))
	}
	if c.MaxMessageBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("MAX_MESSAGE_BYTES is %d: want <= 64 MiB", c.MaxMessageBytes))
	}
	return errors.Join(errs...)
}
