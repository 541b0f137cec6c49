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
	LastUsedAt    time.Time
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

// ImportKeys inserts new keys and updates the provider, secret and overrides
// of existing ones. It returns how many were inserted and updated.
func (s *Store) ImportKeys(ctx context.Context, in []KeyImport) (inserted, updated int, err error) {
	if len(in) == 0 {
		return 0, 0, nil
	}
	models := make([]mongo.WriteModel, 0, len(in))
	for _, k := range in {
		set := bson.D{
			{Key: "provider", Value: k.Provider}, {Key: "secret", Value: k.Secret},
			{Key: "base_url", Value: k.BaseURL},
			{Key: "budget_usd", Value: k.BudgetUSD}, {Key: "threshold_usd", Value: k.ThresholdUSD},
		}
		onInsert := bson.D{{Key: "status", Value: StatusActive}, {Key: "generation", Value: int64(0)}}
		models = append(models, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: "_id", Value: k.ID}}).
			SetUpdate(bson.D{{Key: "$set", Value: set}, {Key: "$setOnInsert", Value: onInsert}}).
			SetUpsert(true))
	}
	res, err := s.keys.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	if err != nil {
		return 0, 0, fmt.Errorf("import keys: %w", err)
	}
	return int(res.UpsertedCount), int(res.MatchedCount), nil
}

// CheckRecord is what the store keeps of a key's latest check.
type CheckRecord struct {
	KeyID      string
	Generation int64
	SpendUSD   float64
	CheckedAt  time.Time
}

// RecordChecks writes each key's latest spend and check time in one bulk
// write. The generation filter keeps a late result from a rotated-away
// secret from landing on the new one.
func (s *Store) RecordChecks(ctx context.Context, recs []CheckRecord) error {
	if len(recs) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, 0, len(recs))
	for _, r := range recs {
		models = append(models, mongo.NewUpdateOneModel().
			SetFilter(generationFilter(r.KeyID, r.Generation)).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{
				{Key: "last_spend_usd", Value: r.SpendUSD}, {Key: "last_checked_at", Value: r.CheckedAt},
			}}}))
	}
	if _, err := s.keys.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
		return fmt.Errorf("record checks: %w", err)
	}
	return nil
}

// SetKeyStatus sets the status of a key at a generation.
func (s *Store) SetKeyStatus(ctx context.Context, id string, generation int64, status string) error {
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
	_, err := s.keys.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "last_used_at", Value: at.UTC()}}}})
	if err != nil {
		return fmt.Errorf("mark keys used: %w", err)
	}
	return nil
}
