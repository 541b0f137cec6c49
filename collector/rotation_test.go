package collector_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/collector"
	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

// A key that breaches is rotated in the same cycle, and /metrics shows its
// new generation with no spend until the new secret is checked: the spend
// read before belongs to the secret just retired. The next check reads the
// new secret's spend.
func TestRotatedKeyShowsNoSpendUntilChecked(t *testing.T) {
	st := storetest.New(t)
	sim, base := startSim(t)
	sim.AddKey(simulator.Key{Secret: "sk-rotates-old-7f3a9c", StartSpendUSD: 5})
	sim.AddKey(simulator.Key{Secret: "sk-rotates-new-2b8e4d", StartSpendUSD: 0.42})
	importKeys(t, st, litellmKey("hot", "sk-rotates-old-7f3a9c"))
	_, err := st.ImportBackups(context.Background(),
		[]store.Backup{{ID: "spare", Provider: "litellm", Secret: "sk-rotates-new-2b8e4d"}})
	if err != nil {
		t.Fatal(err)
	}

	clk, logs := newClock(), &logBuffer{}
	opts := checkerOptions(st, base, clk, logs)
	opts.Rotator = rotator.New(rotator.Options{Store: st, Grace: time.Minute, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c := collector.NewChecker(opts)
	reg := registry(c)

	// A first cycle under the threshold stores the spend, which the next
	// cycle reads back with the key.
	runCycle(t, c)
	sim.SetSpend("sk-rotates-old-7f3a9c", 9.99)
	clk.Advance(time.Hour)
	runCycle(t, c)
	got := scrape(t, reg)
	wantValue(t, got, keySeries("keyspend_key_generation", "hot", "litellm"), 1)
	if v, ok := got[keySeries("keyspend_key_spend_usd", "hot", "litellm")]; ok {
		t.Errorf("rotated key shows spend %v before its new secret is checked", v)
	}

	clk.Advance(time.Hour)
	runCycle(t, c)
	wantValue(t, scrape(t, reg), keySeries("keyspend_key_spend_usd", "hot", "litellm"), 0.42)
}
