package haip

// Version is the HAIP protocol version this package implements, as sent in
// HAI.haip_version.
const Version = "1.1.2"

// Major is the protocol MAJOR this package implements, as sent in
// HAI.accept_major and in the envelope's pv field.
const Major = 1

// MaxThreadIDLen is the longest thread_id accepted, in characters (runes).
const MaxThreadIDLen = 128

// MaxSessionIDLen is the longest session id accepted, in bytes (the channel
// pattern allows ASCII only, so bytes and characters agree).
const MaxSessionIDLen = 128

// Type is a HAIP event type: the envelope's type field.
type Type string

// The 22 event types of HAIP 1.1.2, in catalogue order (§4).
const (
	// TypeHAI is the handshake; each side's first message.
	TypeHAI Type = "HAI"
	// TypeRunStarted opens a run; the run id is on the envelope.
	TypeRunStarted Type = "RUN_STARTED"
	// TypeRunFinished closes a run with a status.
	TypeRunFinished Type = "RUN_FINISHED"
	// TypeRunCancel asks the peer to stop a whole run.
	TypeRunCancel Type = "RUN_CANCEL"
	// TypeRunError reports that a run failed; its payload is an ERROR payload.
	TypeRunError Type = "RUN_ERROR"
	// TypePing is a liveness probe.
	TypePing Type = "PING"
	// TypePong answers a PING, echoing its nonce.
	TypePong Type = "PONG"
	// TypeReplayRequest asks the peer to resend a range of its own seqs.
	TypeReplayRequest Type = "REPLAY_REQUEST"
	// TypeTextMessageStart opens a streamed text message.
	TypeTextMessageStart Type = "TEXT_MESSAGE_START"
	// TypeTextMessagePart carries one chunk of a streamed text message.
	TypeTextMessagePart Type = "TEXT_MESSAGE_PART"
	// TypeTextMessageEnd closes a streamed text message.
	TypeTextMessageEnd Type = "TEXT_MESSAGE_END"
	// TypeAudioChunk carries one chunk of audio.
	TypeAudioChunk Type = "AUDIO_CHUNK"
	// TypeToolCall invokes a tool.
	TypeToolCall Type = "TOOL_CALL"
	// TypeToolUpdate reports a tool call's progress.
	TypeToolUpdate Type = "TOOL_UPDATE"
	// TypeToolDone reports a tool call's outcome.
	TypeToolDone Type = "TOOL_DONE"
	// TypeToolCancel asks for one tool call to stop.
	TypeToolCancel Type = "TOOL_CANCEL"
	// TypeToolList advertises the tools that can be called.
	TypeToolList Type = "TOOL_LIST"
	// TypeToolSchema advertises one tool's JSON schema.
	TypeToolSchema Type = "TOOL_SCHEMA"
	// TypeError reports a protocol error.
	TypeError Type = "ERROR"
	// TypeFlowUpdate grants flow-control credit on a channel.
	TypeFlowUpdate Type = "FLOW_UPDATE"
	// TypePauseChannel stops the peer sending on a channel.
	TypePauseChannel Type = "PAUSE_CHANNEL"
	// TypeResumeChannel lets the peer send on a paused channel again.
	TypeResumeChannel Type = "RESUME_CHANNEL"
)

// AllTypes returns the 22 event types in catalogue order. The slice is a
// fresh copy on every call; callers may modify it.
func AllTypes() []Type {
	return []Type{
		TypeHAI, TypeRunStarted, TypeRunFinished, TypeRunCancel, TypeRunError,
		TypePing, TypePong, TypeReplayRequest,
		TypeTextMessageStart, TypeTextMessagePart, TypeTextMessageEnd, TypeAudioChunk,
		TypeToolCall, TypeToolUpdate, TypeToolDone, TypeToolCancel, TypeToolList, TypeToolSchema,
		TypeError, TypeFlowUpdate, TypePauseChannel, TypeResumeChannel,
	}
}

// Known reports whether t is one of the 22 event types (case-sensitive).
func (t Type) Known() bool {
	return internType(string(t)) != ""
}

// internType returns the Type constant spelled s, or "" when s is not one of
// the 22 names. Returning the constant lets Decode avoid allocating a string
// for the type field.
func internType(s string) Type {
	switch Type(s) {
	case TypeHAI:
		return TypeHAI
	case TypeRunStarted:
		return TypeRunStarted
	case TypeRunFinished:
		return TypeRunFinished
	case TypeRunCancel:
		return TypeRunCancel
	case TypeRunError:
		return TypeRunError
	case TypePing:
		return TypePing
	case TypePong:
		return TypePong
	case TypeReplayRequest:
		return TypeReplayRequest
	case TypeTextMessageStart:
		return TypeTextMessageStart
	case TypeTextMessagePart:
		return TypeTextMessagePart
	case TypeTextMessageEnd:
		return TypeTextMessageEnd
	case TypeAudioChunk:
		return TypeAudioChunk
	case TypeToolCall:
		return TypeToolCall
	case TypeToolUpdate:
		return TypeToolUpdate
	case TypeToolDone:
		return TypeToolDone
	case TypeToolCancel:
		return TypeToolCancel
	case TypeToolList:
		return TypeToolList
	case TypeToolSchema:
		return TypeToolSchema
	case TypeError:
		return TypeError
	case TypeFlowUpdate:
		return TypeFlowUpdate
	case TypePauseChannel:
		return TypePauseChannel
	case TypeResumeChannel:
		return TypeResumeChannel
	}
	return ""
}

