package haip_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
)

// payloadFor returns a pointer to the payload struct for t, for
// DecodePayload.
func payloadFor(t haip.Type) any {
	switch t {
	case haip.TypeHAI:
		return new(haip.HelloPayload)
	case haip.TypeRunStarted:
		return new(map[string]any)
	case haip.TypeRunFinished:
		return new(haip.RunFinishedPayload)
	case haip.TypeRunCancel:
		return new(haip.RunCancelPayload)
	case haip.TypeRunError, haip.TypeError:
		return new(haip.ErrorPayload)
	case haip.TypePing, haip.TypePong:
		return new(haip.PingPayload)
	case haip.TypeReplayRequest:
		return new(haip.ReplayRequestPayload)
	case haip.TypeTextMessageStart:
		return new(haip.TextMessageStartPayload)
	case haip.TypeTextMessagePart:
		return new(haip.TextMessagePartPayload)
	case haip.TypeTextMessageEnd:
		return new(haip.TextMessageEndPayload)
	case haip.TypeAudioChunk:
		return new(haip.AudioChunkPayload)
	case haip.TypeToolCall:
		return new(haip.ToolCallPayload)
	case haip.TypeToolUpdate:
		return new(haip.ToolUpdatePayload)
	case haip.TypeToolDone:
		return new(haip.ToolDonePayload)
	case haip.TypeToolCancel:
		return new(haip.ToolCancelPayload)
	case haip.TypeToolList:
		return new(haip.ToolListPayload)
	case haip.TypeToolSchema:
		return new(haip.ToolSchemaPayload)
	case haip.TypeFlowUpdate:
		return new(haip.FlowUpdatePayload)
	case haip.TypePauseChannel, haip.TypeResumeChannel:
		return new(haip.ChannelControlPayload)
	}
	return nil
}

// normalized returns a copy of e with its payload compacted, for comparing
// envelopes that differ only in payload white space.
func normalized(t testing.TB, e *haip.Envelope) haip.Envelope {
	t.Helper()
	c := *e
	var buf bytes.Buffer
	if err := json.Compact(&buf, e.Payload); err != nil {
		t.Fatalf("compact payload %q: %v", e.Payload, err)
	}
	c.Payload = buf.Bytes()
	return c
}

func TestDecodeValid(t *testing.T) {
	t.Parallel()
	cases := validFrames()
	// The first 22 cases are one per type, in catalogue order.
	for i, typ := range haip.AllTypes() {
		if cases[i].name != string(typ) {
			t.Fatalf("valid case %d is %q, want %q", i, cases[i].name, typ)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := haip.Decode([]byte(tc.frame))
			if err != nil {
				t.Fatalf("Decode(%s): %v", tc.frame, err)
			}
			if err := e.Validate(); err != nil {
				t.Errorf("Validate after Decode: %v", err)
			}
			v := payloadFor(e.Type)
			if v == nil {
				t.Fatalf("no payload struct for %q", e.Type)
			}
			if err := e.DecodePayload(v); err != nil {
				t.Errorf("DecodePayload(%T): %v", v, err)
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range invalidFrames() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := haip.Decode([]byte(tc.frame))
			if err == nil {
				t.Fatalf("Decode(%s) = %+v, want %s", tc.frame, e, tc.code)
			}
			if e != nil {
				t.Errorf("Decode returned an envelope with error %v", err)
			}
			var he *haip.Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v (%T) is not a *haip.Error", err, err)
			}
			if he.Code != tc.code {
				t.Errorf("Decode(%s): code %s (%v), want %s", tc.frame, he.Code, err, tc.code)
			}
			if he.RelatedID != "" && !haip.ValidUUID(he.RelatedID) {
				t.Errorf("RelatedID %q is not a uuid", he.RelatedID)
			}
		})
	}
}

