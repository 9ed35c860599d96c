package edge_test

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// The edge serves the published schemas with no token, and an ERROR for a
// malformed envelope names the schema it broke, as a path the edge
// serves.
func TestSchemaEndpoint(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})

	get := func(path string) (int, string, []byte) {
		t.Helper()
		resp, err := http.Get(e.Base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	for _, p := range []string{haip.EnvelopeSchemaPath, haip.PayloadSchemaPath(haip.TypeTextMessagePart), haip.PayloadSchemaPath(haip.TypeHAI)} {
		status, ctype, body := get(p)
		want, err := fs.ReadFile(haip.SchemaFS(), p[len(haip.SchemaPath):])
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusOK || ctype != "application/schema+json" || !bytes.Equal(body, want) || !json.Valid(body) {
			t.Fatalf("GET %s: %d %s, %d bytes (want the %d embedded)", p, status, ctype, len(body), len(want))
		}
	}
	for _, p := range []string{haip.SchemaPath, haip.SchemaPath + "payloads/NOPE.json"} {
		if status, _, _ := get(p); status != http.StatusNotFound {
			t.Fatalf("GET %s: %d, want 404", p, status)
		}
	}

	r := rawDial(t, tokenURL(e, f.Token("alice", auth.RoleUser)))
	r.handshake()
	r.write(websocket.MessageText, []byte(`{"id":"`+haip.NewUUID()+`","session":"`+r.session+`","seq":"8","ts":"1","channel":"USER","type":"TEXT_MESSAGE_PART","payload":{"message_id":"`+haip.NewUUID()+`"}}`)) // no text
	ep := r.expectError(5 * time.Second)
	want := haip.PayloadSchemaPath(haip.TypeTextMessagePart)
	if ep.Code != haip.CodeProtocolViolation || ep.Detail["schema"] != want || ep.Detail["field"] != "payload.text" {
		t.Fatalf("ERROR %+v, want PROTOCOL_VIOLATION naming payload.text and %s", ep, want)
	}
	if status, _, _ := get(want); status != http.StatusOK {
		t.Fatalf("the schema the ERROR names is not served: %d", status)
	}
	r.write(websocket.MessageText, []byte(`{"id":"`+haip.NewUUID()+`","session":"`+r.session+`","seq":"9","ts":"1","channel":"USER","type":"PING"}`))
	if ep := r.expectError(5 * time.Second); ep.Detail["schema"] != haip.EnvelopeSchemaPath {
		t.Fatalf("ERROR %+v, want the envelope schema named", ep)
	}
}