// Channel is a HAIP logical channel: the envelope's channel field.
type Channel string

// The five standard channels (§3). Names are case-sensitive.
const (
	// ChannelUser carries what the human side sends.
	ChannelUser Channel = "USER"
	// ChannelAgent carries what the agent sends.
	ChannelAgent Channel = "AGENT"
	// ChannelSystem carries protocol control: HAI, PING/PONG, ERROR, flow control, replay.
	ChannelSystem Channel = "SYSTEM"
	// ChannelAudioIn carries audio towards the agent.
	ChannelAudioIn Channel = "AUDIO_IN"
	// ChannelAudioOut carries audio towards the user.
	ChannelAudioOut Channel = "AUDIO_OUT"
)

// AllChannels returns the five standard channels. The slice is a fresh copy
// on every call; callers may modify it.
func AllChannels() []Channel {
	return []Channel{ChannelUser, ChannelAgent, ChannelSystem, ChannelAudioIn, ChannelAudioOut}
}

// Standard reports whether c is one of the five standard channels
// (case-sensitive: "user" and "audio-in" are not standard).
func (c Channel) Standard() bool {
	return internChannel(string(c)) != ""
}

// internChannel returns the Channel constant spelled s, or "" when s is not
// one of the five standard names.
func internChannel(s string) Channel {
	switch Channel(s) {
	case ChannelUser:
		return ChannelUser
	case ChannelAgent:
		return ChannelAgent
	case ChannelSystem:
		return ChannelSystem
	case ChannelAudioIn:
		return ChannelAudioIn
	case ChannelAudioOut:
		return ChannelAudioOut
	}
	return ""
}

// ValidSessionID reports whether s matches HAIP's channel pattern
// ^[A-Za-z0-9_-]{1,128}$, which this project uses for session ids. It is a
// superset of the uuid form and keeps ".", "*", ">" and white space out, so a
// valid session id is safe as a NATS subject token.
func ValidSessionID(s string) bool {
	if len(s) == 0 || len(s) > MaxSessionIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

// isNameByte reports whether c is in [A-Za-z0-9_-].
func isNameByte(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c == '_' || c == '-'
}

// RunStatus is RUN_FINISHED.status.
type RunStatus string

// Run statuses.
const (
	// RunStatusOK: the run completed.
	RunStatusOK RunStatus = "OK"
	// RunStatusCancelled: the run was stopped by RUN_CANCEL.
	RunStatusCancelled RunStatus = "CANCELLED"
	// RunStatusError: the run failed.
	RunStatusError RunStatus = "ERROR"
)

// Valid reports whether s is one of the three run statuses.
func (s RunStatus) Valid() bool {
	return s == RunStatusOK || s == RunStatusCancelled || s == RunStatusError
}

// ToolStatus is TOOL_UPDATE.status.
type ToolStatus string

// Tool call statuses reported by TOOL_UPDATE.
const (
	// ToolStatusQueued: the call waits for a worker.
	ToolStatusQueued ToolStatus = "QUEUED"
	// ToolStatusRunning: the call is executing.
	ToolStatusRunning ToolStatus = "RUNNING"
	// ToolStatusCancelling: a TOOL_CANCEL was received and the call is stopping.
	ToolStatusCancelling ToolStatus = "CANCELLING"
)

// Valid reports whether s is one of the three TOOL_UPDATE statuses.
func (s ToolStatus) Valid() bool {
	return s == ToolStatusQueued || s == ToolStatusRunning || s == ToolStatusCancelling
}

// ToolDoneStatus is TOOL_DONE.status. Absent means ToolDoneOK.
type ToolDoneStatus string

// Tool call outcomes reported by TOOL_DONE.
const (
	// ToolDoneOK: the call succeeded; result holds its output.
	ToolDoneOK ToolDoneStatus = "OK"
	// ToolDoneCancelled: the call was cancelled.
	ToolDoneCancelled ToolDoneStatus = "CANCELLED"
	// ToolDoneError: the call failed; result holds whatever detail there is.
	ToolDoneError ToolDoneStatus = "ERROR"
)

// Valid reports whether s is one of the three TOOL_DONE statuses.
func (s ToolDoneStatus) Valid() bool {
	return s == ToolDoneOK || s == ToolDoneCancelled || s == ToolDoneError
}
