package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil || c.dir != "" || c.edges != 2 || c.toolWorkers != 2 || c.port != 8081 {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	c, err = parseFlags([]string{"-dir", "x", "-edges", "3", "-toolworkers", "0", "-port", "0"}, io.Discard)
	if err != nil || c.dir != "x" || c.edges != 3 || c.toolWorkers != 0 || c.port != 0 {
		t.Fatalf("flags: %+v %v", c, err)
	}
	for _, args := range [][]string{{"-edges", "0"}, {"-toolworkers", "-1"}, {"-edges", "17"}, {"extra"}, {"-nope"}, {"-start-timeout", "0s"}, {"-token-ttl", "8760h"}, {"-port", "-1"}, {"-port", "65535"}} {
		if _, err := parseFlags(args, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

type fakeTopology struct{}

func (fakeTopology) Edges() int { return 2 }
func (fakeTopology) EdgeURL(i int) string {
	return []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}[i]
}
func (fakeTopology) EdgeWSURL(i int) string {
	return []string{"ws://127.0.0.1:1/haip/websocket", "ws://127.0.0.1:2/haip/websocket"}[i]
}
func (fakeTopology) NATSURLs() string {
	return "nats://127.0.0.1:4,nats://127.0.0.1:5,nats://127.0.0.1:6"
}
func (fakeTopology) ToolWorkers() int { return 2 }
func (fakeTopology) Dir() string      { return "/data" }

func TestBanner(t *testing.T) {
	var b strings.Builder
	printBanner(&b, fakeTopology{}, "TOKEN", "OPERATOR")
	out := b.String()
	for _, want := range []string{
		"edge 1: http://127.0.0.1:1  websocket: ws://127.0.0.1:1/haip/websocket\n",
		"edge 2: http://127.0.0.1:2  websocket: ws://127.0.0.1:2/haip/websocket\n",
		"NATS: nats://127.0.0.1:4,nats://127.0.0.1:5,nats://127.0.0.1:6\n",
		"user token: TOKEN\n",
		"operator token: OPERATOR\n",
		"metrics: curl -H 'Authorization: Bearer OPERATOR' http://127.0.0.1:1/metrics\n",
		"try: go run ./cmd/haipchat -url ws://127.0.0.1:1/haip/websocket -token TOKEN\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
}
