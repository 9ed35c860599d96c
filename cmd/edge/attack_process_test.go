package main_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Idle keep-alive HTTP connections were never closed and not counted:
// 3,000 stayed open, each holding a file descriptor. Now the edge
// process closes a connection idle for HTTP_IDLE_TIMEOUT, closes new ones
// beyond MAX_HTTP_CONNECTIONS at once, and counts both on /metrics.
func TestAttackIdleHTTPConnections(t *testing.T) {
	t.Parallel()
	const max, tries = 10, 30
	e := startEdge(t, t.TempDir(), map[string]string{"MAX_HTTP_CONNECTIONS": fmt.Sprint(max), "HTTP_IDLE_TIMEOUT": "3s"})
	addr := strings.TrimSuffix(strings.TrimPrefix(e.ws, "ws://"), "/haip/websocket")

	// health asks for /health on c and keeps the connection open.
	health := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	var served []net.Conn
	refused := 0
	for range tries {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if err := health(c); err != nil {
			refused++
			_ = c.Close()
			continue
		}
		served = append(served, c)
	}
	if len(served) > max || len(served) == 0 {
		t.Fatalf("%d of %d idle keep-alive connections served and kept open (%d refused); MAX_HTTP_CONNECTIONS %d", len(served), tries, refused, max)
	}
	// Each idle one is closed by the edge after HTTP_IDLE_TIMEOUT.
	began := time.Now()
	for i, c := range served {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("idle connection %d still open %s later", i, time.Since(began).Round(time.Second))
		}
	}
	t.Logf("%d served, %d refused; the served ones were closed %s after they went idle", len(served), refused, time.Since(began).Round(100*time.Millisecond))

	// Both are counted.
	resp := scrape(t, "http://"+addr, "/metrics")
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"haip_edge_http_connections_open ", `haip_edge_connections_refused_total{reason="max_http_connections",transport="tcp"} ` + fmt.Sprint(refused)} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %q on /metrics", want)
		}
	}
}
