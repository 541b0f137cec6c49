package collector_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyspend/keyspend_exporter/collector"
	"github.com/keyspend/keyspend_exporter/internal/provider"
	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

// cycleResult is what a RunCycle started in the background returned.
type cycleResult struct {
	report collector.CycleReport
	err    error
}

// runInBackground starts a cycle and returns where its result will land.
func runInBackground(ctx context.Context, c *collector.Checker) <-chan cycleResult {
	done := make(chan cycleResult, 1)
	go func() {
		rep, err := c.RunCycle(ctx)
		done <- cycleResult{rep, err}
	}()
	return done
}

// heldKeys stores n keys whose checks the returned handler holds, serving
// it for every request of sim. It returns the secrets in key order.
func heldKeys(t *testing.T, st *store.Store, sim *simulator.Simulator, n int) (*held, []string) {
	t.Helper()
	spends := map[string]float64{}
	secrets := make([]string, n)
	keys := make([]store.KeyImport, n)
	for i := range n {
		secrets[i] = fmt.Sprintf("sk-held-%03d-9d41c7e2b8", i)
		spends[secrets[i]] = float64(i) / 100
		keys[i] = litellmKey(fmt.Sprintf("key-%03d", i), secrets[i])
	}
	importKeys(t, st, keys...)

	h := newHeld(spends)
	sim.SetHandler("", h.ServeHTTP)
	t.Cleanup(h.releaseAll)
	return h, secrets
}

func TestCycleChecksEveryKeyAtOnce(t *testing.T) {
	const n = 200
	st := storetest.New(t)
	sim, base := startSim(t)
	h, _ := heldKeys(t, st, sim, n)
	c := collector.NewChecker(checkerOptions(st, base, newClock(), &logBuffer{}))

	done := runInBackground(context.Background(), c)
	waitUntil(t, "all 200 checks are held at the upstream", func() bool { return sim.InFlight() == n })
	h.releaseAll()
	res := <-done

	if res.err != nil || res.report.Checked != n || res.report.Keys != n {
		t.Fatalf("RunCycle = %+v, %v; want %d keys loaded and checked", res.report, res.err, n)
	}
	if got := sim.MaxInFlight(); got != n {
		t.Errorf("upstream saw at most %d checks in flight, want all %d at once", got, n)
	}
	if got := h.protocols(); got["HTTP/2.0"] != n {
		t.Errorf("requests by protocol = %v, want all %d over h2c", got, n)
	}
	snap := c.Snapshot()
	if len(snap.Keys) != n {
		t.Fatalf("snapshot holds %d keys, want %d", len(snap.Keys), n)
	}
	for i, k := range snap.Keys {
		want := float64(i) / 100
		if k.ID != fmt.Sprintf("key-%03d", i) || !k.Up || !k.HasSpend || k.SpendUSD != want {
			t.Errorf("key %s: up=%v spend=%v (has %v), want up with spend %v",
				k.ID, k.Up, k.SpendUSD, k.HasSpend, want)
		}
	}
}

func TestCycleNeverOverlaps(t *testing.T) {
	const n = 5
	st := storetest.New(t)
	sim, base := startSim(t)
	h, secrets := heldKeys(t, st, sim, n)
	c := collector.NewChecker(checkerOptions(st, base, newClock(), &logBuffer{}))

	done := runInBackground(context.Background(), c)
	waitUntil(t, "the first cycle's checks are held", func() bool { return sim.InFlight() == n })
	_, err := c.RunCycle(context.Background())
	h.releaseAll()
	first := <-done

	if !errors.Is(err, collector.ErrCycleRunning) {
		t.Errorf("second RunCycle while the first runs: err = %v, want ErrCycleRunning", err)
	}
	if first.err != nil || first.report.Checked != n {
		t.Errorf("first RunCycle = %+v, %v; want %d keys checked", first.report, first.err, n)
	}
	for _, s := range secrets {
		if got := sim.RequestsFor(s); got != 1 {
			t.Errorf("upstream asked %d times about one key, want once", got)
		}
	}
}

