package streams

import (
	"errors"
	"testing"
)

// FuzzConversationCursor: any string either parses to a consistent
// position that encodes back to itself, or is refused with ErrBadCursor.
func FuzzConversationCursor(f *testing.F) {
	f.Add("YzEuMTAuMy40")
	f.Add("")
	f.Add("YzEuMC4wLjA")
	f.Add("YzEuMTg0NDY3NDQwNzM3MDk1NTE2MTUuMC4w")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseCursor(ConversationCursor(s))
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("%q: %v does not wrap ErrBadCursor", s, err)
			}
			return
		}
		if p.in+p.out > p.stream {
			t.Fatalf("%q parsed to inconsistent %+v", s, p)
		}
		q, err := parseCursor(p.cursor())
		if err != nil || q != p {
			t.Fatalf("%+v does not round trip: %+v, %v", p, q, err)
		}
	})
}
