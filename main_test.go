package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// binary is the exporter built once for the tests that run it as a process,
// the way an operator does.
var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

func exporterBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyspend-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "keyspend_exporter")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// process is a running exporter with its log lines collected.
type process struct {
	cmd  *exec.Cmd
	addr string

	mu    sync.Mutex
	lines []string
	done  chan error
}

func startExporter(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{addr: freeAddr(t), done: make(chan error, 1)}
	p.cmd = exec.Command(exporterBinary(t), args...)
	p.cmd.Env = append(os.Environ(), "KEYSPEND_LISTEN_ADDRESS="+p.addr)
	p.cmd.Env = append(p.cmd.Env, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.collect(stderr)
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *process) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		p.mu.Unlock()
	}
	p.done <- p.cmd.Wait()
}

func (p *process) logLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// scrape fetches and parses /metrics; nil when it does not answer yet.
func (p *process) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics answered %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// waitFor scrapes until cond holds, failing after limit. The limit is a
// bound on a hang, not a speed assertion.
func (p *process) waitFor(t *testing.T, limit time.Duration, what string,
	cond func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if fams := p.scrape(t); fams != nil && cond(fams) {
			return fams
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s; log:\n%s", what, strings.Join(p.logLines(), "\n"))
	return nil
}

func sum(fams map[string]*dto.MetricFamily, name string) (float64, int) {
	f, ok := fams[name]
	if !ok {
		return 0, 0
	}
	total := 0.0
	for _, m := range f.Metric {
		switch {
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Counter != nil:
			total += m.Counter.GetValue()
		}
	}
	return total, len(f.Metric)
}

var spendLine = regexp.MustCompile(`time=(\S+) level=INFO msg="💵 \[SpendChecker\] (demo-key-\d+): \$\d+\.\d{2} / \$9\.95 \(\d+\.\d%\)"`)

// TestDemo runs the demo as a user does and checks what the README
// promises: spend for every key on /metrics after the first cycle, the
// cycle's spend lines together, rotations that drain the backup pool, and a
// clean exit on SIGTERM.
func TestDemo(t *testing.T) {
	const keys = 12
	p := startExporter(t, []string{"KEYSPEND_CHECK_INTERVAL=2s"},
		"demo", "--keys", fmt.Sprint(keys), "--backups", "4", "--latency", "20ms")

	fams := p.waitFor(t, 30*time.Second, "spend of every demo key", func(f map[string]*dto.MetricFamily) bool {
		_, n := sum(f, "keyspend_key_spend_usd")
		return n == keys
	})
	pool, _ := sum(fams, "keyspend_backup_keys_available")

	first := firstCycleLines(p.logLines(), keys)
	if len(first) != keys {
		t.Fatalf("found %d spend lines of the first cycle, want %d:\n%s", len(first), keys,
			strings.Join(p.logLines(), "\n"))
	}
	assertTogether(t, first)

	// The first demo key starts at 96% of its threshold and crosses it
	// within seconds; each rotation takes one backup from the pool.
	p.waitFor(t, 60*time.Second, "a rotation that takes a backup", func(f map[string]*dto.MetricFamily) bool {
		rotations, _ := sum(f, "keyspend_key_rotations_total")
		poolAfter, _ := sum(f, "keyspend_backup_keys_available")
		return rotations >= 1 && poolAfter == pool-rotations
	})

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
		p.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
}

// firstCycleLines returns the time of each spend line of the first cycle:
// the first line seen for each key.
func firstCycleLines(lines []string, keys int) []time.Time {
	seen := map[string]bool{}
	var times []time.Time
	for _, l := range lines {
		m := spendLine.FindStringSubmatch(l)
		if m == nil || seen[m[2]] {
			continue
		}
		seen[m[2]] = true
		if ts, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			times = append(times, ts)
		}
		if len(times) == keys {
			break
		}
	}
	return times
}

// assertTogether checks that a cycle's lines were written within one
// second of each other. Asserting the same wall-clock second would fail
// whenever a cycle of a few milliseconds happens to straddle a second
// boundary, which says nothing about the checks running at once.
func assertTogether(t *testing.T, times []time.Time) {
	t.Helper()
	lo, hi := times[0], times[0]
	for _, ts := range times {
		if ts.Before(lo) {
			lo = ts
		}
		if ts.After(hi) {
			hi = ts
		}
	}
	if hi.Sub(lo) >= time.Second {
		t.Errorf("the first cycle's spend lines span %v, want under a second", hi.Sub(lo))
	}
}