func TestDecodeDetails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		frame   string
		related string
		key     string
		value   any
	}{
		{"missing seq", envWithout("seq", ""), tID, "field", "seq"},
		{"bad id has no related id", strings.Replace(env("USER", "PING", `{}`), tID, "x", 1), "", "field", "id"},
		{"bad id and missing seq", strings.Replace(envWithout("seq", ""), tID, "x", 1), "", "field", "seq"},
		{"channel", env("audio-in", "PING", `{}`), tID, "channel", "audio-in"},
		{"type", env("USER", "NOPE", `{}`), tID, "type", "NOPE"},
		{"payload field", env("USER", "TEXT_MESSAGE_PART", `{"message_id":"`+tMsg+`"}`), tID, "field", "payload.text"},
		{"tool item", env("AGENT", "TOOL_LIST", `{"tools":[{"name":"a"},{}]}`), tID, "field", "payload.tools[1].name"},
		{"crit unknown", env("USER", "PING", `{"nonce":"a","extra":1}`, `"crit":true`), tID, "field", "payload.extra"},
		{"long channel is clipped", env(strings.Repeat("C", 100), "PING", `{}`), tID, "channel", strings.Repeat("C", 64) + "…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := haip.Decode([]byte(tc.frame))
			var he *haip.Error
			if !errors.As(err, &he) {
				t.Fatalf("Decode: %v, want *haip.Error", err)
			}
			if he.RelatedID != tc.related {
				t.Errorf("RelatedID = %q, want %q", he.RelatedID, tc.related)
			}
			if got := he.Detail[tc.key]; got != tc.value {
				t.Errorf("Detail[%q] = %v, want %v (error %v)", tc.key, got, tc.value, err)
			}
		})
	}
}

