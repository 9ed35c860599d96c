package haip_test

import (
	"testing"

	"github.com/haipfabric/haipfabric/haip"
)

// benchFrame is a typical streamed-text frame.
func benchFrame() []byte {
	return []byte(env("AGENT", "TEXT_MESSAGE_PART",
		`{"message_id":"`+tMsg+`","text":"The quick brown fox jumps over the lazy dog, again and again."}`,
		`"run_id":"`+tRun+`"`))
}

func BenchmarkDecode(b *testing.B) {
	frame := benchFrame()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := haip.Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	e, err := haip.Decode(benchFrame())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchFrame())))
	for b.Loop() {
		if _, err := haip.Encode(e); err != nil {
			b.Fatal(err)
		}
	}
}
