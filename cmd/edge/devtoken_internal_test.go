package main

import (
	"testing"
	"time"
)

// The console is offered the dev token only by a single box that made its
// own secret, and never with ENV=production.
func TestConsoleDevToken(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	base := config{DevTokenTTL: time.Hour, JWTMaxTTL: 720 * time.Hour}
	for _, c := range []struct {
		name  string
		edit  func(*config)
		nosec bool
		want  bool
	}{
		{"single box", func(*config) {}, false, true},
		{"no dev secret", func(*config) {}, true, false},
		{"NATS_URL", func(c *config) { c.NATSURL = "nats://127.0.0.1:4222" }, false, false},
		{"JWT_SECRET", func(c *config) { c.JWTSecret = string(secret) }, false, false},
		{"public key", func(c *config) { c.JWTPublicKeyFile = "key.pem" }, false, false},
		{"production", func(c *config) { c.Env = "production" }, false, false},
		{"Production", func(c *config) { c.Env = "Production" }, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			c.edit(&cfg)
			s := secret
			if c.nosec {
				s = nil
			}
			if got := cfg.consoleDevToken(s) != ""; got != c.want {
				t.Fatalf("offered %v, want %v", got, c.want)
			}
		})
	}
}
