//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// shippedWebhook is the receiver URL of the shipped Alertmanager config: a
// host of the compose stack. The test points it at its own receiver, so
// Alertmanager never looks the name up and every delivery can be read back.
const shippedWebhook = "http://webhook-receiver:5001"

// stack is the demo scraped by Prometheus, which sends its alerts to
// Alertmanager, which notifies the test's webhook. Everything listens on
// 127.0.0.1 only.
type stack struct {
	root     string
	start    time.Time
	exporter string
	prom     string
	am       string
	promtool string
	hook     *webhook
	procs    []*process
}

func startStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{root: repoRoot(t), hook: startWebhook(t)}
	s.promtool = tool(t, "promtool")
	exporter := buildExporter(t)
	prometheus := tool(t, "prometheus")
	alertmanager := tool(t, "prometheus-alertmanager", "alertmanager")

	s.startAlertmanager(t, alertmanager)
	s.startDemo(t, exporter)
	s.startPrometheus(t, prometheus)
	s.eventually(t, time.Minute, time.Second, "Prometheus and Alertmanager to be ready",
		func() error {
			if !ready(s.prom) || !ready(s.am) {
				return fmt.Errorf("not ready")
			}
			return nil
		})
	return s
}

// startDemo runs the demo with few keys and backups and a short check
// interval, so the pool drains within a couple of minutes.
func (s *stack) startDemo(t *testing.T, bin string) {
	t.Helper()
	s.exporter = freeAddr(t)
	env := []string{
		"KEYSPEND_LISTEN_ADDRESS=" + s.exporter,
		"KEYSPEND_CHECK_INTERVAL=2s",
		"KEYSPEND_DATA_DIR=" + t.TempDir(),
		"KEYSPEND_MONGODB_URI=",
	}
	s.start = time.Now()
	p := start(t, "keyspend_exporter demo", env, bin,
		"demo", "--keys", "8", "--backups", "3", "--latency", "20ms")
	s.procs = append(s.procs, p)
}

func (s *stack) startPrometheus(t *testing.T, bin string) {
	t.Helper()
	addr := freeAddr(t)
	s.prom = "http://" + addr
	config := s.prometheusConfig(t)
	p := start(t, "prometheus", nil, bin,
		"--config.file="+config,
		"--storage.tsdb.path="+t.TempDir(),
		"--web.listen-address="+addr)
	s.procs = append(s.procs, p)
}

// prometheusConfig writes the test's Prometheus config, which loads the
// shipped rules file as it is.
func (s *stack) prometheusConfig(t *testing.T) string {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "prometheus.yml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = tmpl.Execute(&b, map[string]string{
		"Rules":        filepath.Join(s.root, "alerts", "keyspend.rules.yml"),
		"Alertmanager": strings.TrimPrefix(s.am, "http://"),
		"Exporter":     s.exporter,
	})
	if err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, "prometheus.yml", b.Bytes())
}

func (s *stack) startAlertmanager(t *testing.T, bin string) {
	t.Helper()
	addr := freeAddr(t)
	s.am = "http://" + addr
	p := start(t, "prometheus-alertmanager", nil, bin,
		"--config.file="+s.alertmanagerConfig(t),
		"--storage.path="+t.TempDir(),
		"--web.listen-address="+addr,
		"--cluster.listen-address=")
	s.procs = append(s.procs, p)
}

// alertmanagerConfig writes the shipped Alertmanager config with only its
// webhook URL changed to the test's receiver: routes, grouping and
// inhibitions are the ones users get.
func (s *stack) alertmanagerConfig(t *testing.T) string {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join(s.root, "deploy", "alertmanager", "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(shipped, []byte(shippedWebhook)); n != 1 {
		t.Fatalf("the shipped alertmanager.yml names %s %d times, want once", shippedWebhook, n)
	}
	config := bytes.Replace(shipped, []byte(shippedWebhook), []byte(s.hook.srv.URL), 1)
	return writeTemp(t, "alertmanager.yml", config)
}

func writeTemp(t *testing.T, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventually calls cond every poll until it returns nil, and fails the test
// after limit or as soon as a process of the stack exits. The limit bounds
// a hang; it asserts no speed.
func (s *stack) eventually(t *testing.T, limit, poll time.Duration, what string,
	cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		for _, p := range s.procs {
			if exit := p.exited(); exit != nil {
				t.Fatalf("waiting for %s: %v", what, exit)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s: %v", limit, what, err)
		}
		time.Sleep(poll)
	}
}

// since formats the time from the demo's start to at.
func (s *stack) since(at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return "+" + at.Sub(s.start).Round(time.Second).String()
}
