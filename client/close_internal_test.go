package client

import (
	"errors"
	"io"
	"testing"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/haip"
)

func TestEndpointURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		raw, path, want string
	}{
		{"ws://h:1/haip/websocket", pathSSE, "http://h:1/haip/sse"},
		{"wss://h/haip/websocket?x=1", pathStream, "https://h/haip/stream?x=1"},
		{"http://h:1", pathMessages, "http://h:1/haip/messages"},
		{"http://h:1/", pathWebSocket, "ws://h:1/haip/websocket"},
		{"https://h/api/haip/sse", pathMessages, "https://h/api/haip/messages"},
		{"https://h/api/", pathSSE, "https://h/api/haip/sse"},
	} {
		u, err := endpointURL(c.raw, c.path)
		if err != nil || u.String() != c.want {
			t.Errorf("endpointURL(%q, %q) = %v, %v; want %s", c.raw, c.path, u, err, c.want)
		}
	}
	for _, bad := range []string{"ftp://h/x", "http:///haip/sse", "://"} {
		if u, err := endpointURL(bad, pathSSE); err == nil {
			t.Errorf("endpointURL(%q) = %v, want an error", bad, u)
		}
	}
}

func TestParseCloseComment(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		text   string
		ok     bool
		code   websocket.StatusCode
		reason string
	}{
		{"close 1001 edge shutting down; resume from seq 7", true, 1001, "edge shutting down; resume from seq 7"},
		{"close 4000 slow consumer; resume from seq 0", true, 4000, "slow consumer; resume from seq 0"},
		{"close 1000", true, 1000, ""},
		{"ping", false, 0, ""},
		{"close x reason", false, 0, ""},
		{"close 99 too small", false, 0, ""},
	} {
		ce, ok := parseCloseComment([]byte(c.text))
		if ok != c.ok || (ok && (ce.Code != c.code || ce.Reason != c.reason)) {
			t.Errorf("parseCloseComment(%q) = %+v, %v", c.text, ce, ok)
		}
	}
}

// An NDJSON stream's end takes its close code from a final ERROR only
// when that ERROR ends connections.
func TestStreamEnd(t *testing.T) {
	t.Parallel()
	errorEnv := func(code haip.Code) *haip.Envelope {
		env, err := haip.New("s", haip.ChannelSystem, haip.TypeError, haip.ErrorPayload{Code: code, Message: "m"})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	part, _ := haip.New("s", haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: haip.NewUUID(), Text: "x"})
	for _, c := range []struct {
		last *haip.Envelope
		want websocket.StatusCode
	}{
		{nil, -1},
		{part, -1},
		{errorEnv(haip.CodeProtocolViolation), -1},
		{errorEnv(haip.CodeAuthenticationFailed), StatusTokenExpired},
		{errorEnv(haip.CodeServerShutdown), websocket.StatusGoingAway},
	} {
		err := streamEnd(c.last, io.EOF)
		if code, _ := CloseStatus(err); code != c.want || !errors.Is(err, io.EOF) {
			t.Errorf("after %v: %v (close %d), want close %d wrapping EOF", c.last, err, code, c.want)
		}
	}
}
