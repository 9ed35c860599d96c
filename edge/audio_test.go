package edge_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

func audioBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// readAudio reads until an AUDIO_CHUNK arrives and returns it with its
// bytes (binary frame, or base64 data).
func readAudio(t *testing.T, c *client.Conn, within time.Duration) (*haip.Envelope, []byte, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		env, bin, err := c.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("waiting for AUDIO_CHUNK: %v", err)
		}
		if env.Type == haip.TypeError {
			t.Fatalf("ERROR: %s", env.Payload)
		}
		if env.Type != haip.TypeAudioChunk {
			continue
		}
		if bin != nil {
			return env, bin, true
		}
		var p haip.AudioChunkPayload
		if err := env.DecodePayload(&p); err != nil {
			t.Fatal(err)
		}
		data, err := base64.StdEncoding.DecodeString(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		return env, data, false
	}
}

// An audio chunk sent as a WebSocket binary frame is stored with its
// envelope, echoed by the demo agent on AUDIO_OUT as a binary frame, and
// replayed after a reconnect: as binary frames to a client that takes
// them, as base64 to one that does not.
func TestAudioBinaryRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	f.Agent(-1)
	c := f.Dial(e, client.Options{Binary: true})
	if !c.Hello.Binary() {
		t.Fatal("the edge did not announce binary_frames")
	}
	data := audioBytes(3000, 1)
	env, _ := haip.New(c.Session(), haip.ChannelAudioIn, haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: haip.NewUUID(), Mime: "audio/opus"})
	if err := c.SendBinary(context.Background(), env, data); err != nil {
		t.Fatal(err)
	}
	echo, got, binary := readAudio(t, c, 20*time.Second)
	if !binary || !bytes.Equal(got, data) || echo.Channel != haip.ChannelAudioOut || echo.BinMime != "audio/opus" || echo.RunID == "" {
		t.Fatalf("echo: binary=%v %d bytes equal=%v channel %s mime %q run %q", binary, len(got), bytes.Equal(got, data), echo.Channel, echo.BinMime, echo.RunID)
	}
	harness.ReadUntil(t, c, 20*time.Second, harness.IsRunFinished)

	// Stored in the inbound log as the envelope plus its bytes.
	in := logEntries(t, f, c.Session(), streams.In)
	if len(in) != 1 || !bytes.Equal(in[0].Bin, data) {
		t.Fatalf("inbound log: %d entries", len(in))
	}

	for _, binaryClient := range []bool{true, false} {
		r := f.Dial(e, client.Options{Session: c.Session(), LastRxSeq: harness.U64(0), Binary: binaryClient})
		replayed, got, asBinary := readAudio(t, r, 20*time.Second)
		if asBinary != binaryClient || !bytes.Equal(got, data) || replayed.ID != echo.ID || replayed.Seq != echo.Seq {
			t.Fatalf("replay to a binary=%v client: binary=%v equal=%v id %s seq %d", binaryClient, asBinary, bytes.Equal(got, data), replayed.ID, replayed.Seq)
		}
		if !binaryClient && replayed.BinLen != nil {
			t.Fatal("base64 form still carries bin_len")
		}
	}
}

// Audio over the HTTP transports: sent base64 by POST, echoed on an SSE
// stream as base64 (SSE carries no binary frames).
func TestAudioOverPostAndSSE(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	f.Agent(-1)
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()
	stream := openSSE(t, nil, e.Base+"/haip/sse?session="+session+"&token="+tok, nil)

	data := audioBytes(2048, 9)
	env, _ := haip.New(session, haip.ChannelAudioIn, haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: haip.NewUUID(), Mime: "audio/wav",
		Data: base64.StdEncoding.EncodeToString(data)})
	body, _ := haip.Encode(env)
	if status, pr := post(t, e.Base+"/haip/messages", tok, nil, body); status != http.StatusOK {
		t.Fatalf("POST audio: %d", status)
	} else {
		mustAccept(t, pr, 1)
	}
	got := stream.logUntil(20*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeAudioChunk })
	echo := got[len(got)-1]
	var p haip.AudioChunkPayload
	_ = echo.DecodePayload(&p)
	echoed, _ := base64.StdEncoding.DecodeString(p.Data)
	if echo.Channel != haip.ChannelAudioOut || !bytes.Equal(echoed, data) || p.Mime != "audio/wav" || echo.BinLen != nil {
		t.Fatalf("echo on SSE: channel %s, %d bytes, equal %v, mime %s", echo.Channel, len(echoed), bytes.Equal(echoed, data), p.Mime)
	}
}

