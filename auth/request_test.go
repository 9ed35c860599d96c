package auth

import (
	"errors"
	"net/http/httptest"
	"testing"
)

func TestTokenFromRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		target  string
		header  string // Authorization, if non-empty
		want    string
		wantErr error
	}{
		{name: "header", target: "/ws", header: "Bearer abc.def.ghi", want: "abc.def.ghi"},
		{name: "query", target: "/ws?token=abc.def.ghi", want: "abc.def.ghi"},
		{name: "header wins over query", target: "/ws?token=fromquery", header: "Bearer fromheader", want: "fromheader"},
		{name: "lowercase bearer", target: "/ws", header: "bearer abc", want: "abc"},
		{name: "uppercase BEARER", target: "/ws", header: "BEARER abc", want: "abc"},
		{name: "extra spaces", target: "/ws", header: "  Bearer    abc  ", want: "abc"},
		{name: "no token", target: "/ws", wantErr: ErrNoToken},
		{name: "Basic is not a bearer token", target: "/ws", header: "Basic x", wantErr: ErrNoToken},
		{name: "Basic header falls back to query", target: "/ws?token=q", header: "Basic x", want: "q"},
		{name: "empty bearer", target: "/ws", header: "Bearer ", wantErr: ErrNoToken},
		{name: "scheme without space", target: "/ws", header: "Bearerabc", wantErr: ErrNoToken},
		{name: "empty query", target: "/ws?token=", wantErr: ErrNoToken},
		{name: "other query parameter", target: "/ws?access_token=abc", wantErr: ErrNoToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", tt.target, nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			got, err := TokenFromRequest(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("token = %q, want %q", got, tt.want)
			}
		})
	}
}
