package store

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// FerretDB v1 refuses Decimal128 values, so this decodes one from BSON
// built in memory, as a real MongoDB would return it.
func TestDecodeKeyDecimal128Spend(t *testing.T) {
	dec, err := bson.ParseDecimal128("7.25")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bson.Marshal(bson.D{
		{Key: "_id", Value: "decimal"}, {Key: "provider", Value: "litellm"}, {Key: "secret", Value: "s"},
		{Key: "last_spend_usd", Value: dec}, {Key: "budget_usd", Value: dec},
	})
	if err != nil {
		t.Fatal(err)
	}
	k, err := decodeKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if k.LastSpendUSD == nil || *k.LastSpendUSD != 7.25 || k.BudgetUSD == nil || *k.BudgetUSD != 7.25 {
		t.Errorf("decoded spend=%v budget=%v, want 7.25 for both", k.LastSpendUSD, k.BudgetUSD)
	}
}