func TestMaxConcurrencyCapsChecksInFlight(t *testing.T) {
	const n, limit = 10, 3
	st := storetest.New(t)
	sim, base := startSim(t)
	h, secrets := heldKeys(t, st, sim, n)
	opts := checkerOptions(st, base, newClock(), &logBuffer{})
	opts.MaxConcurrency = limit
	c := collector.NewChecker(opts)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := runInBackground(ctx, c)
	// Each check is let through only once the cap is full again: without
	// the cap all ten would be held at once and the count never drop to 3.
	for i := range n {
		want := int64(min(limit, n-i))
		waitUntil(t, fmt.Sprintf("%d checks are held", want), func() bool {
			return sim.InFlight() == want
		})
		h.gate <- struct{}{}
	}
	res := <-done

	if res.err != nil || res.report.Checked != n {
		t.Fatalf("RunCycle = %+v, %v; want %d keys checked", res.report, res.err, n)
	}
	if got := sim.MaxInFlight(); got != limit {
		t.Errorf("upstream saw at most %d checks in flight, want exactly %d", got, limit)
	}
	for _, s := range secrets {
		if got := sim.RequestsFor(s); got != 1 {
			t.Errorf("upstream asked %d times about one key, want once", got)
		}
	}
	for _, k := range c.Snapshot().Keys {
		if !k.Up {
			t.Errorf("key %s is down after a capped cycle, want up", k.ID)
		}
	}
}

// failure is one outcome class and how the upstream is made to produce it.
type failure struct {
	outcome provider.Outcome
	fault   simulator.Fault // FaultNone: the key's upstream address stops listening
}

var failures = []failure{
	{provider.OutcomeBudgetExceeded, simulator.FaultBudgetError},
	{provider.OutcomeInvalidKey, simulator.FaultInvalidKey},
	{provider.OutcomeRateLimited, simulator.FaultRateLimited},
	{provider.OutcomeUpstreamError, simulator.FaultServerError},
	{provider.OutcomeBadResponse, simulator.FaultTruncated},
	{provider.OutcomeTimeout, simulator.FaultHang},
	{provider.OutcomeNetwork, simulator.FaultNone},
}

// secretOf is the secret of the key that fails with outcome. It shares no
// 8-character piece with the key's id or any log text.
func secretOf(outcome provider.Outcome) string {
	for i, f := range failures {
		if f.outcome == outcome {
			return fmt.Sprintf("sk-f%d-4c9e1f7a2d83b5", i)
		}
	}
	panic("no failure for outcome " + outcome)
}

// failingKeys stores one key per failure class and the key-ok key, all
// spending 3.21. The network key reaches the simulator through a server of
// its own; closing the returned server leaves its address unanswered.
func failingKeys(t *testing.T, st *store.Store,
	sim *simulator.Simulator) (*httptest.Server, []string) {
	t.Helper()
	front := h2cServer(t, sim.Handler())

	secrets := []string{"sk-ok-0b3e58d1a6"}
	keys := []store.KeyImport{litellmKey("key-ok", secrets[0])}
	for _, f := range failures {
		secrets = append(secrets, secretOf(f.outcome))
		k := litellmKey("key-"+string(f.outcome), secretOf(f.outcome))
		if f.outcome == provider.OutcomeNetwork {
			k.BaseURL = front.URL
		}
		keys = append(keys, k)
	}
	importKeys(t, st, keys...)
	for _, s := range secrets {
		sim.AddKey(simulator.Key{Secret: s, StartSpendUSD: 3.21})
	}
	return front, secrets
}

