package streams

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Names of the JetStream objects the fabric owns. Everything lives under the
// "haip." subject prefix so that it can share an account with other users.
const (
	// SessionStream is the stream of session logs: one subject per session
	// and direction, dense Haip-Seq per subject.
	SessionStream = "HAIP_SESSIONS"
	// RunStream is the work queue of agent runs.
	RunStream = "HAIP_RUNS"
	// SessionBucket is the KV bucket of session records (owner, created).
	SessionBucket = "haip_sessions"
	// TailBucket is the KV bucket remembering each log's highest seq, so that
	// numbering continues after retention has emptied a log.
	TailBucket = "haip_tails"

	sessionPrefix = "haip.session."
	livePrefix    = "haip.live."
	runPrefix     = "haip.runs."
	bindPrefix    = "haip.bind."
	flowPrefix    = "haip.flow."
)

// PresenceSubject is the core-NATS subject on which an edge asks every
// edge how many connections they have on a session (sessions API
// details); DeletedSubject the one on which it tells every edge that a
// session was deleted, so that they close its connections. Both carry
// the session id as the message body.
const (
	PresenceSubject = "haip.presence"
	DeletedSubject  = "haip.deleted"
	// OperatorSubject is the one on which an edge asks every edge for its
	// operator overview (connections, rates, recent disconnects).
	OperatorSubject = "haip.operator"
)

// TicketBucket holds the browser tickets: single-use, short-lived
// stand-ins for a token in a WebSocket or EventSource URL (edge). Its
// entries expire after TicketTTL whatever they say.
const (
	TicketBucket = "haip_tickets"
	TicketTTL    = time.Minute
)

// BindQueue is the queue group of streams waiting for their HAI: one
// waiting stream of a user takes each HAI that user POSTs.
const BindQueue = "bind"

// BindSubject is the core-NATS subject on which a user's streams that
// opened without a session (the official SDK's SSE and HTTP-streaming
// GETs) wait for the HAI the same user POSTs next, on any edge. The JWT
// subject is hashed: it may hold any character, a subject token may not.
func BindSubject(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return bindPrefix + hex.EncodeToString(sum[:16])
}

// FlowSubject is the core-NATS subject on which flow control a user POSTs
// for a session (FLOW_UPDATE, PAUSE_CHANNEL, RESUME_CHANNEL) reaches that
// user's one-way streams of the session (SSE, half-duplex), on any edge.
func FlowSubject(session, owner string) (string, error) {
	if err := ValidateSessionID(session); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(owner))
	return flowPrefix + session + "." + hex.EncodeToString(sum[:16]), nil
}

// Direction names one of a session's two logs.
type Direction string

const (
	// In is what users send: the log agents read.
	In Direction = "in"
	// Out is what users receive: agent output and server events.
	Out Direction = "out"
)

// Valid reports whether d is In or Out.
func (d Direction) Valid() bool { return d == In || d == Out }

// Opposite returns the other direction.
func (d Direction) Opposite() Direction {
	if d == In {
		return Out
	}
	return In
}

// ErrInvalidSessionID is wrapped by every refusal of a session id.
var ErrInvalidSessionID = errors.New("invalid session id")

// MaxSessionIDLen is the longest session id accepted (HAIP's channel pattern).
const MaxSessionIDLen = 128

var sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidateSessionID refuses any id that is not 1–128 characters of
// [A-Za-z0-9_-]. Session ids become subject tokens, so this is what keeps
// ".", "*", ">" and white space from escaping a session's subjects.
func ValidateSessionID(id string) error {
	if len(id) > MaxSessionIDLen || !sessionIDPattern.MatchString(id) {
		return fmt.Errorf("%w %q: want 1-%d characters of [A-Za-z0-9_-]", ErrInvalidSessionID, truncate(id, 64), MaxSessionIDLen)
	}
	return nil
}

// LogSubject is the subject of a session's log in direction d.
func LogSubject(session string, d Direction) (string, error) {
	if err := ValidateSessionID(session); err != nil {
		return "", err
	}
	if !d.Valid() {
		return "", fmt.Errorf("invalid direction %q", d)
	}
	return sessionPrefix + session + "." + string(d), nil
}

// LiveSubject is the core-NATS subject on which JetStream republishes every
// message stored on LogSubject(session, d).
func LiveSubject(session string, d Direction) (string, error) {
	if err := ValidateSessionID(session); err != nil {
		return "", err
	}
	if !d.Valid() {
		return "", fmt.Errorf("invalid direction %q", d)
	}
	return livePrefix + session + "." + string(d), nil
}

// QueueShards is how many shards each work queue (runs, and each tool's
// calls) is split into. A user's work always lands in the same shard
// (UserShard), each shard has a durable consumer of its own, and workers
// take from the shards in turn, so one user's flood waits behind itself
// rather than in front of everyone. Publishers and workers must agree on
// it: changing it strands work queued in shards that no longer exist.
const QueueShards = 16

// UserShard is the shard (0 to QueueShards-1) of a user's work: a hash of
// the user's JWT subject, which may hold any character a subject token
// may not. Work queued with no user (an older publisher) is in shard
// UserShard("").
func UserShard(user string) int {
	sum := sha256.Sum256([]byte(user))
	return int(binary.BigEndian.Uint32(sum[:4]) % QueueShards)
}

// UserKey is the subject token that names a user's work in the queues:
// 16 hex digits of a hash of the JWT subject (which may hold any
// character a token may not). With it in the subject, JetStream itself
// counts a user's work in flight (Queues.InFlight), on every edge alike.
func UserKey(user string) string {
	sum := sha256.Sum256([]byte(user))
	return hex.EncodeToString(sum[:8])
}

// RunSubject is the work-queue subject of a session's run requests for
// user: haip.runs.<shard>.<user key>.<session>.
func RunSubject(session, user string) (string, error) {
	if err := ValidateSessionID(session); err != nil {
		return "", err
	}
	return runPrefix + strconv.Itoa(UserShard(user)) + "." + UserKey(user) + "." + session, nil
}

// LegacyRunSubject is the subject run requests were queued on before the
// run queue was sharded (haip.runs.<session>). Nothing publishes there any
// more; agents still take what an older edge queued there.
func LegacyRunSubject(session string) (string, error) {
	if err := ValidateSessionID(session); err != nil {
		return "", err
	}
	return runPrefix + session, nil
}

// tailKey is the TailBucket key of a session log.
func tailKey(session string, d Direction) string { return session + "." + string(d) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
