package main

import (
	"fmt"
	"io"
	"time"

	"github.com/haipfabric/haipfabric/auth"
)

// tokenSubject is the user the printed token speaks for.
const tokenSubject = "dev-user"

// operatorSubject is who the printed operator token speaks for.
const operatorSubject = "dev-operator"

func userToken(ttl time.Duration) auth.MintOptions {
	return auth.MintOptions{Subject: tokenSubject, Role: auth.RoleUser, TTL: ttl}
}

// operatorToken opens the edges' /metrics and /stats.
func operatorToken(ttl time.Duration) auth.MintOptions {
	return auth.MintOptions{Subject: operatorSubject, Role: auth.RoleAdmin, TTL: ttl}
}

// topology is what the banner tells about a running cluster.
type topology interface {
	Edges() int
	EdgeURL(i int) string
	EdgeWSURL(i int) string
	NATSURLs() string
	ToolWorkers() int
	Dir() string
}

// printBanner tells how to use the cluster; lines are stable for scripts.
// operator is an admin token, for the edges' /metrics and /stats.
func printBanner(w io.Writer, c topology, token, operator string) {
	for i := range c.Edges() {
		fmt.Fprintf(w, "edge %d: %s  websocket: %s\n", i+1, c.EdgeURL(i), c.EdgeWSURL(i))
	}
	fmt.Fprintf(w, "NATS: %s\n", c.NATSURLs())
	fmt.Fprintf(w, "tool workers: %d (built-in tools and demo-agent replicas)\n", c.ToolWorkers())
	fmt.Fprintf(w, "data and logs: %s\n", c.Dir())
	fmt.Fprintf(w, "user token: %s\n", token)
	fmt.Fprintf(w, "operator token: %s\n", operator)
	fmt.Fprintf(w, "metrics: curl -H 'Authorization: Bearer %s' %s/metrics\n", operator, c.EdgeURL(0))
	fmt.Fprintf(w, "try: go run ./cmd/haipchat -url %s -token %s\n", c.EdgeWSURL(0), token)
	if c.Edges() > 1 {
		fmt.Fprintf(w, "resume on another edge: go run ./cmd/haipchat -url %s -token %s -session <id> -last-seq <n>\n", c.EdgeWSURL(1), token)
	}
	fmt.Fprintln(w, "stop with Ctrl-C")
}