func TestEveryOutcomeKeepsLastGoodSpend(t *testing.T) {
	st := storetest.New(t)
	sim, base := startSim(t)
	clk, logs := newClock(), &logBuffer{}
	opts := checkerOptions(st, base, clk, logs)
	opts.Timeout = 2 * time.Second // the hanging key's check gives up after this
	c := collector.NewChecker(opts)
	reg := registry(c)
	front, secrets := failingKeys(t, st, sim)

	runCycle(t, c)
	for _, f := range failures {
		id := "key-" + string(f.outcome)
		wantValue(t, scrape(t, reg), keySeries("keyspend_key_up", id, "litellm"), 1)
	}
	for _, f := range failures {
		sim.SetFault(secretOf(f.outcome), f.fault)
	}
	front.Close()
	clk.Advance(time.Hour)
	runCycle(t, c)

	got := scrape(t, reg)
	wantValue(t, got, series("keyspend_checks_total", "provider", "litellm", "outcome", "ok"),
		float64(len(secrets)+1))
	for _, f := range failures {
		id := "key-" + string(f.outcome)
		wantValue(t, got, series("keyspend_checks_total", "provider", "litellm",
			"outcome", string(f.outcome)), 1)
		wantValue(t, got, keySeries("keyspend_key_spend_usd", id, "litellm"), 3.21)
		wantValue(t, got, keySeries("keyspend_key_up", id, "litellm"), 0)
		wantValue(t, got, keySeries("keyspend_key_last_success_timestamp_seconds", id, "litellm"),
			float64(start.Unix()))
		warns := logs.find(t, "WARN", map[string]string{"key": id, "outcome": string(f.outcome)})
		if len(warns) != 1 {
			t.Errorf("%d warn lines naming %s with outcome %s, want 1", len(warns), id, f.outcome)
		}
	}
	wantValue(t, got, keySeries("keyspend_key_up", "key-ok", "litellm"), 1)
	for _, s := range secrets {
		if leaks(logs.String(), s) {
			t.Errorf("a log line holds a piece of a secret:\n%s", logs.String())
		}
	}
}

func TestSpendLogLine(t *testing.T) {
	st := storetest.New(t)
	sim, base := startSim(t)
	logs := &logBuffer{}
	c := collector.NewChecker(checkerOptions(st, base, newClock(), logs))

	seven := 7.0
	over := litellmKey("key-override", "sk-override-61d2a9c4e7")
	over.ThresholdUSD = &seven
	importKeys(t, st, litellmKey("key-a", "sk-line-a-0e7b5c93f1"), over)
	sim.AddKey(simulator.Key{Secret: "sk-line-a-0e7b5c93f1", StartSpendUSD: 3.21})
	sim.AddKey(simulator.Key{Secret: "sk-override-61d2a9c4e7", StartSpendUSD: 0.5})
	runCycle(t, c)

	for _, want := range []string{
		"💵 [SpendChecker] key-a: $3.21 / $9.95 (32.3%)",
		"💵 [SpendChecker] key-override: $0.50 / $7.00 (7.1%)",
	} {
		if got := logs.find(t, "INFO", map[string]string{"msg": want}); len(got) != 1 {
			t.Errorf("%d info lines %q, want 1; log:\n%s", len(got), want, logs.String())
		}
	}
}