// Audio size limits and framing errors get clear answers, and the
// connection goes on.
func TestAudioRefusals(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{MaxAudioBytes: 1000})
	tok := f.Token("alice", auth.RoleUser)
	r := rawDial(t, tokenURL(e, tok))
	r.handshake()
	chunk := func(ch haip.Channel, binLen int64, data string) *haip.Envelope {
		env := r.env(ch, haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: haip.NewUUID(), Mime: "audio/opus", Data: data})
		if binLen >= 0 {
			env.BinLen = &binLen
		}
		return env
	}

	// Announced too large: refused, and its binary frame skipped.
	big := chunk(haip.ChannelAudioIn, 2000, "")
	r.sendEnv(big)
	r.write(websocket.MessageBinary, audioBytes(2000, 0))
	if p := r.expectError(10 * time.Second); p.Code != haip.CodeMessageTooLarge || p.RelatedID != big.ID {
		t.Fatalf("oversized bin_len: %+v", p)
	}
	// Base64 too large.
	b64 := chunk(haip.ChannelAudioIn, -1, base64.StdEncoding.EncodeToString(audioBytes(1500, 0)))
	r.sendEnv(b64)
	if p := r.expectError(10 * time.Second); p.Code != haip.CodeMessageTooLarge || p.RelatedID != b64.ID {
		t.Fatalf("oversized base64: %+v", p)
	}
	// Binary frame of the wrong length.
	short := chunk(haip.ChannelAudioIn, 500, "")
	r.sendEnv(short)
	r.write(websocket.MessageBinary, audioBytes(400, 0))
	if p := r.expectError(10 * time.Second); p.Code != haip.CodeProtocolViolation || p.RelatedID != short.ID {
		t.Fatalf("short binary frame: %+v", p)
	}
	// Announced, but a text frame came instead of the bytes.
	missing := chunk(haip.ChannelAudioIn, 10, "")
	r.sendEnv(missing)
	if p := r.pingPongError(); p.Code != haip.CodeProtocolViolation || p.RelatedID != missing.ID {
		t.Fatalf("missing binary frame: %+v", p)
	}
	// Audio on a text channel.
	wrong := chunk(haip.ChannelUser, -1, base64.StdEncoding.EncodeToString([]byte("abc")))
	r.sendEnv(wrong)
	if p := r.expectError(10 * time.Second); p.Code != haip.CodeProtocolViolation || p.RelatedID != wrong.ID {
		t.Fatalf("audio on USER: %+v", p)
	}
	// A good one still goes through, and nothing refused was stored.
	ok := chunk(haip.ChannelAudioIn, 3, "")
	r.sendEnv(ok)
	r.write(websocket.MessageBinary, []byte{1, 2, 3})
	r.pingPong("good chunk")
	entries := logEntries(t, f, r.session, streams.In)
	if len(entries) != 1 || !bytes.Equal(entries[0].Bin, []byte{1, 2, 3}) {
		t.Fatalf("%d entries stored, want the one good chunk", len(entries))
	}
	// Over POST: a bin_len with no way to carry the bytes.
	env, _ := haip.New(r.session, haip.ChannelAudioIn, haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: haip.NewUUID(), Mime: "audio/opus"})
	n := int64(3)
	env.BinLen = &n
	body, _ := haip.Encode(env)
	if status, pr := post(t, e.Base+"/haip/messages", tok, nil, body); status != http.StatusBadRequest || len(pr.Results) != 1 ||
		pr.Results[0].Status != "error" || pr.Results[0].Error == nil || pr.Results[0].Error.Code != haip.CodeProtocolViolation {
		t.Fatalf("POST with bin_len: %d %+v", status, pr)
	}
}

// pingPongError sends a PING and returns the ERROR read before its PONG.
func (r *rawWS) pingPongError() haip.ErrorPayload {
	r.t.Helper()
	nonce := haip.NewUUID()
	r.send(haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: nonce})
	_, skipped := r.expect(10*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypePong && pingNonce(r.t, e) == nonce })
	for _, e := range skipped {
		if e.Type == haip.TypeError {
			return harness.ErrorPayload(r.t, e)
		}
	}
	r.t.Fatal("no ERROR before the PONG")
	return haip.ErrorPayload{}
}
