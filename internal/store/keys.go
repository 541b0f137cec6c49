package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Key statuses.
const (
	StatusActive    = "active"
	StatusExhausted = "exhausted"
	StatusDisabled  = "disabled"
)

// Statuses lists every key status, for metrics with a fixed label set.
var Statuses = []string{StatusActive, StatusExhausted, StatusDisabled}

// Key is one monitored upstream key. ID is stable across rotations and is
// the metric label; Secret changes with every rotation.
type Key struct {
	ID       string
	Provider string
	Secret   string
	BaseURL  string

	// BudgetUSD and ThresholdUSD override the configured defaults when set.
	BudgetUSD    *float64
	ThresholdUSD *float64

	Status     string
	Generation int64

	// LastUsedAt is written by the proxy that uses the key; it decides
	// whether the key is checked on the active or the idle interval.
	LastUsedAt time.Time
	// LastSpendUSD and LastCheckedAt come from the latest check record of
	// the key's current generation, or from the key document itself when
	// an operator's tool wrote them there.
	LastSpendUSD  *float64
	LastCheckedAt time.Time
	RotatedAt     time.Time
}

// LoadKeys reads every key. A document that cannot be read as a key is
// skipped and reported in the second return value, so one bad document never
// hides the others.
func (s *Store) LoadKeys(ctx context.Context) ([]Key, []error, error) {
	cur, err := s.keys.Find(ctx, bson.D{})
	if err != nil {
		return nil, nil, fmt.Errorf("load keys: %w", err)
	}
	defer cur.Close(ctx)

	var keys []Key
	var bad []error
	for cur.Next(ctx) {
		k, err := decodeKey(cur.Current)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		keys = append(keys, k)
	}
	if err := cur.Err(); err != nil {
		return nil, nil, fmt.Errorf("load keys: %w", err)
	}

	checks, err := s.lastChecks(ctx)
	if err != nil {
		return nil, nil, err
	}
	for i, k := range keys {
		// A record of an earlier generation is the spend of a secret the
		// key no longer holds.
		if r, ok := checks[k.ID]; ok && r.Generation == k.Generation {
			spend := r.SpendUSD
			keys[i].LastSpendUSD, keys[i].LastCheckedAt = &spend, r.CheckedAt
		}
	}
	return keys, bad, nil
}

// decodeKey reads a key document field by field, accepting every numeric
// BSON type for money and counts, because operators write these documents
// with whatever tool they have.
func decodeKey(raw bson.Raw) (Key, error) {
	var k Key
	id, ok := raw.Lookup("_id").StringValueOK()
	if !ok || id == "" {
		return k, errors.New("key document without a string _id")
	}
	k.ID = id
	fail := func(field string) (Key, error) {
		return Key{}, fmt.Errorf("key %q: field %s has the wrong type or value", id, field)
	}

	var err error
	if k.Provider, err = stringField(raw, "provider", true); err != nil {
		return fail("provider")
	}
	if k.Secret, err = stringField(raw, "secret", true); err != nil {
		return fail("secret")
	}
	if k.BaseURL, err = stringField(raw, "base_url", false); err != nil {
		return fail("base_url")
	}
	if k.Status, err = stringField(raw, "status", false); err != nil {
		return fail("status")
	}
	if k.Status == "" {
		k.Status = StatusActive
	}
	if k.BudgetUSD, err = moneyField(raw, "budget_usd"); err != nil {
		return fail("budget_usd")
	}
	if k.ThresholdUSD, err = moneyField(raw, "threshold_usd"); err != nil {
		return fail("threshold_usd")
	}
	if k.LastSpendUSD, err = moneyField(raw, "last_spend_usd"); err != nil {
		return fail("last_spend_usd")
	}
	gen, err := moneyField(raw, "generation")
	if err != nil {
		return fail("generation")
	}
	if gen != nil {
		k.Generation = int64(*gen)
	}
	k.LastUsedAt = timeField(raw, "last_used_at")
	k.LastCheckedAt = timeField(raw, "last_checked_at")
	k.RotatedAt = timeField(raw, "rotated_at")
	return k, nil
}

var errField = errors.New("wrong type")

func stringField(raw bson.Raw, name string, required bool) (string, error) {
	v, err := raw.LookupErr(name)
	if err != nil || v.Type == bson.TypeNull {
		if required {
			return "", errField
		}
		return "", nil
	}
	s, ok := v.StringValueOK()
	if !ok || (required && s == "") {
		return "", errField
	}
	return s, nil
}

// moneyField reads an optional non-negative finite number stored as int32,
// int64, double or Decimal128. Absent or null gives nil.
func moneyField(raw bson.Raw, name string) (*float64, error) {
	v, err := raw.LookupErr(name)
	if err != nil || v.Type == bson.TypeNull {
		return nil, nil
	}
	f, err := number(v)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return nil, errField
	}
	return &f, nil
}

