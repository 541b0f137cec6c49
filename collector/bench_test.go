package collector_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/keyspend/keyspend_exporter/collector"
	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

// benchChecker loads n keys into a fresh store, serves them from a
// simulator that holds every answer for latency, and returns a checker for
// which every key is due on every cycle.
func benchChecker(b *testing.B, n int, latency time.Duration) *collector.Checker {
	b.Helper()
	sim := simulator.New(simulator.Options{Latency: latency})
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sim.Close() })

	st := storetest.New(b)
	keys := make([]store.KeyImport, n)
	for i := range keys {
		secret := fmt.Sprintf("sk-bench-%06d-secret", i)
		sim.AddKey(simulator.Key{Secret: secret, StartSpendUSD: float64(i%900) / 100})
		keys[i] = store.KeyImport{ID: fmt.Sprintf("bench-%06d", i), Provider: "litellm", Secret: secret}
	}
	if _, _, err := st.ImportKeys(context.Background(), keys); err != nil {
		b.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return collector.NewChecker(collector.Options{
		Store: st, Client: &http.Client{Transport: &http.Transport{Protocols: p}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Interval: time.Nanosecond, IdleInterval: time.Nanosecond, ActiveWindow: time.Minute,
		Timeout: time.Minute, ThresholdUSD: 9.95, BudgetUSD: 10,
		BaseURLs: map[string]string{"litellm": base}, HistoryBuffer: 1 << 20,
	})
}

// BenchmarkCycle measures one whole cycle (load keys, check every key at
// once, write history) against an upstream that takes 100ms per answer.
// check-latency-multiple is the checking part of the cycle over that 100ms:
// near 1 means all checks together last as long as one check, whatever the
// key count. cycle-latency-multiple adds the store's work around them.
func BenchmarkCycle(b *testing.B) {
	const latency = 100 * time.Millisecond
	for _, n := range []int{10, 100, 1000, 5000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			c := benchChecker(b, n, latency)
			ctx := context.Background()
			var total, checking time.Duration
			for b.Loop() {
				rep, err := c.RunCycle(ctx)
				if err != nil || rep.Checked != n {
					b.Fatalf("cycle checked %d keys, err %v", rep.Checked, err)
				}
				total += rep.Duration
				checking += rep.CheckDuration
			}
			b.ReportMetric(float64(checking)/float64(b.N)/float64(latency), "check-latency-multiple")
			b.ReportMetric(float64(total)/float64(b.N)/float64(latency), "cycle-latency-multiple")
		})
	}
}

var scrapeKeys = 10000

// BenchmarkScrape measures one scrape of 10,000 keys: gathering the
// collector's metrics and writing them in the text format.
func BenchmarkScrape(b *testing.B) {
	c := benchChecker(b, scrapeKeys, 0)
	if _, err := c.RunCycle(context.Background()); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector.New(c, nil, 5))
	for b.Loop() {
		families, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range families {
			if err := enc.Encode(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}
