package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/config"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig is the default configuration on an embedded store in a
// temporary directory, checking every half second.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.CheckInterval = 500 * time.Millisecond
	cfg.IdleCheckInterval = 500 * time.Millisecond
	cfg.CheckTimeout = 2 * time.Second
	cfg.RotationGrace = time.Minute
	return cfg
}

// runningApp is an exporter serving on a loopback port inside the test.
type runningApp struct {
	*app
	base string
	logs *syncBuffer
	stop func()
}

func startApp(t *testing.T, cfg config.Config, seed func(a *app)) *runningApp {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := newApp(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	if seed != nil {
		seed(a)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.serveOn(ctx, ln) }()

	r := &runningApp{app: a, base: "http://" + ln.Addr().String(), logs: logs}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

func (r *runningApp) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(r.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// waitMetrics polls /metrics until it contains every wanted line, and
// returns the body. The limit bounds a hang; it asserts no speed.
func (r *runningApp) waitMetrics(t *testing.T, limit time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	var body string
	for time.Now().Before(deadline) {
		_, body = r.get(t, "/metrics")
		missing := false
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = true
				break
			}
		}
		if !missing {
			return body
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/metrics never showed all of %q; last:\n%s\nlog:\n%s", want, body, r.logs.String())
	return ""
}

func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
