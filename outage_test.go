package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// TestStoreOutage starts the exporter before its MongoDB, loses the store
// mid-run and gets it back: /metrics answers throughout, checks go on with
// the cached keys, history waits in memory and is written on return, and a
// key that breached during the outage is rotated once the store is back.
func TestStoreOutage(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	upstream, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.AddKey(simulator.Key{Secret: "sk-outage-steady-0001", StartSpendUSD: 2})
	sim.AddKey(simulator.Key{Secret: "sk-outage-breach-0002", StartSpendUSD: 5})
	sim.AddKey(simulator.Key{Secret: "sk-outage-backup-0003"})

	dataDir, addr := t.TempDir(), freeAddr(t)
	cfg := testConfig(t)
	cfg.MongoDBURI = "mongodb://" + addr + "/"
	cfg.LiteLLMURL = upstream
	app := startApp(t, cfg, nil)

	// 1. No store yet: the exporter serves, says the store is down, and is
	// not ready.
	app.waitMetrics(t, 30*time.Second, "keyspend_store_up 0")
	if code, _ := app.get(t, "/-/ready"); code != 503 {
		t.Errorf("/-/ready = %d with no store, want 503", code)
	}

	// 2. The store comes up with keys in it: ready, keys checked.
	emb := startStoreOn(t, dataDir, addr)
	seed(t, emb, storeNames(cfg))
	app.waitMetrics(t, 60*time.Second, "keyspend_store_up 1",
		`keyspend_key_spend_usd{key="steady",provider="litellm"} 2`)
	app.waitReady(t, 60*time.Second)

	// 3. The store goes away: checks go on with the cached keys, history
	// piles up in memory, and the breach that comes now waits.
	emb.Close()
	requests := sim.RequestsFor("sk-outage-steady-0001")
	app.waitMetrics(t, 60*time.Second, "keyspend_store_up 0")
	sim.SetSpend("sk-outage-breach-0002", 9.99)
	app.waitMetrics(t, 60*time.Second, `keyspend_key_spend_usd{key="breach",provider="litellm"} 9.99`)
	if sim.RequestsFor("sk-outage-steady-0001") <= requests {
		t.Error("no checks while the store was down")
	}
	if app.checker.Snapshot().Fleet.PendingHistory == 0 {
		t.Error("no history pending while the store was down")
	}

	// 4. The store returns on the same address: the pending history is
	// written, and the key that breached is rotated.
	emb = startStoreOn(t, dataDir, addr)
	app.waitMetrics(t, 90*time.Second, "keyspend_store_up 1", "keyspend_history_pending_points 0",
		`keyspend_key_generation{key="breach",provider="litellm"} 1`)
	st := openTestStore(t, emb, storeNames(cfg))
	points, err := st.CountHistory(context.Background(), "steady")
	if err != nil {
		t.Fatal(err)
	}
	checks := sim.RequestsFor("sk-outage-steady-0001")
	if points < checks-1 {
		t.Errorf("%d history points for %d checks of the steady key: history was lost", points, checks)
	}
	k, err := st.Key(context.Background(), "breach")
	if err != nil || k.Secret != "sk-outage-backup-0003" {
		t.Errorf("breached key after the outage: secret changed=%v err=%v", err == nil && k.Secret != "sk-outage-breach-0002", err)
	}
	if strings.Count(app.logs.String(), "rotated key") != 1 {
		t.Errorf("want exactly one rotation logged:\n%s", app.logs.String())
	}
}

func startStoreOn(t *testing.T, dir, addr string) *store.Embedded {
	t.Helper()
	var emb *store.Embedded
	var err error
	// The port was just released by the previous server; give the kernel a
	// moment if it is not free yet.
	for i := 0; i < 50; i++ {
		if emb, err = store.StartEmbeddedOn(dir, addr, discardLogger()); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	return emb
}

func openTestStore(t *testing.T, emb *store.Embedded, names store.Names) *store.Store {
	t.Helper()
	st, err := store.Open(emb.URI(), names, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}

// seed writes the outage test's keys and backup into a fresh store.
func seed(t *testing.T, emb *store.Embedded, names store.Names) {
	t.Helper()
	st := openTestStore(t, emb, names)
	ctx := context.Background()
	_, _, err := st.ImportKeys(ctx, []store.KeyImport{
		{ID: "steady", Provider: "litellm", Secret: "sk-outage-steady-0001"},
		{ID: "breach", Provider: "litellm", Secret: "sk-outage-breach-0002"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportBackups(ctx, []store.Backup{
		{ID: "spare", Provider: "litellm", Secret: "sk-outage-backup-0003"},
	}); err != nil {
		t.Fatal(err)
	}
}

// waitReady polls /-/ready until it answers 200. A single look could land
// on a cycle whose store read timed out on a loaded machine.
func (r *runningApp) waitReady(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if code, _ := r.get(t, "/-/ready"); code == 200 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/-/ready never answered 200 with the store back; log:\n%s", r.logs.String())
}
