package rotator_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// storedKeys returns the keys of a world as a check cycle loads them.
func storedKeys(t *testing.T, w *world) []store.Key {
	t.Helper()
	keys, _, err := w.st.LoadKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func breaches(keys []store.Key) []rotator.Observation {
	obs := make([]rotator.Observation, len(keys))
	for i, k := range keys {
		obs[i] = breach(k)
	}
	return obs
}

func sum(m map[rotator.RotationLabel]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func TestHundredKeysBreachAtOnce(t *testing.T) {
	w := newWorld(t, 100, 100)
	r := w.rotator(w.st, rotator.Options{Owner: "a"})

	results := observeAll([]*rotator.Rotator{r}, breaches(storedKeys(t, w)))

	for i, res := range results {
		if !res.Rotated || res.Generation != 1 || res.Exhausted {
			t.Errorf("observation %d: %+v, want rotated to generation 1", i, res)
		}
	}
	s := checkConsistent(t, w, true)
	former := map[string]bool{}
	for _, secret := range w.backups {
		former[secret] = true
	}
	for id, k := range s.keys {
		if k.Generation != 1 || !former[k.Secret] || k.Status != store.StatusActive {
			t.Errorf("key %s: generation %d, status %s, backup secret %v",
				id, k.Generation, k.Status, former[k.Secret])
		}
	}
	for id, b := range s.backups {
		if b.Status != store.BackupUsed {
			t.Errorf("backup %s is %s, want used", id, b.Status)
		}
	}
	if n := len(w.logs.lines("level=INFO", `msg="rotated key"`, "generation=1")); n != 100 {
		t.Errorf("%d rotation lines for 100 rotations", n)
	}
	c := r.Counts()
	if len(c.Rotations) != 100 || sum(c.Rotations) != 100 || len(c.Failures) != 0 {
		t.Errorf("counts: %d series, %d rotations, failures %v; want 100, 100, none",
			len(c.Rotations), sum(c.Rotations), c.Failures)
	}
	for label, n := range c.Rotations {
		if n != 1 || label.Provider != provider || label.Reason != rotator.ReasonThreshold {
			t.Errorf("rotation series %+v = %d, want 1", label, n)
		}
	}
}

func TestTwoReplicasShareTooSmallAPool(t *testing.T) {
	w := newWorld(t, 50, 30)
	a := w.rotator(w.st, rotator.Options{Owner: "a", PoolRetry: time.Hour})
	b := w.rotator(w.replica(t), rotator.Options{Owner: "b", PoolRetry: time.Hour})

	// Every key is observed twice, once by each replica: observeAll hands
	// even positions to a and odd ones to b.
	var obs []rotator.Observation
	for _, o := range breaches(storedKeys(t, w)) {
		obs = append(obs, o, o)
	}
	results := observeAll([]*rotator.Rotator{a, b}, obs)

	rotated := map[string]int{}
	for i, res := range results {
		if res.Rotated {
			rotated[obs[i].Key.ID]++
		}
	}
	s := checkConsistent(t, w, true)
	var gen1, exhausted int
	for id, k := range s.keys {
		switch {
		case k.Generation == 1 && k.Status == store.StatusActive && rotated[id] == 1:
			gen1++
		case k.Generation == 0 && k.Status == store.StatusExhausted && rotated[id] == 0:
			exhausted++
		default:
			t.Errorf("key %s: generation %d, status %s, rotated %d times by the replicas",
				id, k.Generation, k.Status, rotated[id])
		}
	}
	if gen1 != 30 || exhausted != 20 {
		t.Errorf("%d keys rotated and %d exhausted, want 30 and 20", gen1, exhausted)
	}
	checkSharedCounts(t, s, a.Counts(), b.Counts())
}

// checkSharedCounts: the replicas' counters add up to the 30 rotations,
// and every exhausted key is counted as pool_empty by a replica that saw
// it, never as a store error.
func checkSharedCounts(t *testing.T, s state, ca, cb rotator.Counts) {
	t.Helper()
	if n := sum(ca.Rotations) + sum(cb.Rotations); n != 30 {
		t.Errorf("replicas counted %d rotations, want 30", n)
	}
	for label := range ca.Rotations {
		if cb.Rotations[label] != 0 {
			t.Errorf("key %s counted as rotated by both replicas", label.Key)
		}
	}
	ea, eb := ca.Failures[rotator.FailurePoolEmpty], cb.Failures[rotator.FailurePoolEmpty]
	if ea+eb < 20 || ea > 20 || eb > 20 {
		t.Errorf("pool_empty failures a=%d b=%d, want each at most 20 and together at least 20",
			ea, eb)
	}
	if ca.Failures[rotator.FailureStoreError]+cb.Failures[rotator.FailureStoreError] != 0 {
		t.Errorf("store errors counted: a=%v b=%v", ca.Failures, cb.Failures)
	}
}

func TestStaleBreachChangesNothing(t *testing.T) {
	w := newWorld(t, 1, 3)
	a := w.rotator(w.st, rotator.Options{Owner: "a"})
	b := w.rotator(w.replica(t), rotator.Options{Owner: "b"})
	stale := w.key(t, "key-000")
	if res := a.Observe(context.Background(), breach(stale)); !res.Rotated {
		t.Fatalf("first breach: %+v, want rotated", res)
	}
	before := w.snapshot(t)

	// The next tick still carries the generation the check started with,
	// on this replica and on the other one.
	for _, r := range []*rotator.Rotator{a, b, a, b} {
		if res := r.Observe(context.Background(), breach(stale)); res != (rotator.Result{}) {
			t.Errorf("stale breach: %+v, want nothing done", res)
		}
	}

	if after := w.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Errorf("a stale breach changed the store:\nbefore %v\nafter  %v", before, after)
	}
	if n := sum(a.Counts().Rotations) + sum(b.Counts().Rotations); n != 1 {
		t.Errorf("%d rotations counted, want 1", n)
	}
	s := checkConsistent(t, w, true)
	if k := s.keys["key-000"]; k.Generation != 1 {
		t.Errorf("key at generation %d, want 1", k.Generation)
	}
}

func TestDryRunChangesNoDocument(t *testing.T) {
	w := newWorld(t, 3, 3)
	r := w.rotator(w.st, rotator.Options{Owner: "a", DryRun: true})
	keys := storedKeys(t, w)
	before := w.snapshot(t)

	for tick := 0; tick < 3; tick++ {
		for _, res := range observeAll([]*rotator.Rotator{r}, breaches(keys)) {
			if res != (rotator.Result{}) {
				t.Errorf("dry run: %+v, want nothing done", res)
			}
		}
	}
	rep, err := r.Recover(context.Background())
	if err != nil || rep != (rotator.RecoveryReport{}) {
		t.Errorf("dry-run recovery: %+v, %v", rep, err)
	}

	if after := w.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Errorf("dry run changed the store:\nbefore %v\nafter  %v", before, after)
	}
	c := r.Counts()
	for _, k := range keys {
		if n := c.Rotations[rotator.RotationLabel{Key: k.ID, Provider: provider,
			Reason: rotator.ReasonThreshold}]; n != 1 {
			t.Errorf("key %s: %d would-be rotations counted over 3 ticks, want 1", k.ID, n)
		}
	}
	if n := len(w.logs.lines("dry run", "would rotate")); n != 3 {
		t.Errorf("%d dry-run lines for 3 keys, want 3:\n%s", n, w.logs)
	}
	checkConsistent(t, w, true)
}

