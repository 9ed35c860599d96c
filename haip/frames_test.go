package haip_test

import (
	"strings"

	"github.com/haipfabric/haipfabric/haip"
)

// Identifiers used in the test frames.
const (
	tID   = "3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01"
	tSess = "9b2d7c1e-4a3f-4e8b-8c2d-1f0a9e7b6c55"
	tMsg  = "5d1e0c9b-8a7f-4e6d-b5c4-3a2b1c0d9e8f"
	tCall = "c0ffee00-1234-4abc-8def-0123456789ab"
	tRun  = "7e57a1b2-c3d4-4e5f-a6b7-c8d9e0f1a2b3"
	tSeq  = "1753087185000" // Date.now(), as the official SDK numbers its messages
	tTS   = "1753087185001"
)

// env builds an envelope frame as the official SDK writes it: all required
// fields, then any extra members (already formatted `"key":value`).
func env(channel, typ, payload string, extra ...string) string {
	var b strings.Builder
	b.WriteString(`{"id":"` + tID + `","session":"` + tSess + `","seq":"` + tSeq + `","ts":"` + tTS + `",`)
	b.WriteString(`"channel":"` + channel + `","type":"` + typ + `","payload":` + payload)
	for _, x := range extra {
		b.WriteString("," + x)
	}
	b.WriteString("}")
	return b.String()
}

