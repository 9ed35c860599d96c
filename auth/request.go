package auth

import (
	"net/http"
	"strings"
)

// TokenQueryParam is the query parameter [TokenFromRequest] reads when the
// request has no bearer Authorization header; browsers cannot set headers
// on WebSocket or EventSource requests.
const TokenQueryParam = "token"

// TokenFromRequest returns the bearer token of r: from an
// "Authorization: Bearer <token>" header (scheme case-insensitive), else
// from the "token" query parameter. The header wins when both are present.
// An Authorization header with another scheme, such as Basic, is ignored.
// It returns [ErrNoToken] when neither yields a non-empty token. The token
// is returned as presented, with surrounding spaces removed; it is not
// checked.
func TokenFromRequest(r *http.Request) (string, error) {
	if token, err := TokenFromHeader(r); err == nil {
		return token, nil
	}
	if r.URL != nil {
		if token := strings.TrimSpace(r.URL.Query().Get(TokenQueryParam)); token != "" {
			return token, nil
		}
	}
	return "", ErrNoToken
}

// TokenFromHeader returns the token of r's "Authorization: Bearer
// <token>" header, and never of the query: for endpoints whose tokens
// must not travel in URLs, which end up in access logs and browser
// history. It returns [ErrNoToken] when there is no such header.
func TokenFromHeader(r *http.Request) (string, error) {
	if token, ok := bearerToken(r.Header.Get("Authorization")); ok {
		return token, nil
	}
	return "", ErrNoToken
}

// bearerToken returns the credentials of an Authorization header value
// using the Bearer scheme (RFC 6750 §2.1; schemes are case-insensitive per
// RFC 9110 §11.1).
func bearerToken(header string) (string, bool) {
	const scheme = "bearer"
	header = strings.TrimSpace(header)
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	rest := header[len(scheme):]
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false // e.g. "Bearerx"
	}
	token := strings.TrimSpace(rest)
	return token, token != ""
}
