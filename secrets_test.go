package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/config"
	"github.com/keyspend/keyspend_exporter/internal/keyfile"
	"github.com/keyspend/keyspend_exporter/internal/store"

	"github.com/keyspend/keyspend_exporter/internal/secrettest"
)

func newSecret() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return "sk-" + hex.EncodeToString(b)
}

// leakyUpstream answers /key/info for each secret in its own way, and
// quotes the secret back in every error, as real proxies sometimes do.
func leakyUpstream(t *testing.T, behaviour map[string]string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		last4 := secret[len(secret)-4:]
		switch behaviour[secret] {
		case "ok", "backup":
			fmt.Fprintf(w, `{"key": %q, "info": {"spend": 1.23, "max_budget": null}}`, secret)
		case "over":
			fmt.Fprintf(w, `{"key": %q, "info": {"spend": 9.99, "max_budget": 10}}`, secret)
		case "budget":
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintf(w, `{"error": {"message": "Budget has been exceeded! key=%s Current cost: 10.5, Max budget: 10.0",`+
				` "type": "budget_exceeded", "param": %q, "code": "429"}}`, secret, secret)
		case "invalid":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error": {"message": "Authentication Error, Invalid proxy server token passed. `+
				`Received API Key = sk-...%s, Key Hash (Token)=%s", "type": "auth_error", "param": "None", "code": "401"}}`,
				last4, secret)
		case "html":
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "<html><body>upstream for %s is down</body></html>", secret)
		case "garbage":
			fmt.Fprintf(w, `{"key": %q, "info": {"spend": %q}}`, secret, secret)
		case "hang":
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error": {"message": "unknown key %s"}}`, secret)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestNoSecretLeaks drives the exporter through every path that touches a
// secret (checks that succeed, fail in each way, rotate, find the pool
// empty) and then searches /metrics, the status page, every log line, the
// keys list and the errors of bad input for any 8-character piece of any
// secret.
func TestNoSecretLeaks(t *testing.T) {
	behaviours := []string{"ok", "over", "budget", "invalid", "html", "garbage", "hang", "over", "unknown"}
	ids := make([]string, len(behaviours))
	for i, b := range behaviours {
		ids[i] = fmt.Sprintf("key-%d-%s", i, b)
	}
	app, secrets, keys := startLeaky(t, ids, behaviours, 2)

	// Three keys breach and two backups exist: two rotations, one exhausted.
	metrics := app.waitMetrics(t, 30*time.Second,
		`keyspend_rotation_failures_total{reason="pool_empty"} 1`,
		`keyspend_backup_keys_available{provider="litellm"} 0`)
	// Wait until every failure path has been taken at least once, so the
	// search below covers them.
	deadline := time.Now().Add(30 * time.Second)
	for _, outcome := range []string{"ok", "budget_exceeded", "invalid_key", "upstream_error", "bad_response", "timeout"} {
		zero := regexp.MustCompile(`keyspend_checks_total\{outcome="` + outcome + `",provider="litellm"\} 0\n`)
		for zero.MatchString(metrics) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			_, metrics = app.get(t, "/metrics")
		}
		if zero.MatchString(metrics) {
			t.Errorf("no check ended %s: the test does not drive that path", outcome)
		}
	}
	_, page := app.get(t, "/")

	var list bytes.Buffer
	if err := listKeys(context.Background(), app.store, &list); err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{"metrics": metrics, "status page": page, "keys list": list.String(),
		"bad input": badInputErrors(t, keys[0].Secret)}
	app.stop()
	texts["logs"] = app.logs.String()

	for name, text := range texts {
		for secret := range secrets {
			if piece := secrettest.Piece(text, secret); piece != "" {
				t.Errorf("%s shows %q, a piece of a secret", name, piece)
			}
		}
	}
}

// startLeaky runs the exporter against leakyUpstream with one key per id,
// each answered as its behaviour says, and a pool of backups. It returns
// every secret with its behaviour, and the keys.
func startLeaky(t *testing.T, ids, behaviours []string, backups int) (*runningApp, map[string]string,
	[]store.KeyImport) {
	t.Helper()
	secrets := map[string]string{}
	var keys []store.KeyImport
	for i, b := range behaviours {
		s := newSecret()
		secrets[s] = b
		keys = append(keys, store.KeyImport{ID: ids[i], Provider: "litellm", Secret: s})
	}
	var pool []store.Backup
	for i := 0; i < backups; i++ {
		s := newSecret()
		secrets[s] = "backup"
		pool = append(pool, store.Backup{ID: fmt.Sprintf("backup-%d", i), Provider: "litellm", Secret: s})
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
		if _, err := a.store.ImportBackups(ctx, pool); err != nil {
			t.Fatal(err)
		}
	})
	return app, secrets, keys
}

// badInputErrors collects the errors of an import file and a MongoDB URI
// that both carry a secret.
func badInputErrors(t *testing.T, secret string) string {
	var errs []string
	for _, file := range []string{
		`[{"id": "x", "provider": "litellm", "secret": "` + secret + `", "budget_usd": "` + secret + `"}]`,
		`{"id": "x", "provider": "nope", "secret": "` + secret + `"}`,
		`[{"id": "x", "provider": "litellm", "secret": "` + secret + `"`,
	} {
		_, err := keyfile.Parse(strings.NewReader(file))
		errs = append(errs, fmt.Sprint(err))
	}
	t.Setenv("KEYSPEND_MONGODB_URI", "mongodb//admin:"+secret+"@db")
	_, err := config.Load()
	errs = append(errs, fmt.Sprint(err))

	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, []byte(`{"id": "x", "secret": "`+secret+`", "provider": 7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	errs = append(errs, fmt.Sprint(importFile(context.Background(), nil, "keys", path, &bytes.Buffer{})))
	return strings.Join(errs, "\n")
}
