package edge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Validate names every bad field, always in the same order, and refuses
// an audio limit larger than a frame instead of lowering it unseen.
func TestConfigValidate(t *testing.T) {
	bad := Config{WriteTimeout: -1, HeartbeatInterval: -1, PostTimeout: -1, RunStaleAfter: -1, HandshakeTimeout: -1,
		MaxAudioBytes: 2 << 20, MaxMessageBytes: 1 << 20}
	first := bad.Validate()
	if first == nil {
		t.Fatal("bad config accepted")
	}
	for range 20 {
		if got := bad.Validate(); got.Error() != first.Error() {
			t.Fatalf("report changed between calls:\n%s\n%s", first, got)
		}
	}
	msg := first.Error()
	for _, want := range []string{"HEARTBEAT_INTERVAL", "HANDSHAKE_TIMEOUT", "WRITE_TIMEOUT", "POST_TIMEOUT", "RUN_STALE_AFTER", "MAX_AUDIO_BYTES"} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %s:\n%s", want, msg)
		}
	}
	if strings.Index(msg, "HEARTBEAT_INTERVAL") > strings.Index(msg, "WRITE_TIMEOUT") {
		t.Errorf("report not in field order:\n%s", msg)
	}
	if err := (Config{MaxAudioBytes: 2 << 20}).Validate(); err == nil {
		t.Error("MAX_AUDIO_BYTES above the default MAX_MESSAGE_BYTES accepted")
	}
	// Only the default audio limit follows a smaller frame limit.
	if d := (Config{MaxMessageBytes: 64 << 10}).withDefaults(); d.MaxAudioBytes != 64<<10 {
		t.Errorf("default audio limit %d with 64 KiB frames", d.MaxAudioBytes)
	}
}

// failingKeepalive is a transport whose keep-alive fails at once, as a
// write to a peer that has gone does.
type failingKeepalive struct{}

func (f *failingKeepalive) kind() string                                { return "test" }
func (f *failingKeepalive) read(context.Context) (frame, error)         { return frame{}, errors.New("gone") }
func (f *failingKeepalive) write(context.Context, uint64, []byte) error { return nil }
func (f *failingKeepalive) keepalive(context.Context) (bool, error) {
	return false, errors.New("broken pipe")
}
func (f *failingKeepalive) peerCanSend() bool       { return false }
func (f *failingKeepalive) close(CloseCode, string) {}
func (f *failingKeepalive) abort()                  {}
func (f *failingKeepalive) tellsCloseReason() bool  { return true }

// A keep-alive that fails because the peer went is a peer that closed,
// not a slow consumer.
func TestKeepaliveFailureIsNotSlow(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	tr := &failingKeepalive{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &conn{srv: &Server{cfg: Config{}.withDefaults(), metrics: m}, t: tr, ctx: ctx, cancel: cancel}
	c.lastInbound.Store(time.Now().UnixNano())
	var d *disconnect
	if err := c.heartbeat(false); !errors.As(err, &d) || d.label != labelPeer || d.code != CloseNormal {
		t.Fatalf("heartbeat: %v; want the peer gone, not a slow consumer", err)
	}
}
func (f *failingKeepalive) postedFlow() bool { return false }
