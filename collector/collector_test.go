package collector_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"

	"github.com/keyspend/keyspend_exporter/collector"
	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from the current output")

// Secrets of the golden test's keys, checked against the output too.
const (
	secretBudget   = "sk-g1-5e81c3a9f7d204"
	secretDefault  = "sk-g2-0b6d2f84e1a937"
	secretFailing  = "sk-g3-9a3c7e15d2f860"
	secretUnlimit  = "sk-or-v1-c42e8b0f6a5193"
	secretBackup1  = "sk-g5-7f20d9e3b4c618"
	secretBackup2  = "sk-g6-3d8a51c6e0b472"
	openRouterBody = `{"data":{"label":"sk-or-v1-c42...193","usage":1.25,"limit":null,` +
		`"limit_remaining":null,"limit_reset":null,"is_free_tier":false}}`
)

// openRouter answers GET /api/v1/key for the one unlimited key it knows.
func openRouter(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/key" || r.Header.Get("Authorization") != "Bearer "+secretUnlimit {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":401,"message":"No auth credentials found"}}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, openRouterBody)
}

// goldenChecker has run one cycle over a key with an upstream budget, one
// with none (the configured budget applies), a failing one and an
// unlimited OpenRouter key, on a clock that stands still.
func goldenChecker(t *testing.T) *collector.Checker {
	t.Helper()
	st := storetest.New(t)
	sim, base := startSim(t)
	eight, threshold := 8.0, 7.5
	sim.AddKey(simulator.Key{Secret: secretBudget, StartSpendUSD: 3.21, MaxBudgetUSD: &eight})
	sim.AddKey(simulator.Key{Secret: secretDefault, StartSpendUSD: 1.5})
	sim.AddKey(simulator.Key{Secret: secretFailing, StartSpendUSD: 2})
	sim.SetFault(secretFailing, simulator.FaultServerError)

	withThreshold := litellmKey("litellm-default-budget", secretDefault)
	withThreshold.ThresholdUSD = &threshold
	unlimited := store.KeyImport{ID: "openrouter-unlimited", Provider: "openrouter",
		Secret: secretUnlimit, BaseURL: h2cServer(t, http.HandlerFunc(openRouter)).URL}
	importKeys(t, st, litellmKey("litellm-budget", secretBudget), withThreshold,
		litellmKey("litellm-failing", secretFailing), unlimited)
	_, err := st.ImportBackups(context.Background(), []store.Backup{
		{ID: "spare-1", Provider: "litellm", Secret: secretBackup1},
		{ID: "spare-2", Provider: "litellm", Secret: secretBackup2},
	})
	if err != nil {
		t.Fatalf("import backups: %v", err)
	}

	c := collector.NewChecker(checkerOptions(st, base, newClock(), &logBuffer{}))
	runCycle(t, c)
	return c
}

func TestMetricsGolden(t *testing.T) {
	c := goldenChecker(t)
	got := exposition(t, registry(c))

	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (regenerate with -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("/metrics differs from %s (regenerate with -update if intended):\n%s",
			golden, lineDiff(string(want), string(got)))
	}

	unlimited := `keyspend_key_budget_usd{key="openrouter-unlimited",provider="openrouter"}`
	if bytes.Contains(got, []byte(unlimited)) {
		t.Errorf("%s is exported for a key whose upstream limit is null, want no budget", unlimited)
	}

	problems, err := promlint.New(bytes.NewReader(got)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	for _, s := range []string{secretBudget, secretDefault, secretFailing, secretUnlimit,
		secretBackup1, secretBackup2} {
		if leaks(string(got), s) {
			t.Errorf("/metrics holds a piece of a secret")
		}
	}
}

func TestMetricsAnswerWhileUpstreamHangs(t *testing.T) {
	st := storetest.New(t)
	sim, base := startSim(t)
	sim.SetFault("", simulator.FaultHang)
	importKeys(t, st, litellmKey("key-a", "sk-hang-a-6e0f3b8d27"),
		litellmKey("key-b", "sk-hang-b-1c9a4e7f50"))
	opts := checkerOptions(st, base, newClock(), &logBuffer{})
	opts.Timeout = time.Hour
	c := collector.NewChecker(opts)
	srv := httptest.NewServer(promhttp.HandlerFor(registry(c), promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := runInBackground(ctx, c)
	waitUntil(t, "both checks hang at the upstream", func() bool { return sim.InFlight() == 2 })

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read scrape: %v", err)
	}
	stillRunning := sim.InFlight()

	if resp.StatusCode != http.StatusOK {
		t.Errorf("scrape answered %d, want 200", resp.StatusCode)
	}
	for _, want := range []string{
		`keyspend_key_threshold_usd{key="key-a",provider="litellm"} 9.95`,
		`keyspend_key_threshold_usd{key="key-b",provider="litellm"} 9.95`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	if stillRunning != 2 {
		t.Errorf("%d checks in flight after the scrape returned, want the 2 hung ones", stillRunning)
	}
	select {
	case res := <-done:
		t.Errorf("cycle ended (%+v, %v) while the upstream hung", res.report, res.err)
	default:
	}

	cancel()
	if res := <-done; res.err != nil || res.report.Checked != 2 {
		t.Errorf("cancelled cycle = %+v, %v; want both keys checked", res.report, res.err)
	}
}

// exposition is the text format a scrape of reg returns.
func exposition(t *testing.T, reg prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("encode %s: %v", mf.GetName(), err)
		}
	}
	return buf.Bytes()
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	count := func(text string) map[string]int {
		n := map[string]int{}
		for _, l := range strings.Split(text, "\n") {
			n[l]++
		}
		return n
	}
	w, g := count(want), count(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if w[l] > g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if g[l] > w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