func TestEmptyPoolMarksKeyExhaustedOnce(t *testing.T) {
	w := newWorld(t, 3, 0)
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	r := w.rotator(w.st, rotator.Options{Owner: "a", PoolRetry: time.Minute, Now: clk.Now})
	keys := storedKeys(t, w)

	once := map[string]int{"key-000": 1, "key-001": 1, "key-002": 1}
	for _, res := range observeAll([]*rotator.Rotator{r}, breaches(keys)) {
		if !res.Exhausted || res.Rotated {
			t.Errorf("breach with an empty pool: %+v, want exhausted", res)
		}
	}
	for id, k := range w.loadKeys(t) {
		if k.Status != store.StatusExhausted || k.Generation != 0 {
			t.Errorf("key %s: status %s generation %d, want exhausted at 0",
				id, k.Status, k.Generation)
		}
	}
	checkEmptyPoolReported(t, w, r, once)

	// Later ticks, inside PoolRetry: nothing written, logged or counted.
	before := w.snapshot(t)
	for tick := 0; tick < 3; tick++ {
		clk.Add(10 * time.Second)
		observeAll([]*rotator.Rotator{r}, breaches(keys))
	}
	if after := w.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Errorf("repeated breaches of exhausted keys wrote to the store")
	}
	checkEmptyPoolReported(t, w, r, once)
	checkConsistent(t, w, true)

	refillRotates(t, w, r, clk, keys)
}

