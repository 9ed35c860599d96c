package edge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Browser tickets. A browser cannot set Authorization on a WebSocket or
// an EventSource, and a token in a URL ends up in access logs, proxies
// and history, where it stays valid for hours. A page with a token
// (held in memory) instead asks POST /api/v1/tickets, Authorization
// header only, for a ticket: 32 random bytes, valid ticketTTL (never
// past the token's own expiry), good for one GET request (?ticket=) on
// any edge. The ticket stands for the token's identity: the request is
// authorised exactly as the token would be, and the connection it opens
// ends when the token would have expired (close 4002).
//
// Tickets live in the KV bucket streams.TicketBucket, keyed by the
// SHA-256 of the ticket (the bucket never holds a usable ticket), whose
// entries expire after streams.TicketTTL. A ticket is redeemed by a
// delete conditional on the revision read: of two edges redeeming the
// same ticket at once, exactly one succeeds.

// ticketTTL is how long a ticket may be redeemed after it is minted.
const ticketTTL = 30 * time.Second

// ticketQueryParam carries a ticket in a URL.
const ticketQueryParam = "ticket"

// ticketBytes is the entropy of a ticket.
const ticketBytes = 32

// ticketRecord is what the bucket holds for a ticket: the identity it
// stands for and until when it may be redeemed.
type ticketRecord struct {
	Subject   string    `json:"sub"`
	Role      auth.Role `json:"role"`
	Sessions  []string  `json:"sessions,omitempty"`
	TokenID   string    `json:"jti,omitempty"`
	Expires   time.Time `json:"exp"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// errTicket is a ticket refused: unknown, already used or expired. The
// three are not told apart.
var errTicket = errors.New("ticket unknown, used or expired")

// ticketStore mints and redeems tickets. The zero value is ready: the
// bucket is bound on first use (streams.Ensure makes it).
type ticketStore struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (ts *ticketStore) bucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.kv != nil {
		return ts.kv, nil
	}
	kv, err := js.KeyValue(ctx, streams.TicketBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open bucket %s: %w", streams.TicketBucket, err)
	}
	ts.kv = kv
	return kv, nil
}

// ticketKey is the bucket key of a ticket.
func ticketKey(ticket string) string {
	sum := sha256.Sum256([]byte(ticket))
	return hex.EncodeToString(sum[:])
}

// mint stores a ticket for id, valid until now+ticketTTL or the token's
// expiry, whichever comes first.
func (ts *ticketStore) mint(ctx context.Context, js jetstream.JetStream, id auth.Identity, now time.Time) (string, time.Time, error) {
	kv, err := ts.bucket(ctx, js)
	if err != nil {
		return "", time.Time{}, err
	}
	raw := make([]byte, ticketBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", time.Time{}, fmt.Errorf("cannot mint ticket: %w", err)
	}
	ticket := base64.RawURLEncoding.EncodeToString(raw)
	expires := now.Add(ticketTTL)
	if !id.Expires.IsZero() && id.Expires.Before(expires) {
		expires = id.Expires
	}
	rec := ticketRecord{Subject: id.Subject, Role: id.Role, Sessions: id.Sessions, TokenID: id.TokenID, Expires: id.Expires, ExpiresAt: expires}
	data, err := json.Marshal(rec)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("cannot mint ticket: %w", err)
	}
	if _, err := kv.Create(ctx, ticketKey(ticket), data); err != nil {
		return "", time.Time{}, fmt.Errorf("cannot store ticket: %w", err)
	}
	return ticket, expires, nil
}

// redeem spends a ticket and returns the identity it stands for:
// errTicket when it is unknown, already spent or expired, another error
// when the bucket cannot be reached.
func (ts *ticketStore) redeem(ctx context.Context, js jetstream.JetStream, ticket string, now time.Time) (auth.Identity, error) {
	if len(ticket) != base64.RawURLEncoding.EncodedLen(ticketBytes) {
		return auth.Identity{}, errTicket
	}
	kv, err := ts.bucket(ctx, js)
	if err != nil {
		return auth.Identity{}, err
	}
	key := ticketKey(ticket)
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return auth.Identity{}, errTicket
	}
	if err != nil {
		return auth.Identity{}, fmt.Errorf("cannot read ticket: %w", err)
	}
	// Spend it first, whatever it says: a ticket is tried once.
	if err := kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return auth.Identity{}, errTicket // another request spent it first
		}
		return auth.Identity{}, fmt.Errorf("cannot spend ticket: %w", err)
	}
	return ticketIdentity(e.Value(), now)
}

// ticketIdentity decodes a stored ticket record: the identity it stands
// for, or errTicket when it does not decode, names no one or has
// expired at now.
func ticketIdentity(data []byte, now time.Time) (auth.Identity, error) {
	var rec ticketRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Subject == "" || !rec.Role.Valid() || len(rec.Subject) > auth.MaxSubjectLen {
		return auth.Identity{}, errTicket
	}
	if !now.Before(rec.ExpiresAt) || (!rec.Expires.IsZero() && !now.Before(rec.Expires)) {
		return auth.Identity{}, errTicket
	}
	return auth.Identity{Subject: rec.Subject, Role: rec.Role, Sessions: rec.Sessions, TokenID: rec.TokenID, Expires: rec.Expires}, nil
}

// ticketFromRequest returns the ticket of a GET request without an
// Authorization header, or "" when it carries none. Tickets are for what
// a browser opens by URL (WebSocket, EventSource): never for a request
// that can carry a header.
func ticketFromRequest(r *http.Request) string {
	if r.Method != http.MethodGet || r.Header.Get("Authorization") != "" {
		return ""
	}
	return r.URL.Query().Get(ticketQueryParam)
}

// verifyRequest returns the identity of a request: its ticket's when it
// carries one (ticketFromRequest), else its token's.
func (s *Server) verifyRequest(r *http.Request) (auth.Identity, error) {
	ticket := ticketFromRequest(r)
	if ticket == "" {
		return s.verifier.VerifyRequest(r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	id, err := s.tickets.redeem(ctx, s.js, ticket, time.Now())
	if err != nil {
		if !errors.Is(err, errTicket) {
			s.logger.Warn("redeem ticket", slog.Any(logKeyErr, err))
		}
		return auth.Identity{}, &auth.TokenError{Reason: reasonTicket, Err: err}
	}
	return id, nil
}

// reasonTicket is the refusal reason of a bad ticket.
const reasonTicket = "bad_ticket"

// ticketAnswer is the body of POST /api/v1/tickets.
type ticketAnswer struct {
	Ticket    string `json:"ticket"`
	ExpiresAt int64  `json:"expiresAt"` // Unix milliseconds
}

// serveTicket answers POST /api/v1/tickets: a ticket for the token in
// the Authorization header (only there: a ticket never mints another).
func (s *Server) serveTicket(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeHTTPError(w, http.StatusServiceUnavailable, "shutting_down", haip.CodeServerShutdown, "edge is shutting down; send the request to another edge", nil)
		return
	}
	token, err := auth.TokenFromHeader(r)
	var id auth.Identity
	if err == nil {
		id, err = s.verifier.Verify(token)
	}
	if err != nil {
		s.metrics.refused.WithLabelValues(transportAPI, "unauthorized").Inc()
		reason := auth.ReasonOf(err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="haip", error="invalid_token"`)
		writeHTTPError(w, http.StatusUnauthorized, "unauthorized", haip.CodeAuthenticationFailed,
			"a ticket needs Authorization: Bearer with a valid token ("+reason+")", map[string]any{"reason": reason})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	ticket, exp, err := s.tickets.mint(ctx, s.js, id, time.Now())
	if err != nil {
		s.logger.Error("mint ticket", slog.Any(logKeyErr, err))
		storeFailed(w)
		return
	}
	writeJSON(w, http.StatusCreated, ticketAnswer{Ticket: ticket, ExpiresAt: exp.UnixMilli()})
}
