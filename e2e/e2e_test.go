//go:build e2e

// Package e2e runs the exporter's demo under Debian's Prometheus and
// Alertmanager and checks the shipped monitoring assets against them: the
// rules file as it is, the Alertmanager routes and inhibitions, and every
// query of the Grafana dashboard. Run it with
//
//	go test -tags e2e -count=1 -timeout 20m -v ./e2e/
//
// It takes about as long as the alerts' shipped "for" durations, several
// minutes.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// demoKeys is the number of keys the test's demo runs.
const demoKeys = 8

// required are the alerts the demo must raise: its keys near and over
// their threshold, rotations failing on the empty pool, and the empty pool.
var required = []string{
	"KeySpendNearThreshold",
	"KeySpendOverThresholdNotRotated",
	"RotationsFailing",
	"BackupPoolEmpty",
}

// healthy are the alerts a demo that runs well must never fire. Going
// pending is allowed: ExporterDown is pending until the first scrape.
// KeyChecksFailing is not listed: its 10 minutes outlast the test.
var healthy = []string{"ExporterDown", "StoreDown", "KeyChecksStale"}

// TestMonitoringStack follows the demo from its first scrape until its
// backup pool is drained and its keys are exhausted, and checks what an
// operator would see in Prometheus, Alertmanager, the webhook and the
// dashboard.
func TestMonitoringStack(t *testing.T) {
	s := startStack(t)
	s.waitScraped(t)
	s.lintMetrics(t)

	tl := timeline{}
	defer tl.log(t, s)
	s.waitAlerts(t, tl, required)
	for _, name := range required {
		checkRendered(t, tl[name].alert)
		s.checkReceived(t, name)
	}
	for _, name := range healthy {
		if si := tl[name]; si != nil && !si.firing.IsZero() {
			t.Errorf("%s fired (at %s) on a demo that runs well", name, s.since(si.firing))
		}
	}

	s.checkDrained(t)
	s.checkDashboard(t)
	s.lintMetrics(t)
	s.waitInhibited(t)
	s.waitNotified(t, "BackupPoolEmpty")

	t.Logf("whole run: %v", time.Since(s.start).Round(time.Second))
}

// waitScraped waits for the keyspend target to be up and for Prometheus to
// hold the spend of every demo key.
func (s *stack) waitScraped(t *testing.T) {
	t.Helper()
	s.eventually(t, time.Minute, time.Second, "the keyspend target to be up", func() error {
		ts, err := targets(s.prom)
		if err != nil {
			return err
		}
		for _, tg := range ts {
			if tg.Labels["job"] == "keyspend" && tg.Labels["instance"] == s.exporter &&
				tg.Health == "up" {
				return nil
			}
		}
		return fmt.Errorf("targets: %+v", ts)
	})
	want := fmt.Sprint(demoKeys)
	s.eventually(t, time.Minute, time.Second, "the spend of every demo key", func() error {
		return s.expect(`count(keyspend_key_spend_usd{job="keyspend"})`, want)
	})
}

// expect runs q and checks that it answers the single value want.
func (s *stack) expect(q, want string) error {
	v, err := query(s.prom, q)
	if err != nil {
		return err
	}
	if len(v) != 1 || v[0].Value[1] != want {
		return fmt.Errorf("%s = %v, want %s", q, v, want)
	}
	return nil
}

// lintMetrics runs the demo's /metrics through promtool check metrics,
// which must find nothing to say, and checks that no demo secret shows.
func (s *stack) lintMetrics(t *testing.T) {
	t.Helper()
	resp, err := client.Get("http://" + s.exporter + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if bytes.Contains(body, []byte("sk-demo-")) {
		t.Error("/metrics shows a demo secret")
	}
}

// checkDrained checks the state the dashboard check relies on: keys were
// rotated and the pool is empty.
func (s *stack) checkDrained(t *testing.T) {
	t.Helper()
	if err := s.expect(`sum(keyspend_key_rotations_total{job="keyspend"}) >= bool 1`,
		"1"); err != nil {
		t.Errorf("no rotation in Prometheus: %v", err)
	}
	if err := s.expect(`max(keyspend_backup_keys_available{job="keyspend"})`, "0"); err != nil {
		t.Errorf("backup pool not drained: %v", err)
	}
}

// checkDashboard runs every query of the dashboard, as the dashboard check
// script extracts them, and expects data from each.
func (s *stack) checkDashboard(t *testing.T) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "queries")
	script := filepath.Join(s.root, "deploy", "check-dashboard-queries.sh")
	if out, err := exec.Command("bash", script, "-o", file).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	content, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, q := range strings.Split(string(content), "\n") {
		if q = strings.TrimSpace(q); q != "" {
			s.checkQuery(t, q)
			n++
		}
	}
	t.Logf("%d dashboard queries checked", n)
}

func (s *stack) checkQuery(t *testing.T, q string) {
	t.Helper()
	v, err := query(s.prom, q)
	switch {
	case err != nil:
		t.Errorf("dashboard query %s: %v", q, err)
	case len(v) == 0:
		t.Errorf("dashboard query %s: no data", q)
	}
	for _, smp := range v {
		str, _ := smp.Value[1].(string)
		if f, err := strconv.ParseFloat(str, 64); err != nil || math.IsNaN(f) {
			t.Errorf("dashboard query %s: value %q for %v", q, str, smp.Metric)
		}
	}
}

// waitInhibited waits for the shipped inhibition: an empty pool explains
// rotations failing with reason pool_empty, so Alertmanager mutes them.
func (s *stack) waitInhibited(t *testing.T) {
	t.Helper()
	s.eventually(t, 2*time.Minute, 2*time.Second,
		`RotationsFailing{reason="pool_empty"} to be inhibited by BackupPoolEmpty`, func() error {
			alerts, err := amAlerts(s.am, `alertname="RotationsFailing"`, `reason="pool_empty"`)
			if err != nil {
				return err
			}
			if len(alerts) == 0 {
				return fmt.Errorf("no such alert in Alertmanager")
			}
			for _, a := range alerts {
				if a.Status.State != "suppressed" || len(a.Status.InhibitedBy) == 0 {
					return fmt.Errorf("state %q, inhibited by %v", a.Status.State,
						a.Status.InhibitedBy)
				}
			}
			return nil
		})
}

// waitNotified waits for Alertmanager to post a firing alert named name to
// the webhook, and checks every post it made.
func (s *stack) waitNotified(t *testing.T, name string) {
	t.Helper()
	s.eventually(t, 2*time.Minute, 2*time.Second, name+" at the webhook", func() error {
		n, ok := s.hook.firing(name)
		if !ok {
			return fmt.Errorf("%d notifications, none for %s", len(s.hook.notifications()), name)
		}
		if n.Receiver != "webhook" {
			return fmt.Errorf("posted for receiver %q, want webhook", n.Receiver)
		}
		return nil
	})
	for _, p := range s.hook.problems() {
		t.Errorf("webhook: %s", p)
	}
	for _, n := range s.hook.notifications() {
		if strings.Contains(n.raw, "sk-demo-") {
			t.Errorf("a notification shows a demo secret")
		}
	}
}