// refillRotates: backups imported, then once PoolRetry has passed the next
// breach rotates each key, and a later exhaustion is counted once more.
func refillRotates(t *testing.T, w *world, r *rotator.Rotator, clk *clock, keys []store.Key) {
	t.Helper()
	w.addBackups(t, "late", 3)
	clk.Add(time.Minute)
	for _, res := range observeAll([]*rotator.Rotator{r}, breaches(keys)) {
		if !res.Rotated || res.Generation != 1 {
			t.Errorf("breach after the pool was refilled: %+v, want rotated", res)
		}
	}
	s := checkConsistent(t, w, true)
	for id, k := range s.keys {
		if k.Status != store.StatusActive || k.Generation != 1 {
			t.Errorf("key %s: status %s generation %d, want active at 1",
				id, k.Status, k.Generation)
		}
	}

	// The new generation breaches with the pool empty again: a new failure.
	clk.Add(time.Minute)
	k := s.keys["key-001"]
	if res := r.Observe(context.Background(), breach(k)); !res.Exhausted {
		t.Errorf("generation 1 with an empty pool: %+v, want exhausted", res)
	}
	checkEmptyPoolReported(t, w, r, map[string]int{"key-000": 1, "key-001": 2, "key-002": 1})
	checkConsistent(t, w, true)
}

// checkEmptyPoolReported: each key is counted and warned about as often
// as want says, once per exhausted generation.
func checkEmptyPoolReported(t *testing.T, w *world, r *rotator.Rotator, want map[string]int) {
	t.Helper()
	total := 0
	for id, n := range want {
		total += n
		if got := len(w.logs.lines("level=WARN", "pool empty", "key="+id+" ")); got != n {
			t.Errorf("key %s: %d pool-empty warnings, want %d", id, got, n)
		}
	}
	if n := r.Counts().Failures[rotator.FailurePoolEmpty]; n != uint64(total) {
		t.Errorf("pool_empty failures = %d, want %d", n, total)
	}
	if lines := w.logs.lines("level=WARN"); len(lines) != total {
		t.Errorf("%d warnings, want %d:\n%s", len(lines), total, strings.Join(lines, "\n"))
	}
}