// rawKeys opens the keys collection of a test database directly, to write
// and delete documents the way an operator's own tools would.
func rawKeys(t *testing.T, names store.Names) *mongo.Collection {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(storetest.Server(t).URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c.Database(names.Database).Collection(names.Keys)
}

func TestRemovedKeyLeavesMetricsWithinOneCycle(t *testing.T) {
	names := storetest.Names(t)
	st := storetest.Open(t, storetest.Server(t).URI(), names)
	sim, base := startSim(t)
	clk := newClock()
	c := collector.NewChecker(checkerOptions(st, base, clk, &logBuffer{}))
	reg := registry(c)

	importKeys(t, st, litellmKey("key-kept", "sk-kept-3f8a0c6d21"),
		litellmKey("key-gone", "sk-gone-7b2e9d4f05"))
	sim.AddKey(simulator.Key{Secret: "sk-kept-3f8a0c6d21", StartSpendUSD: 1})
	sim.AddKey(simulator.Key{Secret: "sk-gone-7b2e9d4f05", StartSpendUSD: 2})
	runCycle(t, c)
	wantValue(t, scrape(t, reg), keySeries("keyspend_key_spend_usd", "key-gone", "litellm"), 2)

	ctx := context.Background()
	gone := bson.D{{Key: "_id", Value: "key-gone"}}
	if _, err := rawKeys(t, names).DeleteOne(ctx, gone); err != nil {
		t.Fatalf("delete key: %v", err)
	}
	clk.Advance(time.Hour)
	runCycle(t, c)

	for name := range scrape(t, reg) {
		if strings.Contains(name, `key="key-gone"`) {
			t.Errorf("%s still exported a cycle after the key was deleted", name)
		}
	}
	wantValue(t, scrape(t, reg), keySeries("keyspend_key_spend_usd", "key-kept", "litellm"), 1)
	wantValue(t, scrape(t, reg), series("keyspend_keys", "status", "active"), 1)
	if got := sim.RequestsFor("sk-gone-7b2e9d4f05"); got != 1 {
		t.Errorf("deleted key checked %d times, want only before its deletion", got)
	}
}

func TestBrokenKeyDocumentsAreSkipped(t *testing.T) {
	names := storetest.Names(t)
	st := storetest.Open(t, storetest.Server(t).URI(), names)
	sim, base := startSim(t)
	logs := &logBuffer{}
	c := collector.NewChecker(checkerOptions(st, base, newClock(), logs))
	reg := registry(c)

	importKeys(t, st, litellmKey("key-good", "sk-good-5a1c7e9b3d"))
	sim.AddKey(simulator.Key{Secret: "sk-good-5a1c7e9b3d", StartSpendUSD: 4.5})
	raw := rawKeys(t, names)
	ctx := context.Background()
	broken := []any{
		bson.D{{Key: "_id", Value: "key-int-provider"}, {Key: "provider", Value: 42},
			{Key: "secret", Value: "sk-broken-1-d0e4b8"}},
		bson.D{{Key: "_id", Value: "key-text-budget"}, {Key: "provider", Value: "litellm"},
			{Key: "secret", Value: "sk-broken-2-a7f3c1"}, {Key: "budget_usd", Value: "ten"}},
		bson.D{{Key: "_id", Value: int32(7)}, {Key: "provider", Value: "litellm"},
			{Key: "secret", Value: "sk-broken-3-e9b2d6"}},
		bson.D{{Key: "_id", Value: "key-unknown-provider"}, {Key: "provider", Value: "azure"},
			{Key: "secret", Value: "sk-broken-4-c5a8f0"}},
	}
	if _, err := raw.InsertMany(ctx, broken); err != nil {
		t.Fatalf("insert broken documents: %v", err)
	}
	duplicate := bson.D{{Key: "_id", Value: "key-good"}, {Key: "provider", Value: "litellm"},
		{Key: "secret", Value: "sk-dupe-8c3f1a7e2b"}}
	if _, err := raw.InsertOne(ctx, duplicate); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("insert of a second key-good: err = %v, want a duplicate key error", err)
	}
	rep := runCycle(t, c)

	if n := sim.RequestsFor("sk-dupe-8c3f1a7e2b"); n != 0 {
		t.Errorf("the refused duplicate's secret was checked %d times, want never", n)
	}
	if rep.Keys != 1 || rep.Checked != 1 {
		t.Errorf("cycle loaded %d keys and checked %d, want only key-good", rep.Keys, rep.Checked)
	}
	got := scrape(t, reg)
	wantValue(t, got, keySeries("keyspend_key_spend_usd", "key-good", "litellm"), 4.5)
	wantValue(t, got, keySeries("keyspend_key_up", "key-good", "litellm"), 1)
	for name := range got {
		if strings.Contains(name, `key="`) && !strings.Contains(name, `key="key-good"`) {
			t.Errorf("%s exported for a broken key document", name)
		}
	}
	named := []string{"key-int-provider", "key-text-budget", "string _id", "key-unknown-provider"}
	for _, id := range named {
		if !strings.Contains(warnings(t, logs), id) {
			t.Errorf("no warning names %q; warnings:\n%s", id, warnings(t, logs))
		}
	}
	if leaks(logs.String(), "sk-broken-1-d0e4b8") || leaks(logs.String(), "sk-broken-4-c5a8f0") {
		t.Errorf("a warning holds a piece of a secret:\n%s", logs.String())
	}
}

