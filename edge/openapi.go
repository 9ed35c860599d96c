package edge

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 description of every HTTP endpoint
// of the edge (openapi.json, kept beside the code; a test validates real
// responses of a running edge against it).
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the edge's OpenAPI 3.1 document.
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }

// serveOpenAPI answers GET /api/v1/openapi.json.
func (s *Server) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDocument)
}