// envWithout builds a valid TEXT_MESSAGE_PART frame with one required field
// replaced: value "" drops it, otherwise it is the raw JSON value to use.
func envWithout(field, value string) string {
	fields := [][2]string{
		{"id", `"` + tID + `"`},
		{"session", `"` + tSess + `"`},
		{"seq", `"` + tSeq + `"`},
		{"ts", `"` + tTS + `"`},
		{"channel", `"AGENT"`},
		{"type", `"TEXT_MESSAGE_PART"`},
		{"payload", `{"message_id":"` + tMsg + `","text":"Hello"}`},
	}
	var parts []string
	for _, f := range fields {
		if f[0] == field {
			if value == "" {
				continue
			}
			f[1] = value
		}
		parts = append(parts, `"`+f[0]+`":`+f[1])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// allTypesJSON is the accept_events array listing all 22 types.
func allTypesJSON() string {
	var names []string
	for _, t := range haip.AllTypes() {
		names = append(names, `"`+string(t)+`"`)
	}
	return "[" + strings.Join(names, ",") + "]"
}

// validCase is a frame Decode must accept.
type validCase struct {
	name  string
	frame string
}

// validFrames returns frames Decode must accept: one realistic frame per
// event type first (in catalogue order), then edge cases.
func validFrames() []validCase {
	hello := `{"haip_version":"1.1.2","accept_major":[1],"accept_events":` + allTypesJSON() +
		`,"capabilities":{"binary_frames":false,"flow_control":{"initial_credit_messages":10,"initial_credit_bytes":1048576},"max_concurrent_runs":5,"signed_envelopes":false},"last_rx_seq":""}`
	part := `{"message_id":"` + tMsg + `","text":"Hello, world"}`
	return []validCase{
		{"HAI", env("SYSTEM", "HAI", hello, `"pv":1`)},
		{"RUN_STARTED", env("AGENT", "RUN_STARTED", `{}`, `"run_id":"`+tRun+`"`)},
		{"RUN_FINISHED", env("AGENT", "RUN_FINISHED", `{"status":"OK","summary":"done","run_id":"`+tRun+`"}`, `"run_id":"`+tRun+`"`)},
		{"RUN_CANCEL", env("USER", "RUN_CANCEL", `{"run_id":"`+tRun+`"}`, `"run_id":"`+tRun+`"`)},
		{"RUN_ERROR", env("AGENT", "RUN_ERROR", `{"code":"TOOL_EXECUTION_ERROR","message":"tool failed","related_id":"`+tCall+`","detail":{"tool":"add"}}`, `"run_id":"`+tRun+`"`)},
		{"PING", env("SYSTEM", "PING", `{"nonce":"n-1"}`)},
		{"PONG", env("SYSTEM", "PONG", `{"nonce":"n-1"}`)},
		{"REPLAY_REQUEST", env("SYSTEM", "REPLAY_REQUEST", `{"from_seq":"5","to_seq":"10"}`)},
		{"TEXT_MESSAGE_START", env("USER", "TEXT_MESSAGE_START", `{"message_id":"`+tMsg+`","author":"user","text":""}`)},
		{"TEXT_MESSAGE_PART", env("USER", "TEXT_MESSAGE_PART", part)},
		{"TEXT_MESSAGE_END", env("USER", "TEXT_MESSAGE_END", `{"message_id":"`+tMsg+`","tokens":"12"}`)},
		{"AUDIO_CHUNK", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus","data":"T2dnUw==","duration_ms":"20"}`)},
		{"TOOL_CALL", env("USER", "TOOL_CALL", `{"call_id":"`+tCall+`","tool":"add","params":{"a":1,"b":2}}`)},
		{"TOOL_UPDATE", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"RUNNING","progress":50,"partial":{"so_far":1}}`)},
		{"TOOL_DONE", env("AGENT", "TOOL_DONE", `{"call_id":"`+tCall+`","status":"OK","result":{"result":3}}`)},
		{"TOOL_CANCEL", env("USER", "TOOL_CANCEL", `{"call_id":"`+tCall+`","reason":"user pressed stop"}`)},
		{"TOOL_LIST", env("AGENT", "TOOL_LIST", `{"tools":[{"name":"echo","description":"Echo a message"},{"name":"add"}]}`)},
		{"TOOL_SCHEMA", env("AGENT", "TOOL_SCHEMA", `{"tool":"add","schema":{"type":"object","properties":{"a":{"type":"number"}}}}`)},
		{"ERROR", env("SYSTEM", "ERROR", `{"code":"INVALID_MESSAGE","message":"bad","related_id":"`+tMsg+`"}`)},
		{"FLOW_UPDATE", env("SYSTEM", "FLOW_UPDATE", `{"channel":"USER","add_messages":10,"add_bytes":1048576}`)},
		{"PAUSE_CHANNEL", env("SYSTEM", "PAUSE_CHANNEL", `{"channel":"AUDIO_OUT"}`)},
		{"RESUME_CHANNEL", env("SYSTEM", "RESUME_CHANNEL", `{"channel":"AUDIO_OUT"}`)},

		// Edge cases.
		{"HAI payload-level binary_frames and max_concurrent_runs", env("SYSTEM", "HAI",
			`{"haip_version":"1.1.2","accept_major":[0,1],"accept_events":[],"binary_frames":true,"max_concurrent_runs":2,"last_rx_seq":"42"}`)},
		{"HAI open capabilities", env("SYSTEM", "HAI",
			`{"haip_version":"10.20.30","accept_major":[1],"accept_events":["PING"],"capabilities":{"x-vendor":{"a":[1]},"flow_control":{"window":"big"}}}`)},
		{"RUN_STARTED open payload", env("AGENT", "RUN_STARTED", `{"run_id":"`+tRun+`","input":[1,"two",null]}`)},
		{"RUN_FINISHED empty", env("AGENT", "RUN_FINISHED", `{}`)},
		{"PING empty", env("SYSTEM", "PING", `{}`)},
		{"REPLAY_REQUEST from only", env("SYSTEM", "REPLAY_REQUEST", `{"from_seq":"0"}`)},
		{"AUDIO_CHUNK binary mode", env("AUDIO_OUT", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus"}`, `"bin_len":320`, `"bin_mime":"audio/opus"`)},
		{"AUDIO_CHUNK empty data", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/wav","data":""}`)},
		{"AUDIO_CHUNK escaped slash in data", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/wav","data":"ab\/+"}`)},
		{"TOOL_UPDATE null partial", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"QUEUED","progress":0,"partial":null}`)},
		{"TOOL_UPDATE progress 100.0", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"CANCELLING","progress":1e2}`)},
		{"TOOL_DONE no status", env("AGENT", "TOOL_DONE", `{"call_id":"`+tCall+`","result":"plain"}`)},
		{"TOOL_LIST empty", env("AGENT", "TOOL_LIST", `{"tools":[]}`)},
		{"FLOW_UPDATE channel only", env("SYSTEM", "FLOW_UPDATE", `{"channel":"audio-in"}`)},
		{"uuid v7 id", strings.Replace(env("USER", "PING", `{}`), tID, "01890a5d-ac96-774b-bcce-b302099a8057", 1)},
		{"nil uuid id", strings.Replace(env("USER", "PING", `{}`), tID, "00000000-0000-0000-0000-000000000000", 1)},
		{"upper-case uuid id", strings.Replace(env("USER", "PING", `{}`), tID, strings.ToUpper(tID), 1)},
		{"session not a uuid", strings.Replace(env("USER", "PING", `{}`), tSess, "sess_01-AB", 1)},
		{"session 128 chars", strings.Replace(env("USER", "PING", `{}`), tSess, strings.Repeat("s", 128), 1)},
		{"seq 0", strings.Replace(env("USER", "PING", `{}`), `"seq":"`+tSeq+`"`, `"seq":"0"`, 1)},
		{"seq max", strings.Replace(env("USER", "PING", `{}`), `"seq":"`+tSeq+`"`, `"seq":"18446744073709551615"`, 1)},
		{"seq 20 digits leading zeros", strings.Replace(env("USER", "PING", `{}`), `"seq":"`+tSeq+`"`, `"seq":"00000000000000000001"`, 1)},
		{"all optional fields", env("USER", "TEXT_MESSAGE_PART", part,
			`"ack":"0"`, `"pv":1`, `"crit":false`, `"run_id":"`+tRun+`"`, `"thread_id":"`+strings.Repeat("é", 128)+`"`)},
		{"crit true, all known", env("USER", "TEXT_MESSAGE_PART", part, `"crit":true`)},
		{"crit false, unknown top-level field", env("USER", "TEXT_MESSAGE_PART", part, `"crit":false`, `"x_extra":{"a":1}`)},
		{"crit absent, unknown payload field", env("USER", "TEXT_MESSAGE_PART", `{"message_id":"`+tMsg+`","text":"hi","lang":"en"}`)},
		{"crit true, unknown key in open capabilities", env("SYSTEM", "HAI",
			`{"haip_version":"1.1.2","accept_major":[1],"accept_events":["HAI"],"capabilities":{"auth":"x"}}`, `"crit":true`)},
		{"optional fields null", env("USER", "TEXT_MESSAGE_PART", part,
			`"ack":null`, `"pv":null`, `"crit":null`, `"bin_len":null`, `"bin_mime":null`, `"run_id":null`, `"thread_id":null`)},
		{"escaped keys and values", `{"\u0069d":"` + tID + `","session":"` + tSess + `","seq":"\u0031","ts":"` + tTS +
			`","channel":"\u0055SER","type":"TEXT_MESSAGE_PART","payload":{"message_id":"` + tMsg + `","t\u0065xt":"\u00e9\n\"<>&"}}`},
		{"duplicate keys, last wins", env("USER", "PING", `[]`, `"payload":{"nonce":"x"}`)},
		{"white space everywhere", " \n{ \"id\" : \"" + tID + "\" ,\t\"session\":\"" + tSess + "\",\"seq\":\"1\",\"ts\":\"2\",\"channel\":\"USER\",\"type\":\"PING\",\"payload\" : { \"nonce\" : \"a b\" } }\r\n"},
	}
}

// invalidCase is a frame Decode must refuse with code.
type invalidCase struct {
	name  string
	frame string
	code  haip.Code
}

// invalidFrames returns frames Decode must refuse, each with the exact code.
func invalidFrames() []invalidCase {
	const (
		pv = haip.CodeProtocolViolation
		ut = haip.CodeUnsupportedType
	)
	part := `{"message_id":"` + tMsg + `","text":"Hello"}`
	withSeq := func(v string) string {
		return strings.Replace(env("USER", "PING", `{}`), `"seq":"`+tSeq+`"`, `"seq":`+v, 1)
	}
	withSession := func(v string) string {
		return strings.Replace(env("USER", "PING", `{}`), `"`+tSess+`"`, v, 1)
	}
	hai := func(payload string) string { return env("SYSTEM", "HAI", payload) }
	cases := []invalidCase{
		{"empty input", "", pv},
		{"not JSON", "hello", pv},
		{"truncated", env("USER", "PING", `{}`)[:40], pv},
		{"array", `[1,2]`, pv},
		{"string", `"x"`, pv},
		{"null", `null`, pv},
		{"trailing garbage", env("USER", "PING", `{}`) + "x", pv},
		{"two objects", env("USER", "PING", `{}`) + env("USER", "PING", `{}`), pv},
		{"invalid UTF-8", strings.Replace(env("USER", "PING", `{"nonce":"N"}`), "N", "\xff", 1), pv},
		{"id not a uuid", strings.Replace(env("USER", "PING", `{}`), tID, "not-a-uuid", 1), pv},
		{"id number", strings.Replace(env("USER", "PING", `{}`), `"`+tID+`"`, `12`, 1), pv},
		{"id empty", strings.Replace(env("USER", "PING", `{}`), tID, "", 1), pv},
		{"seq number", withSeq(`1753087185000`), pv},
		{"seq 01a", withSeq(`"01a"`), pv},
		{"seq 21 digits", withSeq(`"000000000000000000001"`), pv},
		{"seq overflow", withSeq(`"18446744073709551616"`), pv},
		{"seq 20 nines", withSeq(`"99999999999999999999"`), pv},
		{"seq empty", withSeq(`""`), pv},
		{"seq negative", withSeq(`"-1"`), pv},
		{"seq plus", withSeq(`"+1"`), pv},
		{"seq space", withSeq(`" 1"`), pv},
		{"seq base-36 suffix (reference server)", withSeq(`"1753087185000k3j9x2abc"`), pv},
		{"ts number", strings.Replace(env("USER", "PING", `{}`), `"ts":"`+tTS+`"`, `"ts":1`, 1), pv},
		{"channel audio-in", env("audio-in", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus"}`), pv},
		{"channel user", env("user", "PING", `{}`), pv},
		{"channel unknown", env("BACKCHANNEL", "PING", `{}`), pv},
		{"channel pattern", env("US ER", "PING", `{}`), pv},
		{"channel number", strings.Replace(env("USER", "PING", `{}`), `"USER"`, `1`, 1), pv},
		{"type NOPE", env("USER", "NOPE", `{}`), ut},
		{"type lower case", env("USER", "ping", `{}`), ut},
		{"type number", strings.Replace(env("USER", "PING", `{}`), `"PING"`, `7`, 1), pv},
		{"type empty", env("USER", "", `{}`), pv},
		{"payload array", env("USER", "PING", `[]`), pv},
		{"payload string", env("USER", "PING", `"x"`), pv},
		{"session a.b", withSession(`"a.b"`), pv},
		{"session a*", withSession(`"a*"`), pv},
		{"session a>", withSession(`"a>"`), pv},
		{"session a b", withSession(`"a b"`), pv},
		{"session non-ASCII", withSession(`"sessión"`), pv},
		{"session 129 chars", withSession(`"` + strings.Repeat("s", 129) + `"`), pv},
		{"session empty", withSession(`""`), pv},
		{"session number", withSession(`42`), pv},
		{"ack number", env("USER", "PING", `{}`, `"ack":0`), pv},
		{"ack overflow", env("USER", "PING", `{}`, `"ack":"18446744073709551616"`), pv},
		{"pv 256", env("USER", "PING", `{}`, `"pv":256`), pv},
		{"pv -1", env("USER", "PING", `{}`, `"pv":-1`), pv},
		{"pv 1.0", env("USER", "PING", `{}`, `"pv":1.0`), pv},
		{"pv string", env("USER", "PING", `{}`, `"pv":"1"`), pv},
		{"crit string", env("USER", "PING", `{}`, `"crit":"yes"`), pv},
		{"bin_len -1", env("USER", "PING", `{}`, `"bin_len":-1`), pv},
		{"bin_len huge", env("USER", "PING", `{}`, `"bin_len":99999999999999999999`), pv},
		{"bin_mime number", env("USER", "PING", `{}`, `"bin_mime":1`), pv},
		{"run_id not a uuid", env("USER", "PING", `{}`, `"run_id":"run-1"`), pv},
		{"run_id empty", env("USER", "PING", `{}`, `"run_id":""`), pv},
		{"thread_id 129 chars", env("USER", "PING", `{}`, `"thread_id":"`+strings.Repeat("é", 129)+`"`), pv},
		{"thread_id number", env("USER", "PING", `{}`, `"thread_id":5`), pv},
		{"crit true, unknown top-level field", env("USER", "TEXT_MESSAGE_PART", part, `"crit":true`, `"x_extra":1`), ut},
		{"crit true, unknown payload field", env("USER", "TEXT_MESSAGE_PART", `{"message_id":"`+tMsg+`","text":"hi","lang":"en"}`, `"crit":true`), ut},
		{"crit true, unknown tool item field", env("AGENT", "TOOL_LIST", `{"tools":[{"name":"a","version":2}]}`, `"crit":true`), ut},
		{"crit true, case-variant top-level key", env("USER", "PING", `{}`, `"crit":true`, `"ID":"x"`), ut},

		{"HAI unknown accept_events item", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":["HAI","NOPE"]}`), pv},
		{"HAI accept_events not array", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":"HAI"}`), pv},
		{"HAI accept_events missing", hai(`{"haip_version":"1.1.2","accept_major":[1]}`), pv},
		{"HAI accept_major missing", hai(`{"haip_version":"1.1.2","accept_events":[]}`), pv},
		{"HAI accept_major 256", hai(`{"haip_version":"1.1.2","accept_major":[256],"accept_events":[]}`), pv},
		{"HAI accept_major string", hai(`{"haip_version":"1.1.2","accept_major":["1"],"accept_events":[]}`), pv},
		{"HAI accept_major 1.5", hai(`{"haip_version":"1.1.2","accept_major":[1.5],"accept_events":[]}`), pv},
		{"HAI haip_version 1.1", hai(`{"haip_version":"1.1","accept_major":[1],"accept_events":[]}`), pv},
		{"HAI haip_version v1.1.2", hai(`{"haip_version":"v1.1.2","accept_major":[1],"accept_events":[]}`), pv},
		{"HAI haip_version missing", hai(`{"accept_major":[1],"accept_events":[]}`), pv},
		{"HAI max_concurrent_runs 0", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":[],"max_concurrent_runs":0}`), pv},
		{"HAI capabilities.max_concurrent_runs 0", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":[],"capabilities":{"max_concurrent_runs":0}}`), pv},
		{"HAI capabilities.binary_frames string", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":[],"capabilities":{"binary_frames":"yes"}}`), pv},
		{"HAI initial credit -1", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":[],"capabilities":{"flow_control":{"initial_credit_messages":-1}}}`), pv},
		{"HAI capabilities not object", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":[],"capabilities":[]}`), pv},
		{"HAI capabilities case-variant key", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":[],"capabilities":{"Binary_Frames":"x"}}`), pv},
		{"HAI last_rx_seq not digits", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":[],"last_rx_seq":"abc"}`), pv},
		{"HAI last_rx_seq number", hai(`{"haip_version":"1.1.2","accept_major":[1],"accept_events":[],"last_rx_seq":5}`), pv},
		{"RUN_FINISHED status DONE", env("AGENT", "RUN_FINISHED", `{"status":"DONE"}`), pv},
		{"RUN_FINISHED summary number", env("AGENT", "RUN_FINISHED", `{"summary":1}`), pv},
		{"RUN_CANCEL no run_id", env("USER", "RUN_CANCEL", `{}`), pv},
		{"RUN_CANCEL bad run_id", env("USER", "RUN_CANCEL", `{"run_id":"r1"}`), pv},
		{"RUN_ERROR no message", env("AGENT", "RUN_ERROR", `{"code":"X"}`), pv},
		{"ERROR no code", env("SYSTEM", "ERROR", `{"message":"m"}`), pv},
		{"ERROR bad related_id", env("SYSTEM", "ERROR", `{"code":"X","message":"m","related_id":"r"}`), pv},
		{"ERROR detail array", env("SYSTEM", "ERROR", `{"code":"X","message":"m","detail":[]}`), pv},
		{"PING nonce number", env("SYSTEM", "PING", `{"nonce":1}`), pv},
		{"REPLAY_REQUEST from_seq number", env("SYSTEM", "REPLAY_REQUEST", `{"from_seq":1}`), pv},
		{"REPLAY_REQUEST no from_seq", env("SYSTEM", "REPLAY_REQUEST", `{"to_seq":"1"}`), pv},
		{"TEXT_MESSAGE_PART without text", env("USER", "TEXT_MESSAGE_PART", `{"message_id":"`+tMsg+`"}`), pv},
		{"TEXT_MESSAGE_PART null text", env("USER", "TEXT_MESSAGE_PART", `{"message_id":"`+tMsg+`","text":null}`), pv},
		{"TEXT_MESSAGE_PART text number", env("USER", "TEXT_MESSAGE_PART", `{"message_id":"`+tMsg+`","text":5}`), pv},
		{"TEXT_MESSAGE_PART bad message_id", env("USER", "TEXT_MESSAGE_PART", `{"message_id":"m1","text":"x"}`), pv},
		{"TEXT_MESSAGE_PART case-variant key", env("USER", "TEXT_MESSAGE_PART", `{"message_id":"`+tMsg+`","text":"x","Text":5}`), pv},
		{"TEXT_MESSAGE_START no message_id", env("USER", "TEXT_MESSAGE_START", `{"text":"x"}`), pv},
		{"TEXT_MESSAGE_END tokens number", env("USER", "TEXT_MESSAGE_END", `{"message_id":"`+tMsg+`","tokens":12}`), pv},
		{"AUDIO_CHUNK bad base64 length", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus","data":"abc"}`), pv},
		{"AUDIO_CHUNK bad base64 char", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus","data":"ab-_"}`), pv},
		{"AUDIO_CHUNK base64 inner padding", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus","data":"AA=A"}`), pv},
		{"AUDIO_CHUNK base64 unpadded", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus","data":"AAE"}`), pv},
		{"AUDIO_CHUNK base64 line break", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus","data":"AAAA\nAAAA"}`), pv},
		{"AUDIO_CHUNK no mime", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`"}`), pv},
		{"AUDIO_CHUNK duration_ms number", env("AUDIO_IN", "AUDIO_CHUNK", `{"message_id":"`+tMsg+`","mime":"audio/opus","duration_ms":20}`), pv},
		{"TOOL_CALL params array", env("USER", "TOOL_CALL", `{"call_id":"`+tCall+`","tool":"add","params":[1,2]}`), pv},
		{"TOOL_CALL no tool", env("USER", "TOOL_CALL", `{"call_id":"`+tCall+`"}`), pv},
		{"TOOL_CALL bad call_id", env("USER", "TOOL_CALL", `{"call_id":"c1","tool":"add"}`), pv},
		{"TOOL_UPDATE status DONE", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"DONE"}`), pv},
		{"TOOL_UPDATE status lower case", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"running"}`), pv},
		{"TOOL_UPDATE no status", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`"}`), pv},
		{"TOOL_UPDATE progress 101", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"RUNNING","progress":101}`), pv},
		{"TOOL_UPDATE progress -1", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"RUNNING","progress":-1}`), pv},
		{"TOOL_UPDATE progress string", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"RUNNING","progress":"50"}`), pv},
		{"TOOL_UPDATE progress 1e400", env("AGENT", "TOOL_UPDATE", `{"call_id":"`+tCall+`","status":"RUNNING","progress":1e400}`), pv},
		{"TOOL_DONE status FAILED", env("AGENT", "TOOL_DONE", `{"call_id":"`+tCall+`","status":"FAILED"}`), pv},
		{"TOOL_CANCEL no call_id", env("USER", "TOOL_CANCEL", `{"reason":"x"}`), pv},
		{"TOOL_LIST no tools", env("AGENT", "TOOL_LIST", `{}`), pv},
		{"TOOL_LIST tools object", env("AGENT", "TOOL_LIST", `{"tools":{}}`), pv},
		{"TOOL_LIST item not object", env("AGENT", "TOOL_LIST", `{"tools":["echo"]}`), pv},
		{"TOOL_LIST item without name", env("AGENT", "TOOL_LIST", `{"tools":[{"description":"x"}]}`), pv},
		{"TOOL_LIST item name number", env("AGENT", "TOOL_LIST", `{"tools":[{"name":1}]}`), pv},
		{"TOOL_SCHEMA no schema", env("AGENT", "TOOL_SCHEMA", `{"tool":"add"}`), pv},
		{"TOOL_SCHEMA schema string", env("AGENT", "TOOL_SCHEMA", `{"tool":"add","schema":"{}"}`), pv},
		{"FLOW_UPDATE add_messages 0", env("SYSTEM", "FLOW_UPDATE", `{"channel":"USER","add_messages":0}`), pv},
		{"FLOW_UPDATE add_bytes -5", env("SYSTEM", "FLOW_UPDATE", `{"channel":"USER","add_bytes":-5}`), pv},
		{"FLOW_UPDATE add_messages 1.5", env("SYSTEM", "FLOW_UPDATE", `{"channel":"USER","add_messages":1.5}`), pv},
		{"FLOW_UPDATE add_messages string", env("SYSTEM", "FLOW_UPDATE", `{"channel":"USER","add_messages":"10"}`), pv},
		{"FLOW_UPDATE no channel", env("SYSTEM", "FLOW_UPDATE", `{"add_messages":10}`), pv},
		{"PAUSE_CHANNEL channel number", env("SYSTEM", "PAUSE_CHANNEL", `{"channel":1}`), pv},
		{"RESUME_CHANNEL no channel", env("SYSTEM", "RESUME_CHANNEL", `{}`), pv},
	}
	for _, f := range []string{"id", "session", "seq", "ts", "channel", "type", "payload"} {
		cases = append(cases,
			invalidCase{"missing " + f, envWithout(f, ""), pv},
			invalidCase{"null " + f, envWithout(f, "null"), pv},
		)
	}
	return cases
}
