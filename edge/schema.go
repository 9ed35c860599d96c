package edge

import (
	"io/fs"
	"net/http"
	"strings"

	"github.com/haipfabric/haipfabric/haip"
)

// serveSchema serves the published JSON Schemas (haip/schema, embedded):
// GET /haip/schema/envelope.json and /haip/schema/payloads/<TYPE>.json.
// No token is needed. The payload schemas refer to each other by relative
// URL, so a validator can load envelope.json from an edge and follow its
// $refs there. The ERRORs that refuse a malformed envelope name the
// schema it broke (detail "schema", a path on this edge).
func (s *Server) serveSchema(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, haip.SchemaPath)
	b, err := fs.ReadFile(haip.SchemaFS(), name)
	if err != nil || name == "" || strings.Contains(name, "..") {
		writeHTTPError(w, http.StatusNotFound, "not_found", codeNotFound, "no such schema: "+r.URL.Path,
			map[string]any{"envelope": haip.EnvelopeSchemaPath})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/schema+json")
	h.Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}
