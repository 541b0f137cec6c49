package store_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

// rawCollection opens the keys collection of a test database directly, to
// write documents the way an operator's own tools would.
func rawCollection(t *testing.T, names store.Names, coll string) *mongo.Collection {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(storetest.Server(t).URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c.Database(names.Database).Collection(coll)
}

// Decimal128 is covered in keys_internal_test.go: FerretDB v1 cannot store
// it, so it is decoded from BSON built in memory there.
func TestLoadKeysAcceptsEveryNumericType(t *testing.T) {
	ctx := context.Background()
	names := storetest.Names(t)
	s := storetest.Open(t, storetest.Server(t).URI(), names)
	raw := rawCollection(t, names, names.Keys)

	checked := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	docs := []any{
		bson.D{{Key: "_id", Value: "int32"}, {Key: "provider", Value: "litellm"}, {Key: "secret", Value: "s1"},
			{Key: "last_spend_usd", Value: int32(3)}, {Key: "budget_usd", Value: int32(10)}},
		bson.D{{Key: "_id", Value: "int64"}, {Key: "provider", Value: "litellm"}, {Key: "secret", Value: "s2"},
			{Key: "last_spend_usd", Value: int64(4)}, {Key: "generation", Value: int64(2)}},
		bson.D{{Key: "_id", Value: "double"}, {Key: "provider", Value: "litellm"}, {Key: "secret", Value: "s3"},
			{Key: "last_spend_usd", Value: 5.5}, {Key: "threshold_usd", Value: 4.5},
			{Key: "last_checked_at", Value: checked}},
	}
	if _, err := raw.InsertMany(ctx, docs); err != nil {
		t.Fatalf("insert: %v", err)
	}

	keys, bad, err := s.LoadKeys(ctx)
	if err != nil || len(bad) != 0 {
		t.Fatalf("LoadKeys: err=%v bad=%v", err, bad)
	}
	got := map[string]store.Key{}
	for _, k := range keys {
		got[k.ID] = k
	}
	want := map[string]float64{"int32": 3, "int64": 4, "double": 5.5}
	for id, spend := range want {
		k, ok := got[id]
		if !ok || k.LastSpendUSD == nil || *k.LastSpendUSD != spend {
			t.Errorf("key %s: spend = %v, want %v", id, k.LastSpendUSD, spend)
		}
	}
	if b := got["int32"].BudgetUSD; b == nil || *b != 10 {
		t.Errorf("int32 budget = %v, want 10", b)
	}
	if g := got["int64"].Generation; g != 2 {
		t.Errorf("int64 generation = %d, want 2", g)
	}
	if th := got["double"].ThresholdUSD; th == nil || *th != 4.5 {
		t.Errorf("double threshold = %v, want 4.5", th)
	}
	if !got["double"].LastCheckedAt.Equal(checked) {
		t.Errorf("last_checked_at = %v, want %v", got["double"].LastCheckedAt, checked)
	}
	if got["int32"].Status != store.StatusActive {
		t.Errorf("status defaults to %q, want active", got["int32"].Status)
	}
}

func TestLoadKeysSkipsBrokenDocuments(t *testing.T) {
	ctx := context.Background()
	names := storetest.Names(t)
	s := storetest.Open(t, storetest.Server(t).URI(), names)
	raw := rawCollection(t, names, names.Keys)

	docs := []any{
		bson.D{{Key: "_id", Value: "good"}, {Key: "provider", Value: "litellm"}, {Key: "secret", Value: "s"}},
		bson.D{{Key: "_id", Value: "spend-as-string"}, {Key: "provider", Value: "litellm"},
			{Key: "secret", Value: "s"}, {Key: "last_spend_usd", Value: "7"}},
		bson.D{{Key: "_id", Value: "no-secret"}, {Key: "provider", Value: "litellm"}},
		bson.D{{Key: "_id", Value: 42}, {Key: "provider", Value: "litellm"}, {Key: "secret", Value: "s"}},
		bson.D{{Key: "_id", Value: "negative-budget"}, {Key: "provider", Value: "litellm"},
			{Key: "secret", Value: "s"}, {Key: "budget_usd", Value: -1.0}},
	}
	if _, err := raw.InsertMany(ctx, docs); err != nil {
		t.Fatalf("insert: %v", err)
	}

	keys, bad, err := s.LoadKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID != "good" {
		t.Errorf("loaded %v, want only the good key", keys)
	}
	if len(bad) != 4 {
		t.Errorf("reported %d broken documents, want 4: %v", len(bad), bad)
	}
	for _, e := range bad {
		if e.Error() == "" {
			t.Error("empty error for a broken document")
		}
	}
}

// The latest check of each key comes back with the keys, for the key's
// current generation only: a record of a rotated-away secret is ignored.
func TestRecordChecksFeedLoadKeys(t *testing.T) {
	ctx := context.Background()
	names := storetest.Names(t)
	s := storetest.Open(t, storetest.Server(t).URI(), names)
	raw := rawCollection(t, names, names.Keys)
	if _, err := raw.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "k"}, {Key: "provider", Value: "litellm"}, {Key: "secret", Value: "s"}},
		bson.D{{Key: "_id", Value: "rotated"}, {Key: "provider", Value: "litellm"}, {Key: "secret", Value: "s2"},
			{Key: "generation", Value: int64(1)}},
	}); err != nil {
		t.Fatal(err)
	}

	at := time.Now().UTC().Truncate(time.Millisecond)
	// Two shards: the newer record of a key wins.
	err := s.RecordChecks(ctx, "0/2", []store.CheckRecord{
		{KeyID: "k", SpendUSD: 1.25, CheckedAt: at},
		{KeyID: "rotated", Generation: 0, SpendUSD: 9.99, CheckedAt: at},
	})
	if err == nil {
		err = s.RecordChecks(ctx, "1/2", []store.CheckRecord{
			{KeyID: "k", SpendUSD: 0.5, CheckedAt: at.Add(-time.Minute)},
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := s.LoadKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		switch k.ID {
		case "k":
			if k.LastSpendUSD == nil || *k.LastSpendUSD != 1.25 || !k.LastCheckedAt.Equal(at) {
				t.Errorf("after RecordChecks: spend=%v checked=%v", k.LastSpendUSD, k.LastCheckedAt)
			}
		case "rotated":
			if k.LastSpendUSD != nil {
				t.Errorf("rotated key shows the spend of its previous secret: %v", *k.LastSpendUSD)
			}
		}
	}
}
