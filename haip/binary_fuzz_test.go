package haip_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/haipfabric/haipfabric/haip"
)

// FuzzBinaryForms feeds arbitrary envelopes and bytes through the two
// binary forms: SplitBinary never panics and, when it accepts, the bytes
// come back unchanged through InlineBinary; InlineBinary never panics on
// any input.
func FuzzBinaryForms(f *testing.F) {
	f.Add([]byte(`{"id":"0b6e3a52-3c3a-4d7e-9b1e-6b8f0f9d5a11","session":"s","seq":"1","ts":"1","channel":"AUDIO_IN","type":"AUDIO_CHUNK","payload":{"message_id":"0b6e3a52-3c3a-4d7e-9b1e-6b8f0f9d5a12","mime":"audio/opus","data":"AQID"}}`), []byte{1, 2, 3})
	f.Add([]byte(`{"id":"0b6e3a52-3c3a-4d7e-9b1e-6b8f0f9d5a11","session":"s","seq":"1","ts":"1","channel":"AUDIO_OUT","type":"AUDIO_CHUNK","bin_len":3,"bin_mime":"audio/wav","payload":{"message_id":"0b6e3a52-3c3a-4d7e-9b1e-6b8f0f9d5a12","mime":"audio/wav"}}`), []byte{0, 255, 7})
	f.Add([]byte(`{"id":"0b6e3a52-3c3a-4d7e-9b1e-6b8f0f9d5a11","session":"s","seq":"1","ts":"1","channel":"USER","type":"PING","payload":{}}`), []byte{})
	f.Add([]byte(`not json`), []byte("x"))
	f.Fuzz(func(t *testing.T, envelope, bin []byte) {
		if out, err := haip.InlineBinary(envelope, bin); err == nil {
			if _, err := haip.Decode(out); err != nil {
				t.Fatalf("InlineBinary produced an undecodable envelope: %v", err)
			}
		}
		e, err := haip.Decode(envelope)
		if err != nil {
			return
		}
		split, err := haip.SplitBinary(e, 1<<16)
		if err != nil || split == nil {
			return
		}
		if e.BinLen == nil || int(*e.BinLen) != len(split) {
			t.Fatalf("bin_len %v for %d bytes", e.BinLen, len(split))
		}
		enc, err := haip.Encode(e)
		if err != nil {
			t.Fatalf("encode after split: %v", err)
		}
		back, err := haip.InlineBinary(enc, split)
		if err != nil {
			t.Fatalf("inline after split: %v", err)
		}
		b, err := haip.Decode(back)
		if err != nil {
			t.Fatal(err)
		}
		var p haip.AudioChunkPayload
		if err := b.DecodePayload(&p); err != nil {
			t.Fatal(err)
		}
		data, err := base64.StdEncoding.DecodeString(p.Data)
		if err != nil || !bytes.Equal(data, split) {
			t.Fatalf("round trip changed the bytes")
		}
	})
}
