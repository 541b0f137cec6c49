package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyspend/keyspend_exporter/collector"
	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"

	"github.com/keyspend/keyspend_exporter/internal/secrettest"
)

// start is the fixed moment the test clocks begin at.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a test clock that moves only when told to, so the due keys of
// each cycle and every exported timestamp are known in advance.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: start} }

// Now returns the clock's time.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuffer collects JSON log lines written from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends one log line.
func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is everything logged so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// records decodes every line logged so far.
func (l *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// find returns the records at level whose fields hold every given value.
func (l *logBuffer) find(t *testing.T, level string, fields map[string]string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range l.records(t) {
		if r["level"] != level {
			continue
		}
		match := true
		for k, v := range fields {
			if s, _ := r[k].(string); s != v {
				match = false
			}
		}
		if match {
			out = append(out, r)
		}
	}
	return out
}

// h2cClient speaks HTTP/2 without TLS, as the demo's client does, so every
// check shares one connection.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, MaxIdleConnsPerHost: 512}}
}

// h2cServer serves h over HTTP/1.1 and h2c until the test ends.
func h2cServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = p
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// startSim runs a simulator until the test ends; its clock stands still.
func startSim(t *testing.T) (*simulator.Simulator, string) {
	t.Helper()
	sim := simulator.New(simulator.Options{Now: func() time.Time { return start }})
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim, base
}

// checkerOptions fills every field a checker needs, the way main does.
func checkerOptions(st *store.Store, base string, clk *clock, logs *logBuffer) collector.Options {
	return collector.Options{
		Store:         st,
		Client:        h2cClient(),
		Logger:        slog.New(slog.NewJSONHandler(logs, nil)),
		Interval:      time.Minute,
		IdleInterval:  10 * time.Minute,
		ActiveWindow:  10 * time.Minute,
		Timeout:       30 * time.Second,
		ThresholdUSD:  9.95,
		BudgetUSD:     10,
		BaseURLs:      map[string]string{"litellm": base},
		ReplicaCount:  1,
		HistoryBuffer: 1000,
		Now:           clk.Now,
	}
}

// importKeys stores keys as an operator's import file would.
func importKeys(t *testing.T, st *store.Store, keys ...store.KeyImport) {
	t.Helper()
	if _, _, err := st.ImportKeys(context.Background(), keys); err != nil {
		t.Fatalf("import keys: %v", err)
	}
}

// litellmKey is a key of the default LiteLLM upstream.
func litellmKey(id, secret string) store.KeyImport {
	return store.KeyImport{ID: id, Provider: "litellm", Secret: secret}
}

// runCycle runs one cycle and fails the test if it could not.
func runCycle(t *testing.T, c *collector.Checker) collector.CycleReport {
	t.Helper()
	rep, err := c.RunCycle(context.Background())
	if err != nil {
		t.Fatalf("RunCycle: %v", err)
	}
	return rep
}

// registry registers only the collector, as a scrape of it sees it.
func registry(c *collector.Checker) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector.New(c, nil, 3))
	return reg
}

// scrape gathers every sample as `name{label="value",...}` to its value.
// Histograms are left out: their samples depend on the check durations.
func scrape(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var v float64
			switch {
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			default:
				continue
			}
			pairs := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				pairs = append(pairs, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(pairs)
			out[mf.GetName()+"{"+strings.Join(pairs, ",")+"}"] = v
		}
	}
	return out
}

// series names one sample the way scrape does.
func series(name string, labels ...string) string {
	pairs := make([]string, 0, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// keySeries names a per-key sample.
func keySeries(name, key, provider string) string {
	return series(name, "key", key, "provider", provider)
}

// wantValue checks one sample of a scrape.
func wantValue(t *testing.T, got map[string]float64, name string, want float64) {
	t.Helper()
	v, ok := got[name]
	switch {
	case !ok:
		t.Errorf("%s is missing from the scrape", name)
	case v != want:
		t.Errorf("%s = %v, want %v", name, v, want)
	}
}

// leaks reports whether text holds a piece of secret.
func leaks(text, secret string) bool {
	return secrettest.Piece(text, secret) != ""
}

// waitUntil polls cond until it holds; it fails the test after a generous
// deadline, which only a broken checker reaches.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// held answers like LiteLLM with the spend of the presented secret, but
// only after taking a value from gate: closing gate releases every request,
// sending on it releases one. It records the protocol of every request.
type held struct {
	gate     chan struct{}
	spends   map[string]float64 // read-only once serving
	releaser sync.Once

	mu     sync.Mutex
	protos map[string]int
}

func newHeld(spends map[string]float64) *held {
	return &held{gate: make(chan struct{}), spends: spends, protos: map[string]int{}}
}

// releaseAll lets every request through, now and later; calling it again
// does nothing.
func (h *held) releaseAll() {
	h.releaser.Do(func() { close(h.gate) })
}

// ServeHTTP holds the request until the gate lets it through.
func (h *held) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.protos[r.Proto]++
	h.mu.Unlock()

	select {
	case <-h.gate:
	case <-r.Context().Done():
		return
	}
	secret := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	spend, ok := h.spends[secret]
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"key":"hashed","info":{"spend":%v,"max_budget":null}}`, spend)
}

// protocols returns how many requests came over each protocol.
func (h *held) protocols() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for p, n := range h.protos {
		out[p] = n
	}
	return out
}
