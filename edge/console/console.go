// Package console is the edge's web console: one page application,
// hand-written ES modules, CSS and HTML embedded in the binary, served
// at /console by every edge with no build step and no request to any
// other origin.
//
// The page signs in with a token that stays in memory (or in the tab's
// sessionStorage when the user asks), calls the sessions API and the
// approvals API with an Authorization header, and opens its HAIP
// WebSocket with a single-use ticket (POST /api/v1/tickets) instead of
// a token in the URL. Its HAIP code is one module, static/haip.js.
//
// Every response carries a strict Content-Security-Policy (no inline
// script or style, nothing from another origin, no framing), nosniff
// and no-referrer. Start with [Mount].
package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
)

//go:embed static
var files embed.FS

// ContentSecurityPolicy is the policy of every console response: the
// page runs only its own scripts and styles, talks only to its own
// origin, and cannot be framed, re-based or made to post a form.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// Options configure the console.
type Options struct {
	// DevToken, when set, is offered by GET /console/dev-token to
	// requests from a loopback address (a development box); empty
	// offers nothing (204).
	DevToken string
}

// Mount registers the console on mux: GET /console (the page),
// GET /console/{file} (its modules and style) and GET /console/dev-token.
func Mount(mux *http.ServeMux, o Options) {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	fileServer := http.StripPrefix("/console/", http.FileServerFS(static))
	mux.Handle("GET /console", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})))
	mux.Handle("GET /console/{file}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("file") == "index.html" {
			http.Redirect(w, r, "/console", http.StatusMovedPermanently)
			return
		}
		fileServer.ServeHTTP(w, r)
	})))
	mux.Handle("GET /console/dev-token", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.DevToken == "" || !fromLoopback(r) {
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNoContent) // nothing offered; not an error for the page
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"token": o.DevToken})
	})))
}

// secure sets the security headers of every console response.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// fromLoopback reports whether r came from this machine.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
