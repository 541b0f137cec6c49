package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// TestFaultsDoNotRotate runs keys whose upstream answers fail in every way
// next to one whose budget really is exceeded, with backups to spare: only
// the exceeded key is rotated, each failing key keeps its generation and
// logs one warning per check, and the process keeps serving.
func TestFaultsDoNotRotate(t *testing.T) {
	behaviours := []string{"budget", "invalid", "html", "garbage", "hang", "unknown"}
	secrets := map[string]string{}
	var keys []store.KeyImport
	for _, b := range behaviours {
		s := newSecret()
		secrets[s] = b
		keys = append(keys, store.KeyImport{ID: b, Provider: "litellm", Secret: s})
	}
	var backups []store.Backup
	for i := 0; i < 5; i++ {
		s := newSecret()
		secrets[s] = "backup"
		backups = append(backups, store.Backup{ID: fmt.Sprintf("spare-%d", i), Provider: "litellm", Secret: s})
	}
	upstream := leakyUpstream(t, secrets)

	cfg := testConfig(t)
	cfg.LiteLLMURL = upstream.URL
	cfg.CheckTimeout = 300 * time.Millisecond
	app := startApp(t, cfg, func(a *app) {
		ctx := context.Background()
		if _, _, err := a.store.ImportKeys(ctx, keys); err != nil {
			t.Fatal(err)
		}
		if _, err := a.store.ImportBackups(ctx, backups); err != nil {
			t.Fatal(err)
		}
	})

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