func number(v bson.RawValue) (float64, error) {
	switch v.Type {
	case bson.TypeDouble:
		return v.Double(), nil
	case bson.TypeInt32:
		return float64(v.Int32()), nil
	case bson.TypeInt64:
		return float64(v.Int64()), nil
	case bson.TypeDecimal128:
		return strconv.ParseFloat(v.Decimal128().String(), 64)
	}
	return 0, errField
}

// timeField reads an optional date; anything else counts as never.
func timeField(raw bson.Raw, name string) time.Time {
	t, ok := raw.Lookup(name).TimeOK()
	if !ok {
		return time.Time{}
	}
	return t
}

// KeyImport is a key as an operator supplies it in an import file.
type KeyImport struct {
	ID           string
	Provider     string
	Secret       string
	BaseURL      string
	BudgetUSD    *float64
	ThresholdUSD *float64
}

// updateBatch bounds the updates sent in one command, and the documents one
// update may match. FerretDB v1 stalls past about 100 of either: the command
// never answers and the connection is lost.
const updateBatch = 50

// ids reads the _id of every document of c.
func (s *Store) ids(ctx context.Context, c *mongo.Collection) (map[string]bool, error) {
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", c.Name(), err)
	}
	defer cur.Close(ctx)
	out := map[string]bool{}
	for cur.Next(ctx) {
		if id, ok := cur.Current.Lookup("_id").StringValueOK(); ok {
			out[id] = true
		}
	}
	return out, cur.Err()
}

// CheckRecord is what the store keeps of a key's latest successful check.
type CheckRecord struct {
	KeyID      string    `bson:"key"`
	Generation int64     `bson:"generation"`
	SpendUSD   float64   `bson:"spend_usd"`
	CheckedAt  time.Time `bson:"checked_at"`
}

// RecordChecks replaces the latest-check document of one shard of keys
// with recs, in one write. One document per shard rather than a field per
// key document, for two reasons. FerretDB v1 finds the document of an update
// by scanning the collection (its _id index is not used for it), so one
// update per key per cycle costs keys squared; and it rewrites the whole
// document on update, so a check record racing a rotation's swap could put
// the old secret back. A shard's document holds about 60 bytes per key, far
// under MongoDB's 16 MiB document limit at 10,000 keys.
func (s *Store) RecordChecks(ctx context.Context, shard string, recs []CheckRecord) error {
	doc := bson.D{
		{Key: "_id", Value: shard}, {Key: "at", Value: time.Now().UTC()}, {Key: "checks", Value: recs},
	}
	_, err := s.spend.ReplaceOne(ctx, bson.D{{Key: "_id", Value: shard}}, doc,
		options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("record checks: %w", err)
	}
	return nil
}

// lastChecks reads the latest check of every key, across shards.
func (s *Store) lastChecks(ctx context.Context) (map[string]CheckRecord, error) {
	cur, err := s.spend.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("load last checks: %w", err)
	}
	var shards []struct {
		Checks []CheckRecord `bson:"checks"`
	}
	if err := cur.All(ctx, &shards); err != nil {
		return nil, fmt.Errorf("load last checks: %w", err)
	}
	out := map[string]CheckRecord{}
	for _, sh := range shards {
		for _, r := range sh.Checks {
			if old, ok := out[r.KeyID]; !ok || r.CheckedAt.After(old.CheckedAt) {
				out[r.KeyID] = r
			}
		}
	}
	return out, nil
}

// SetKeyStatus sets the status of a key at a generation.
func (s *Store) SetKeyStatus(ctx context.Context, id string, generation int64,
	status string) error {
	_, err := s.keys.UpdateOne(ctx, generationFilter(id, generation),
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}}}})
	if err != nil {
		return fmt.Errorf("set status of key %q: %w", id, err)
	}
	return nil
}

// generationFilter matches a key at a generation. A document written by hand
// may lack the field, which counts as generation 0.
func generationFilter(id string, generation int64) bson.D {
	gen := any(generation)
	if generation == 0 {
		gen = bson.D{{Key: "$in", Value: bson.A{int64(0), nil}}}
	}
	return bson.D{{Key: "_id", Value: id}, {Key: "generation", Value: gen}}
}

// MarkUsed sets last_used_at of keys, as the proxy that uses them does. The
// demo calls it to keep its keys active.
func (s *Store) MarkUsed(ctx context.Context, ids []string, at time.Time) error {
	for start := 0; start < len(ids); start += updateBatch {
		batch := ids[start:min(start+updateBatch, len(ids))]
		_, err := s.keys.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: batch}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "last_used_at", Value: at.UTC()}}}})
		if err != nil {
			return fmt.Errorf("mark keys used: %w", err)
		}
	}
	return nil
}
