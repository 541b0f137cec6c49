//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// sighting is when the test first saw an alert at each stage of its way
// from the rules to Alertmanager.
type sighting struct {
	pending  time.Time // Prometheus' activeAt: the expression first held
	firing   time.Time // first poll that saw it firing in Prometheus
	received time.Time // first poll that saw it in Alertmanager
	alert    promAlert // the first firing alert, as Prometheus rendered it
}

// timeline holds the sightings by alert name.
type timeline map[string]*sighting

func (tl timeline) of(name string) *sighting {
	if tl[name] == nil {
		tl[name] = &sighting{}
	}
	return tl[name]
}

// observe records what Prometheus and Alertmanager hold now.
func (tl timeline) observe(s *stack) error {
	prom, err := promAlerts(s.prom)
	if err != nil {
		return err
	}
	am, err := amAlerts(s.am)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, a := range prom {
		tl.recordProm(now, a)
	}
	for _, a := range am {
		if si := tl.of(a.Labels["alertname"]); si.received.IsZero() {
			si.received = now
		}
	}
	return nil
}

func (tl timeline) recordProm(now time.Time, a promAlert) {
	si := tl.of(a.Labels["alertname"])
	if si.pending.IsZero() || a.ActiveAt.Before(si.pending) {
		si.pending = a.ActiveAt
	}
	if a.State == "firing" && si.firing.IsZero() {
		si.firing = now
		si.alert = a
	}
}

// missing returns the names not yet both firing in Prometheus and held by
// Alertmanager.
func (tl timeline) missing(names []string) []string {
	var out []string
	for _, n := range names {
		if si := tl[n]; si == nil || si.firing.IsZero() || si.received.IsZero() {
			out = append(out, n)
		}
	}
	return out
}

// waitAlerts polls both APIs until every name fires in Prometheus and has
// reached Alertmanager.
func (s *stack) waitAlerts(t *testing.T, tl timeline, names []string) {
	t.Helper()
	s.eventually(t, 15*time.Minute, 2*time.Second, "alerts "+strings.Join(names, ", "),
		func() error {
			if err := tl.observe(s); err != nil {
				return err
			}
			if m := tl.missing(names); len(m) > 0 {
				return fmt.Errorf("not yet firing and in Alertmanager: %v", m)
			}
			return nil
		})
}

// checkRendered checks the annotations of a firing alert as Prometheus
// rendered them: a template that fails leaves its error in the text.
func checkRendered(t *testing.T, a promAlert) {
	t.Helper()
	name := a.Labels["alertname"]
	want := "docs/alerts.md#" + strings.ToLower(name)
	if got := a.Annotations["runbook_url"]; got != want {
		t.Errorf("%s: runbook_url %q, want %q", name, got, want)
	}
	for k, v := range a.Annotations {
		for _, bad := range []string{"error expanding template", "<no value>", "sk-demo-"} {
			if strings.Contains(v, bad) {
				t.Errorf("%s: annotation %s holds %q: %s", name, k, bad, v)
			}
		}
	}
}

// checkReceived reads an alert back from Alertmanager by name and checks
// that the shipped routes send it to the webhook.
func (s *stack) checkReceived(t *testing.T, name string) {
	t.Helper()
	alerts, err := amAlerts(s.am, fmt.Sprintf("alertname=%q", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) == 0 {
		t.Errorf("Alertmanager holds no %s alert", name)
	}
	for _, a := range alerts {
		if a.Labels["job"] != "keyspend" || a.Labels["severity"] == "" {
			t.Errorf("%s in Alertmanager has labels %v, want job=keyspend and a severity",
				name, a.Labels)
		}
		if !slices.Contains(a.Receivers, receiver{Name: "webhook"}) {
			t.Errorf("%s in Alertmanager goes to %v, want the webhook", name, a.Receivers)
		}
	}
}

// log prints when each alert reached each stage, relative to the demo's
// start.
func (tl timeline) log(t *testing.T, s *stack) {
	t.Helper()
	names := make([]string, 0, len(tl))
	for n := range tl {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return tl[a].pending.Compare(tl[b].pending) })
	for _, n := range names {
		si := tl[n]
		t.Logf("%-32s first pending %-7s firing in Prometheus %-7s in Alertmanager %-7s %s",
			n, s.since(si.pending), s.since(si.firing), s.since(si.received), subject(si.alert))
	}
}

// subject names what a firing alert is about: its key, or else the reason
// or provider.
func subject(a promAlert) string {
	for _, l := range []string{"key", "reason", "provider"} {
		if v := a.Labels[l]; v != "" {
			return l + "=" + v
		}
	}
	return ""
}
