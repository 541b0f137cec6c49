//go:build !race

// The race detector allows at most 8,128 live goroutines, fewer than a
// 10,000-key cycle starts; this file runs in the README's load command,
// without -race.

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// TestLoadScrapersOn10000Keys holds 200 concurrent scrapers on /metrics of an
// exporter with 10,000 keys: every scrape answers 200 with every key, and
// no goroutine or descriptor is left behind once they stop.
func TestLoadScrapersOn10000Keys(t *testing.T) {
	const keys, scrapers, rounds = 10000, 200, 1
	sim := simulator.New(simulator.Options{})
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	imports := make([]store.KeyImport, keys)
	for i := range imports {
		secret := fmt.Sprintf("sk-load-%05d-secret", i)
		sim.AddKey(simulator.Key{Secret: secret, StartSpendUSD: float64(i%900) / 100})
		imports[i] = store.KeyImport{ID: fmt.Sprintf("load-%05d", i), Provider: "litellm", Secret: secret}
	}
	cfg := testConfig(t)
	cfg.LiteLLMURL = url
	cfg.UpstreamH2C = true
	cfg.CheckInterval = time.Hour
	cfg.IdleCheckInterval = time.Hour
	cfg.CheckTimeout = time.Minute
	app := startApp(t, cfg, func(a *app) {
		if _, _, err := a.store.ImportKeys(context.Background(), imports); err != nil {
			t.Fatal(err)
		}
	})
	app.waitMetrics(t, 5*time.Minute, fmt.Sprintf("keyspend_last_cycle_keys %d\n", keys))

	fds, goroutines := openFDs(t), settledGoroutines()
	durations := scrapeConcurrently(t, app.base+"/metrics", scrapers, rounds, keys)
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	fdsAfter, goroutinesAfter := openFDs(t), settledGoroutines()

	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	t.Logf("%d scrapes of %d keys by %d concurrent scrapers: median %v, p90 %v, max %v",
		len(durations), keys, scrapers, durations[len(durations)/2],
		durations[len(durations)*9/10], durations[len(durations)-1])
	t.Logf("fds %d -> %d, goroutines %d -> %d", fds, fdsAfter, goroutines, goroutinesAfter)
	if fdsAfter > fds+2 || goroutinesAfter > goroutines+4 {
		t.Errorf("resources grew: fds %d -> %d, goroutines %d -> %d", fds, fdsAfter, goroutines, goroutinesAfter)
	}
}

// scrapeConcurrently runs scrapers goroutines that each scrape rounds times,
// checking every answer, and returns how long each scrape took.
func scrapeConcurrently(t *testing.T, url string, scrapers, rounds, keys int) []time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Minute,
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: scrapers}}
	defer client.CloseIdleConnections()
	want := fmt.Sprintf(`keyspend_key_spend_usd{key="load-%05d",provider="litellm"}`, keys-1)

	var mu sync.Mutex
	var durations []time.Duration
	var wg sync.WaitGroup
	for s := 0; s < scrapers; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				start := time.Now()
				err := scrapeOnce(client, url, want)
				took := time.Since(start)
				if err != nil {
					t.Errorf("scrape: %v", err)
					return
				}
				mu.Lock()
				durations = append(durations, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return durations
}

func scrapeOnce(client *http.Client, url, want string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	if !strings.Contains(string(body), want) {
		return fmt.Errorf("answer of %d bytes lacks the last key", len(body))
	}
	return nil
}