// warnings is every warn line's text and attributes, one line each.
func warnings(t *testing.T, logs *logBuffer) string {
	t.Helper()
	var b strings.Builder
	for _, r := range logs.find(t, "WARN", nil) {
		fmt.Fprintln(&b, r)
	}
	return b.String()
}

func TestStoreDownKeepsCheckingCachedKeys(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	// On TCP, so the store can come back on the same address below.
	emb, err := store.StartEmbeddedOn(dir, "127.0.0.1:0", quiet)
	if err != nil {
		t.Fatalf("start embedded store: %v", err)
	}
	t.Cleanup(func() {
		if emb != nil {
			emb.Close()
		}
	})
	st, err := store.Open(emb.URI(), store.DefaultNames, quiet)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })

	sim, base := startSim(t)
	clk, logs := newClock(), &logBuffer{}
	opts := checkerOptions(st, base, clk, logs)
	opts.Timeout = time.Second // each store call against the stopped server waits this long
	c := collector.NewChecker(opts)
	reg := registry(c)
	secrets := []string{"sk-down-a-2c7e0f9b14", "sk-down-b-8d1a6e3c50"}
	importKeys(t, st, litellmKey("key-a", secrets[0]), litellmKey("key-b", secrets[1]))
	sim.AddKey(simulator.Key{Secret: secrets[0], StartSpendUSD: 1.25})
	sim.AddKey(simulator.Key{Secret: secrets[1], StartSpendUSD: 6.5})
	runCycle(t, c)
	wantValue(t, scrape(t, reg), series("keyspend_store_up"), 1)

	emb.Close()
	clk.Advance(time.Hour)
	rep := runCycle(t, c)

	if rep.Keys != 2 || rep.Checked != 2 {
		t.Errorf("cycle with the store down loaded %d keys and checked %d, want the 2 cached",
			rep.Keys, rep.Checked)
	}
	for _, s := range secrets {
		if got := sim.RequestsFor(s); got != 2 {
			t.Errorf("upstream asked %d times about a key, want twice: once per cycle", got)
		}
	}
	got := scrape(t, reg)
	wantValue(t, got, series("keyspend_store_up"), 0)
	wantValue(t, got, series("keyspend_history_pending_points"), 2)
	wantValue(t, got, keySeries("keyspend_key_spend_usd", "key-a", "litellm"), 1.25)
	wantValue(t, got, keySeries("keyspend_key_spend_usd", "key-b", "litellm"), 6.5)
	wantValue(t, got, keySeries("keyspend_key_up", "key-b", "litellm"), 1)
	if n := c.Snapshot().Fleet.PendingHistory; n != 2 {
		t.Errorf("pending history points = %d, want the 2 of the cycle the store missed", n)
	}
	if c.Ready() {
		t.Error("Ready with the store down, want not ready")
	}

	// The store comes back on the same port: the buffered points land.
	addr := strings.TrimSuffix(strings.TrimPrefix(emb.URI(), "mongodb://"), "/")
	if emb, err = store.StartEmbeddedOn(dir, addr, quiet); err != nil {
		t.Fatalf("restart embedded store on %s: %v", addr, err)
	}
	waitUntil(t, "the store answers again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return st.Ping(ctx) == nil
	})
	clk.Advance(time.Hour)
	runCycle(t, c)

	got = scrape(t, reg)
	wantValue(t, got, series("keyspend_store_up"), 1)
	wantValue(t, got, series("keyspend_history_pending_points"), 0)
	if n, err := st.CountHistory(context.Background(), ""); err != nil || n != 6 {
		t.Errorf("history holds %d points (err %v), want 6: 2 keys over 3 cycles", n, err)
	}
}
