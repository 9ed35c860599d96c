package edge

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/streams"
)

// Edges answer each other about sessions over core NATS: how many
// connections each has on a session (presence), and that a session was
// deleted (its connections close with 4003). Nothing of this is stored.

// presenceWait is how long a presence question waits for edges' answers.
// Edges on one NATS cluster answer within a millisecond or two; one that
// does not answer in time is not counted.
const presenceWait = 50 * time.Millisecond

// subscribeSessions starts answering presence questions and deletion
// notices. The subscriptions end with the NATS connection or Shutdown.
func (s *Server) subscribeSessions() error {
	pres, err := s.nc.Subscribe(streams.PresenceSubject, func(m *nats.Msg) {
		session := string(m.Data)
		if streams.ValidateSessionID(session) != nil || m.Reply == "" {
			return
		}
		if n := len(s.hub.listeners(session)); n > 0 {
			_ = m.Respond([]byte(strconv.Itoa(n)))
		}
	})
	if err != nil {
		return err
	}
	del, err := s.nc.Subscribe(streams.DeletedSubject, func(m *nats.Msg) {
		session := string(m.Data)
		if streams.ValidateSessionID(session) != nil {
			return
		}
		for _, c := range s.hub.listeners(session) {
			c.fatal(sessionDeleted())
		}
	})
	if err != nil {
		_ = pres.Unsubscribe()
		return err
	}
	s.sessionSubs = []*nats.Subscription{pres, del}
	return nil
}

// unsubscribeSessions stops subscribeSessions' answers.
func (s *Server) unsubscribeSessions() {
	for _, sub := range s.sessionSubs {
		_ = sub.Unsubscribe()
	}
}

// presence returns how many connections the edges that answer within
// presenceWait have on session (this edge included).
func (s *Server) presence(ctx context.Context, session string) int {
	inbox := s.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := s.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return len(s.hub.listeners(session))
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest(streams.PresenceSubject, inbox, []byte(session)); err != nil {
		s.logger.Warn("presence", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		return len(s.hub.listeners(session))
	}
	t := time.NewTimer(presenceWait)
	defer t.Stop()
	total := 0
	for {
		select {
		case m := <-ch:
			if n, err := strconv.Atoi(string(m.Data)); err == nil && n > 0 {
				total += n
			}
		case <-t.C:
			return total
		case <-ctx.Done():
			return total
		}
	}
}

// announceDeleted tells every edge (this one too) that session was
// deleted.
func (s *Server) announceDeleted(session string) {
	if err := s.nc.Publish(streams.DeletedSubject, []byte(session)); err != nil {
		s.logger.Warn("announce deleted session", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
	}
}