func TestConfirmationsNeedConsecutiveBreaches(t *testing.T) {
	w := newWorld(t, 2, 2)
	r := w.rotator(w.st, rotator.Options{Owner: "a", Confirmations: 3})
	ctx := context.Background()

	k := w.key(t, "key-000")
	clean := rotator.Observation{Key: k, SpendUSD: 1, ThresholdUSD: 9.95}
	for i, o := range []rotator.Observation{breach(k), breach(k), clean, breach(k), breach(k)} {
		if res := r.Observe(ctx, o); res != (rotator.Result{}) {
			t.Fatalf("observation %d: %+v, want no rotation before three breaches in a row", i, res)
		}
	}
	if got := w.key(t, "key-000"); got.Generation != 0 || got.Secret != w.keys["key-000"] {
		t.Fatalf("key changed before three breaches in a row: generation %d", got.Generation)
	}
	if res := r.Observe(ctx, breach(k)); !res.Rotated || res.Generation != 1 {
		t.Fatalf("third breach in a row: %+v, want rotated", res)
	}

	other := w.key(t, "key-001")
	for i := 0; i < 2; i++ {
		if res := r.Observe(ctx, breach(other)); res.Rotated {
			t.Fatalf("breach %d of 3 rotated the key", i+1)
		}
	}
	if res := r.Observe(ctx, breach(other)); !res.Rotated {
		t.Fatalf("three breaches in a row: %+v, want rotated", res)
	}
	s := checkConsistent(t, w, true)
	if s.keys["key-000"].Generation != 1 || s.keys["key-001"].Generation != 1 {
		t.Errorf("generations %d, %d, want 1, 1",
			s.keys["key-000"].Generation, s.keys["key-001"].Generation)
	}
}

func TestRotationLogLine(t *testing.T) {
	w := newWorld(t, 20, 20)
	r := w.rotator(w.st, rotator.Options{Owner: "a"})
	keys := storedKeys(t, w)
	obs := breaches(keys)
	obs[0].Reason, obs[0].SpendUSD, obs[0].ThresholdUSD = rotator.ReasonBudgetExceeded, 10.004, 9.5

	observeAll([]*rotator.Rotator{r}, obs)

	checkConsistent(t, w, true)
	if n := len(w.logs.lines(`msg="rotated key"`)); n != len(keys) {
		t.Errorf("%d rotation lines for %d rotations, want one each:\n%s", n, len(keys), w.logs)
	}
	for _, k := range keys[1:] {
		want := []string{"level=INFO", `msg="rotated key"`, "key=" + k.ID + " ",
			"reason=threshold", "spend_usd=9.96", "threshold_usd=9.95", "generation=1"}
		if n := len(w.logs.lines(want...)); n != 1 {
			t.Errorf("key %s: %d lines with %v, want 1", k.ID, n, want)
		}
	}
	want := []string{`msg="rotated key"`, "key=key-000 ", "reason=budget_exceeded",
		"spend_usd=10", "threshold_usd=9.5", "generation=1"}
	if n := len(w.logs.lines(want...)); n != 1 {
		t.Errorf("%d lines with %v, want 1:\n%s", n, want, w.logs)
	}
}

// On FerretDB an update rewrites the whole document, so the proxy writing
// last_used_at while a key is swapped can put the old secret back. The next
// breach of that key, which its old secret will soon report, swaps again.
func TestSwapUndoneByAConcurrentWriteIsRedone(t *testing.T) {
	w := newWorld(t, 20, 20)
	r := w.rotator(w.st, rotator.Options{Owner: "a"})
	keys := storedKeys(t, w)
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}

	stop := make(chan struct{})
	proxyDone := make(chan struct{})
	go func() {
		defer close(proxyDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := w.st.MarkUsed(context.Background(), ids, time.Now()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	observeAll([]*rotator.Rotator{r}, breaches(keys))
	close(stop)
	<-proxyDone

	redone := 0
	for _, k := range w.loadKeys(t) {
		if k.Generation == 0 {
			redone++
			res := r.Observe(context.Background(), breach(k))
			if !res.Rotated || res.Generation != 1 {
				t.Errorf("key %s: breach of the undone swap: %+v, want rotated", k.ID, res)
			}
		}
	}
	t.Logf("%d of %d swaps undone by the concurrent writer", redone, len(keys))
	s := checkConsistent(t, w, true)
	for id, k := range s.keys {
		if k.Generation != 1 {
			t.Errorf("key %s at generation %d, want 1", id, k.Generation)
		}
	}
	if n := sum(r.Counts().Rotations); n != 20 {
		t.Errorf("%d rotations counted, want 20", n)
	}
}