func TestDecodeFields(t *testing.T) {
	t.Parallel()
	frame := env("USER", "TEXT_MESSAGE_PART", `{ "message_id" : "`+tMsg+`", "text" : "Hi" }`,
		`"ack":"7"`, `"pv":1`, `"crit":true`, `"bin_len":0`, `"bin_mime":"x/y"`, `"run_id":"`+tRun+`"`, `"thread_id":"t"`)
	e, err := haip.Decode([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	ack, pv, binLen := haip.U64(7), 1, int64(0)
	want := haip.Envelope{
		ID: tID, Session: tSess, Seq: 1753087185000, TS: 1753087185001,
		Channel: haip.ChannelUser, Type: haip.TypeTextMessagePart,
		Payload: json.RawMessage(`{ "message_id" : "` + tMsg + `", "text" : "Hi" }`),
		Ack:     &ack, PV: &pv, Crit: true, BinLen: &binLen, BinMime: "x/y", RunID: tRun, ThreadID: "t",
	}
	if !reflect.DeepEqual(*e, want) {
		t.Errorf("Decode =\n%+v\nwant\n%+v", *e, want)
	}
	var p haip.TextMessagePartPayload
	if err := e.DecodePayload(&p); err != nil {
		t.Fatal(err)
	}
	if p.MessageID != tMsg || p.Text != "Hi" {
		t.Errorf("payload = %+v", p)
	}
}

func TestDecodeDoesNotAlias(t *testing.T) {
	t.Parallel()
	frame := []byte(env("USER", "PING", `{"nonce":"abc"}`))
	e, err := haip.Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	for i := range frame {
		frame[i] = ' '
	}
	if string(e.Payload) != `{"nonce":"abc"}` || e.ID != tID {
		t.Errorf("envelope changed with its input: %+v", e)
	}
}

func TestDecodeHello(t *testing.T) {
	t.Parallel()
	e, err := haip.Decode([]byte(validFrames()[0].frame))
	if err != nil {
		t.Fatal(err)
	}
	var h haip.HelloPayload
	if err := e.DecodePayload(&h); err != nil {
		t.Fatal(err)
	}
	if h.HaipVersion != haip.Version || !reflect.DeepEqual(h.AcceptMajor, []int{haip.Major}) ||
		!reflect.DeepEqual(h.AcceptEvents, haip.AllTypes()) {
		t.Errorf("hello = %+v", h)
	}
	c := h.Capabilities
	if c == nil || c.FlowControl == nil || *c.FlowControl.InitialCreditMessages != 10 ||
		*c.FlowControl.InitialCreditBytes != 1048576 || *c.MaxConcurrentRuns != 5 || *c.SignedEnvelopes || *c.BinaryFrames {
		t.Errorf("capabilities = %+v", c)
	}
	if _, ok := h.LastRx(); ok {
		t.Error("LastRx ok for empty last_rx_seq")
	}
	h.LastRxSeq = "42"
	if v, ok := h.LastRx(); !ok || v != 42 {
		t.Errorf("LastRx = %d, %v; want 42, true", v, ok)
	}
	h.LastRxSeq = "4x"
	if _, ok := h.LastRx(); ok {
		t.Error("LastRx ok for invalid last_rx_seq")
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range validFrames() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e1, err := haip.Decode([]byte(tc.frame))
			if err != nil {
				t.Fatal(err)
			}
			b, err := haip.Encode(e1)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !json.Valid(b) || bytes.HasSuffix(b, []byte("\n")) {
				t.Fatalf("Encode produced %q", b)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, b); err != nil || compact.String() != string(b) {
				t.Errorf("Encode output is not compact: %s", b)
			}
			e2, err := haip.Decode(b)
			if err != nil {
				t.Fatalf("Decode(Encode(e)) = %v; encoded %s", err, b)
			}
			if !reflect.DeepEqual(normalized(t, e1), normalized(t, e2)) {
				t.Errorf("round trip changed the envelope:\n%+v\n%+v", e1, e2)
			}
			b2, err := haip.Encode(e2)
			if err != nil || !bytes.Equal(b, b2) {
				t.Errorf("second encoding differs:\n%s\n%s", b, b2)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	t.Parallel()
	ack, pv, binLen := haip.U64(3), 1, int64(5)
	e := &haip.Envelope{
		ID: tID, Session: tSess, Seq: 1, TS: 2, Channel: haip.ChannelAgent, Type: haip.TypeTextMessagePart,
		Payload: json.RawMessage(" {\n \"message_id\": \"" + tMsg + "\",\n \"text\": \"a b <&> \\\" \\u00e9\" }\n"),
		Ack:     &ack, PV: &pv, Crit: true, BinLen: &binLen, BinMime: "m", RunID: tRun, ThreadID: "th\"\n\x01<",
	}
	got, err := haip.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"` + tID + `","session":"` + tSess + `","seq":"1","ts":"2","channel":"AGENT","type":"TEXT_MESSAGE_PART",` +
		`"payload":{"message_id":"` + tMsg + `","text":"a b <&> \" \u00e9"},"ack":"3","pv":1,"crit":true,"bin_len":5,` +
		`"bin_mime":"m","run_id":"` + tRun + `","thread_id":"th\"\n\u0001<"}`
	if string(got) != want {
		t.Errorf("Encode =\n%s\nwant\n%s", got, want)
	}

	minimal := &haip.Envelope{ID: tID, Session: tSess, Channel: haip.ChannelSystem, Type: haip.TypeRunStarted}
	got, err = haip.Encode(minimal)
	if err != nil {
		t.Fatal(err)
	}
	want = `{"id":"` + tID + `","session":"` + tSess + `","seq":"0","ts":"0","channel":"SYSTEM","type":"RUN_STARTED","payload":{}}`
	if string(got) != want {
		t.Errorf("Encode(minimal) =\n%s\nwant\n%s", got, want)
	}

	bad := []struct {
		name string
		e    *haip.Envelope
	}{
		{"nil", nil},
		{"array payload", &haip.Envelope{ID: tID, Payload: json.RawMessage(`[]`)}},
		{"invalid payload", &haip.Envelope{ID: tID, Payload: json.RawMessage(`{"a":`)}},
		{"payload not UTF-8", &haip.Envelope{ID: tID, Payload: json.RawMessage("{\"a\":\"\xff\"}")}},
	}
	for _, tc := range bad {
		if _, err := haip.Encode(tc.e); haip.CodeOf(err) != haip.CodeProtocolViolation {
			t.Errorf("Encode(%s): %v, want PROTOCOL_VIOLATION", tc.name, err)
		}
	}

	// Invalid UTF-8 in a string field becomes U+FFFD, as with encoding/json.
	odd := &haip.Envelope{ID: tID, Session: tSess, Channel: haip.ChannelUser, Type: haip.TypePing, ThreadID: "a\xffb"}
	got, err = haip.Encode(odd)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `"thread_id":"a\ufffdb"`) {
		t.Errorf("Encode with invalid UTF-8: %s", got)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good := func() *haip.Envelope {
		return &haip.Envelope{
			ID: tID, Session: tSess, Seq: 1, TS: 2, Channel: haip.ChannelUser, Type: haip.TypeTextMessagePart,
			Payload: json.RawMessage(`{"message_id":"` + tMsg + `","text":"x"}`),
		}
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	neg, big, negLen := -1, 256, int64(-1)
	cases := []struct {
		name   string
		mutate func(e *haip.Envelope)
		code   haip.Code
	}{
		{"empty id", func(e *haip.Envelope) { e.ID = "" }, haip.CodeProtocolViolation},
		{"bad id", func(e *haip.Envelope) { e.ID = "x" }, haip.CodeProtocolViolation},
		{"empty session", func(e *haip.Envelope) { e.Session = "" }, haip.CodeProtocolViolation},
		{"bad session", func(e *haip.Envelope) { e.Session = "a.b" }, haip.CodeProtocolViolation},
		{"empty channel", func(e *haip.Envelope) { e.Channel = "" }, haip.CodeProtocolViolation},
		{"lower-case channel", func(e *haip.Envelope) { e.Channel = "user" }, haip.CodeProtocolViolation},
		{"empty type", func(e *haip.Envelope) { e.Type = "" }, haip.CodeProtocolViolation},
		{"unknown type", func(e *haip.Envelope) { e.Type = "NOPE" }, haip.CodeUnsupportedType},
		{"nil payload", func(e *haip.Envelope) { e.Payload = nil }, haip.CodeProtocolViolation},
		{"null payload", func(e *haip.Envelope) { e.Payload = json.RawMessage("null") }, haip.CodeProtocolViolation},
		{"invalid payload", func(e *haip.Envelope) { e.Payload = json.RawMessage("{") }, haip.CodeProtocolViolation},
		{"array payload", func(e *haip.Envelope) { e.Payload = json.RawMessage("[]") }, haip.CodeProtocolViolation},
		{"payload not UTF-8", func(e *haip.Envelope) {
			e.Payload = json.RawMessage("{\"message_id\":\"" + tMsg + "\",\"text\":\"\xfe\"}")
		}, haip.CodeProtocolViolation},
		{"payload missing text", func(e *haip.Envelope) { e.Payload = json.RawMessage(`{"message_id":"` + tMsg + `"}`) }, haip.CodeProtocolViolation},
		{"crit and unknown payload field", func(e *haip.Envelope) {
			e.Crit = true
			e.Payload = json.RawMessage(`{"message_id":"` + tMsg + `","text":"x","y":1}`)
		}, haip.CodeUnsupportedType},
		{"pv -1", func(e *haip.Envelope) { e.PV = &neg }, haip.CodeProtocolViolation},
		{"pv 256", func(e *haip.Envelope) { e.PV = &big }, haip.CodeProtocolViolation},
		{"bin_len -1", func(e *haip.Envelope) { e.BinLen = &negLen }, haip.CodeProtocolViolation},
		{"bad run_id", func(e *haip.Envelope) { e.RunID = "r" }, haip.CodeProtocolViolation},
		{"long thread_id", func(e *haip.Envelope) { e.ThreadID = strings.Repeat("x", 129) }, haip.CodeProtocolViolation},
		{"thread_id not UTF-8", func(e *haip.Envelope) { e.ThreadID = "\xff" }, haip.CodeProtocolViolation},
		{"bin_mime not UTF-8", func(e *haip.Envelope) { e.BinMime = "\xff" }, haip.CodeProtocolViolation},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := good()
			tc.mutate(e)
			err := e.Validate()
			if got := haip.CodeOf(err); got != tc.code {
				t.Errorf("Validate: %v, want code %s", err, tc.code)
			}
		})
	}
	var nilEnv *haip.Envelope
	if haip.CodeOf(nilEnv.Validate()) != haip.CodeProtocolViolation {
		t.Error("Validate on nil envelope did not fail with PROTOCOL_VIOLATION")
	}
}

func TestDecodePayloadError(t *testing.T) {
	t.Parallel()
	e := &haip.Envelope{ID: tID, Type: haip.TypeTextMessagePart, Payload: json.RawMessage(`{"text":5}`)}
	var p haip.TextMessagePartPayload
	err := e.DecodePayload(&p)
	var he *haip.Error
	if !errors.As(err, &he) || he.Code != haip.CodeProtocolViolation || he.RelatedID != tID {
		t.Errorf("DecodePayload = %#v, want PROTOCOL_VIOLATION related to %s", err, tID)
	}
	var s haip.ReplayRequestPayload
	e.Payload = json.RawMessage(`{"from_seq":12}`)
	if haip.CodeOf(e.DecodePayload(&s)) != haip.CodeProtocolViolation {
		t.Error("DecodePayload accepted a JSON number for a uint64str")
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	before := time.Now().UnixMilli()
	e, err := haip.New(tSess, haip.ChannelAgent, haip.TypeTextMessagePart,
		haip.TextMessagePartPayload{MessageID: tMsg, Text: "<b>&</b>"})
	after := time.Now().UnixMilli()
	if err != nil {
		t.Fatal(err)
	}
	if !haip.ValidUUID(e.ID) || e.ID[14] != '4' {
		t.Errorf("id %q is not a v4 uuid", e.ID)
	}
	if int64(e.TS) < before || int64(e.TS) > after {
		t.Errorf("ts %d not within [%d, %d]", e.TS, before, after)
	}
	if e.Seq != 0 || e.Session != tSess || e.Channel != haip.ChannelAgent || e.Type != haip.TypeTextMessagePart {
		t.Errorf("New = %+v", e)
	}
	if want := `{"message_id":"` + tMsg + `","text":"<b>&</b>"}`; string(e.Payload) != want {
		t.Errorf("payload = %s, want %s", e.Payload, want)
	}

	for _, p := range []any{nil, (*haip.PingPayload)(nil), json.RawMessage(" { } ")} {
		e, err := haip.New(tSess, haip.ChannelSystem, haip.TypePing, p)
		if err != nil {
			t.Fatalf("New(%#v): %v", p, err)
		}
		if string(e.Payload) != "{}" {
			t.Errorf("New(%#v) payload = %s, want {}", p, e.Payload)
		}
	}

	typed := []struct {
		t haip.Type
		p any
	}{
		{haip.TypeHAI, haip.HelloPayload{HaipVersion: haip.Version, AcceptMajor: []int{haip.Major}, AcceptEvents: haip.AllTypes()}},
		{haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusCancelled}},
		{haip.TypeToolUpdate, haip.ToolUpdatePayload{CallID: tCall, Status: haip.ToolStatusRunning}},
		{haip.TypeToolDone, haip.ToolDonePayload{CallID: tCall, Status: haip.ToolDoneError, Result: json.RawMessage(`{"error":"x"}`)}},
		{haip.TypeToolList, haip.ToolListPayload{Tools: []haip.ToolInfo{{Name: "echo"}}}},
		{haip.TypeFlowUpdate, haip.FlowUpdatePayload{Channel: haip.ChannelUser}},
		{haip.TypePauseChannel, haip.ChannelControlPayload{Channel: haip.ChannelAudioIn}},
		{haip.TypeError, haip.Errorf(haip.CodeSeqViolation, "gap").WithRelated(tID).Payload()},
		{haip.TypeAudioChunk, haip.AudioChunkPayload{MessageID: tMsg, Mime: "audio/opus", Data: "AAECAw=="}},
	}
	for _, tc := range typed {
		if _, err := haip.New(tSess, haip.ChannelSystem, tc.t, tc.p); err != nil {
			t.Errorf("New(%s, %+v): %v", tc.t, tc.p, err)
		}
	}

	fails := []struct {
		name    string
		session string
		ch      haip.Channel
		t       haip.Type
		p       any
		code    haip.Code
	}{
		{"bad session", "a.b", haip.ChannelUser, haip.TypePing, nil, haip.CodeProtocolViolation},
		{"bad channel", tSess, "user", haip.TypePing, nil, haip.CodeProtocolViolation},
		{"unknown type", tSess, haip.ChannelUser, "NOPE", nil, haip.CodeUnsupportedType},
		{"string payload", tSess, haip.ChannelUser, haip.TypePing, "x", haip.CodeProtocolViolation},
		{"unmarshalable payload", tSess, haip.ChannelUser, haip.TypePing, make(chan int), haip.CodeInternalError},
		{"invalid payload", tSess, haip.ChannelUser, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: "m"}, haip.CodeProtocolViolation},
		{"nil tools", tSess, haip.ChannelUser, haip.TypeToolList, haip.ToolListPayload{}, haip.CodeProtocolViolation},
	}
	for _, tc := range fails {
		e, err := haip.New(tc.session, tc.ch, tc.t, tc.p)
		if haip.CodeOf(err) != tc.code || e != nil {
			t.Errorf("New(%s) = %v, %v; want code %s", tc.name, e, err, tc.code)
		}
	}
}
