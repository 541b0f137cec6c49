package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFaultsDoNotRotate runs keys whose upstream answers fail in every way
// next to one whose budget really is exceeded, with backups to spare: only
// the exceeded key is rotated, each failing key keeps its generation and
// logs one warning per check, and the process keeps serving.
func TestFaultsDoNotRotate(t *testing.T) {
	behaviours := []string{"budget", "invalid", "html", "garbage", "hang", "unknown"}
	app, _, _ := startLeaky(t, behaviours, behaviours, 5)

	// Three cycles after the rotation, so every failing key has failed
	// several times with backups available.
	app.waitMetrics(t, 30*time.Second, `keyspend_key_generation{key="budget",provider="litellm"} 1`)
	cycles := app.checker.Snapshot().Fleet.CyclesDone
	for app.checker.Snapshot().Fleet.CyclesDone < cycles+3 {
		time.Sleep(50 * time.Millisecond)
	}
	metrics := app.waitMetrics(t, 10*time.Second, `keyspend_backup_keys_available{provider="litellm"} 4`)

	for _, b := range behaviours[1:] {
		if !strings.Contains(metrics, fmt.Sprintf(`keyspend_key_generation{key=%q,provider="litellm"} 0`, b)) {
			t.Errorf("key %q was rotated by a failure that is not an exceeded budget", b)
		}
		if !strings.Contains(metrics, fmt.Sprintf(`keyspend_key_up{key=%q,provider="litellm"} 0`, b)) {
			t.Errorf("key %q is not reported down", b)
		}
	}
	logs := app.logs.String()
	if n := strings.Count(logs, "msg=\"rotated key\""); n != 1 {
		t.Errorf("%d rotations logged, want 1", n)
	}
	want := map[string]string{"invalid": "invalid_key", "html": "upstream_error", "garbage": "bad_response",
		"hang": "timeout", "unknown": "invalid_key"}
	for key, outcome := range want {
		line := fmt.Sprintf("msg=\"check failed\" key=%s provider=litellm outcome=%s err=", key, outcome)
		if n := strings.Count(logs, line); n < 3 {
			t.Errorf("key %q: %d warning lines %q, want one per failed check (at least 3)", key, n, line)
		}
	}
}
