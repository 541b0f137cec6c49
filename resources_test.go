package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count file descriptors: %v", err)
	}
	return len(entries)
}

// settledGoroutines counts goroutines after giving exiting ones a moment to
// finish, so a count taken right after a cycle is not inflated by goroutines
// already on their way out.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m >= n {
			return m
		} else {
			n = m
		}
	}
	return n
}

// TestFailingUpstreamHoldsNoResources runs 1,000 cycles against an upstream
// that answers every check with a 500 page: descriptors and goroutines stay
// where they were after the first cycles, and the last good spend stays.
func TestFailingUpstreamHoldsNoResources(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	var keys []store.KeyImport
	for i := 0; i < 10; i++ {
		secret := fmt.Sprintf("sk-failing-upstream-%03d", i)
		sim.AddKey(simulator.Key{Secret: secret, StartSpendUSD: 1.5})
		keys = append(keys, store.KeyImport{ID: fmt.Sprintf("k%02d", i), Provider: "litellm", Secret: secret})
	}
	cfg := testConfig(t)
	cfg.LiteLLMURL = url
	// Cycles are driven by the test, back to back; with a nanosecond
	// interval every key is due on every one of them.
	cfg.CheckInterval = time.Nanosecond
	cfg.IdleCheckInterval = time.Nanosecond
	a, err := newApp(cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	ctx := context.Background()
	if _, _, err := a.store.ImportKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}

	runCycles := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := a.checker.RunCycle(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	runCycles(1)
	sim.SetFault("", simulator.FaultServerError)
	runCycles(10)
	fds, goroutines := openFDs(t), settledGoroutines()

	runCycles(1000)
	fdsAfter, goroutinesAfter := openFDs(t), settledGoroutines()
	t.Logf("after 10 failing cycles: %d fds, %d goroutines; after 1,010: %d fds, %d goroutines",
		fds, goroutines, fdsAfter, goroutinesAfter)
	if fdsAfter > fds+2 || goroutinesAfter > goroutines+4 {
		t.Errorf("resources grew over 1,000 failing cycles: fds %d -> %d, goroutines %d -> %d",
			fds, fdsAfter, goroutines, goroutinesAfter)
	}

	snap := a.checker.Snapshot()
	for _, k := range snap.Keys {
		if k.Up || !k.HasSpend || k.SpendUSD < 1.5 || k.LastOutcome != "upstream_error" {
			t.Errorf("key %s after failures: up=%v spend=%v (%v) outcome=%s, want down with its last good spend",
				k.ID, k.Up, k.SpendUSD, k.HasSpend, k.LastOutcome)
		}
	}
	if got := snap.Checks["litellm"]["upstream_error"]; got != 10*1010 {
		t.Errorf("upstream_error checks = %d, want %d", got, 10*1010)
	}
	if sim.Requests() != 10*1011 {
		t.Errorf("upstream saw %d requests, want %d", sim.Requests(), 10*1011)
	}
}
