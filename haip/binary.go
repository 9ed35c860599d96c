package haip

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// Binary data travels in one of two forms (§8): two-frame mode, where the
// envelope carries bin_len (and bin_mime) and the next frame holds exactly
// that many raw bytes, and base64 mode, where the bytes sit in
// payload.data. The functions below turn one form into the other for
// AUDIO_CHUNK, the one event that carries binary data.

// SplitBinary turns a base64-mode AUDIO_CHUNK into two-frame form: it
// returns the decoded payload.data and leaves e without data but with
// bin_len and bin_mime (the chunk's mime). An envelope of another type, or
// one with no data, is left as it is and nil is returned. maxBytes bounds
// the decoded size (MESSAGE_TOO_LARGE beyond it).
func SplitBinary(e *Envelope, maxBytes int) ([]byte, error) {
	if e.Type != TypeAudioChunk {
		return nil, nil
	}
	var p AudioChunkPayload
	if err := e.DecodePayload(&p); err != nil {
		return nil, err
	}
	if p.Data == "" {
		return nil, nil
	}
	if n := base64.StdEncoding.DecodedLen(len(p.Data)); n > maxBytes+2 {
		return nil, Errorf(CodeMessageTooLarge, "audio chunk of about %d bytes is over the %d allowed", n, maxBytes).
			WithRelated(e.ID).WithDetail("max_bytes", maxBytes)
	}
	bin, err := base64.StdEncoding.DecodeString(p.Data)
	if err != nil {
		return nil, Errorf(CodeProtocolViolation, "payload.data is not standard padded base64").WithRelated(e.ID)
	}
	if len(bin) > maxBytes {
		return nil, Errorf(CodeMessageTooLarge, "audio chunk of %d bytes is over the %d allowed", len(bin), maxBytes).
			WithRelated(e.ID).WithDetail("max_bytes", maxBytes)
	}
	p.Data = ""
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode audio payload: %w", err)
	}
	n := int64(len(bin))
	e.Payload, e.BinLen, e.BinMime = raw, &n, p.Mime
	return bin, nil
}

// InlineBinary turns an encoded two-frame envelope and its binary frame
// into one base64-mode envelope: payload.data holds the bytes, and
// bin_len and bin_mime are gone. It is how a binary frame reaches a peer
// that cannot take one (SSE, NDJSON, or a WebSocket client that did not
// announce binary_frames).
func InlineBinary(envelope, bin []byte) ([]byte, error) {
	e, err := Decode(envelope)
	if err != nil {
		return nil, err
	}
	var p map[string]json.RawMessage
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return nil, fmt.Errorf("inline binary: payload: %w", err)
	}
	if p == nil {
		p = map[string]json.RawMessage{}
	}
	data, err := json.Marshal(base64.StdEncoding.EncodeToString(bin))
	if err != nil {
		return nil, err
	}
	p["data"] = data
	if e.Payload, err = json.Marshal(p); err != nil {
		return nil, err
	}
	e.BinLen, e.BinMime = nil, ""
	return Encode(e)
}

// NormalizeBinaryAnnouncement drops bin_len from an AUDIO_CHUNK that also
// carries its bytes base64 in payload.data (the v1 SDK sends both): the
// data is what arrived, and no binary frame follows. It reports whether it
// changed e.
func NormalizeBinaryAnnouncement(e *Envelope) bool {
	if e.Type != TypeAudioChunk || e.BinLen == nil {
		return false
	}
	var p AudioChunkPayload
	if e.DecodePayload(&p) != nil || p.Data == "" {
		return false
	}
	e.BinLen, e.BinMime = nil, ""
	return true
}