// TestSIGTERMDuringCycle stops the exporter while a check hangs: the hung
// check is cancelled, the cycle's finished results are written to the
// store, and the process exits 0.
func TestSIGTERMDuringCycle(t *testing.T) {
	var hanging atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer sk-hangs-forever-000" {
			hanging.Add(1)
			<-r.Context().Done()
			return
		}
		fmt.Fprint(w, `{"key": "x", "info": {"spend": 2.5, "max_budget": 10}}`)
	}))
	defer upstream.Close()

	dataDir := t.TempDir()
	keys := filepath.Join(t.TempDir(), "keys.jsonl")
	lines := `{"id": "hangs", "provider": "litellm", "secret": "sk-hangs-forever-000"}` + "\n"
	for i := 0; i < 5; i++ {
		lines += fmt.Sprintf(`{"id": "ok-%d", "provider": "litellm", "secret": "sk-answers-%03d"}`+"\n", i, i)
	}
	if err := os.WriteFile(keys, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"KEYSPEND_DATA_DIR=" + dataDir, "KEYSPEND_LITELLM_URL=" + upstream.URL,
		"KEYSPEND_CHECK_TIMEOUT=5m", "KEYSPEND_CHECK_INTERVAL=1s"}
	imp := exec.Command(exporterBinary(t), "keys", "import", keys)
	imp.Env = append(os.Environ(), env...)
	if out, err := imp.CombinedOutput(); err != nil || !strings.Contains(string(out), "6 new") {
		t.Fatalf("keys import: %v\n%s", err, out)
	}

	p := startExporter(t, env)
	deadline := time.Now().Add(30 * time.Second)
	for hanging.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if hanging.Load() == 0 {
		t.Fatalf("the hanging check never started; log:\n%s", strings.Join(p.logLines(), "\n"))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; log:\n%s", err, strings.Join(p.logLines(), "\n"))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM while a check hung")
	}

	emb, err := store.StartEmbedded(dataDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	st, err := store.Open(emb.URI(), store.DefaultNames, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	n, err := st.CountHistory(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Errorf("%d history points written, want the 5 finished checks of the interrupted cycle", n)
	}
}

// TestBadConfigExits runs the binary with bad values: each start fails with
// exit code 1 and one line on stderr naming the variable.
func TestBadConfigExits(t *testing.T) {
	for _, env := range []string{
		"KEYSPEND_CHECK_INTERVAL=30", "KEYSPEND_THRESHOLD_USD=0", "KEYSPEND_MONGODB_URI=localhost:27017",
	} {
		cmd := exec.Command(exporterBinary(t))
		cmd.Env = append(os.Environ(), env)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%s: err %v, want exit code 1", env, err)
		}
		name := strings.SplitN(env, "=", 2)[0]
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "keyspend_exporter: "+name+": ") {
			t.Errorf("%s: stderr %q, want one line naming %s", env, stderr.String(), name)
		}
	}
}

// TestAdminCommands imports keys and backups through the binary into an
// embedded store and lists the keys with their secrets masked.
func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	env := append(os.Environ(), "KEYSPEND_DATA_DIR="+filepath.Join(dir, "data"))
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(exporterBinary(t), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	keys := write("keys.json", `[{"id": "team-a", "provider": "litellm", "secret": "sk-admin-aaaaaaaaaaaa1111",
		"base_url": "http://127.0.0.1:4000", "budget_usd": 10},
		{"id": "team-b", "provider": "openrouter", "secret": "sk-or-v1-bbbbbbbbbbbb2222"}]`)
	backups := write("backups.jsonl", `{"id": "spare-1", "provider": "litellm", "secret": "sk-admin-cccccccccccc3333"}
{"id": "spare-2", "provider": "litellm", "secret": "sk-admin-dddddddddddd4444"}`)

	if out := run("keys", "import", keys); !strings.Contains(out, "imported 2 keys: 2 new, 0 updated") {
		t.Errorf("keys import said %q", out)
	}
	if out := run("keys", "import", keys); !strings.Contains(out, "imported 2 keys: 0 new, 2 updated") {
		t.Errorf("second keys import said %q", out)
	}
	if out := run("backups", "import", backups); !strings.Contains(out, "imported 2 backups, 0 already in the pool") {
		t.Errorf("backups import said %q", out)
	}
	if out := run("backups", "import", backups); !strings.Contains(out, "imported 0 backups, 2 already in the pool") {
		t.Errorf("second backups import said %q", out)
	}

	list := run("keys", "list")
	for _, want := range []string{"team-a", "litellm", "active", "team-b", "openrouter", "sk-...1111", "sk-...2222"} {
		if !strings.Contains(list, want) {
			t.Errorf("keys list lacks %q:\n%s", want, list)
		}
	}
	for _, secret := range []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"} {
		if strings.Contains(list, secret) {
			t.Errorf("keys list shows a secret:\n%s", list)
		}
	}
}
