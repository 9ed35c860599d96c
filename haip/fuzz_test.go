package haip_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/haipfabric/haipfabric/haip"
)

// FuzzDecode checks that Decode never panics, that its errors are well
// formed, and that whatever it accepts survives Encode and a second Decode
// unchanged and decodes into the payload struct for its type.
func FuzzDecode(f *testing.F) {
	for _, tc := range validFrames() {
		f.Add([]byte(tc.frame))
	}
	for _, tc := range invalidFrames() {
		f.Add([]byte(tc.frame))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := haip.Decode(data)
		if err != nil {
			var he *haip.Error
			if !errors.As(err, &he) || he.Code == "" || he.Message == "" {
				t.Fatalf("Decode error %#v is not a complete *haip.Error", err)
			}
			if he.RelatedID != "" && !haip.ValidUUID(he.RelatedID) {
				t.Fatalf("RelatedID %q is not a uuid", he.RelatedID)
			}
			if e != nil {
				t.Fatal("Decode returned both an envelope and an error")
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Validate after Decode: %v", err)
		}
		if err := e.DecodePayload(payloadFor(e.Type)); err != nil {
			t.Fatalf("DecodePayload after Decode: %v", err)
		}
		b, err := haip.Encode(e)
		if err != nil {
			t.Fatalf("Encode after Decode: %v", err)
		}
		e2, err := haip.Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(e)): %v\ninput   %q\nencoded %q", err, data, b)
		}
		if !reflect.DeepEqual(normalized(t, e), normalized(t, e2)) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", e, e2)
		}
	})
}
