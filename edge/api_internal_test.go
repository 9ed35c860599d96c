package edge

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzQueryText: Tarko's query field, any JSON, either gives text or is
// refused as bad input; nothing panics.
func FuzzQueryText(f *testing.F) {
	for _, s := range []string{`"hi"`, `[{"type":"text","text":"a"},{"type":"text","text":"b"}]`, `[{"type":"image_url"}]`, `5`, `null`, `""`, `[]`, `{"a":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		text, err := queryText(json.RawMessage(raw))
		if err != nil && !errors.Is(err, errBadInput) {
			t.Fatalf("%q: %v is not bad input", raw, err)
		}
		if err == nil && text == "" {
			t.Fatalf("%q: empty text accepted", raw)
		}
	})
}
