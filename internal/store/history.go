package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// HistoryPoint is one check's result, kept for later analysis.
type HistoryPoint struct {
	Key        string    `bson:"key"`
	Provider   string    `bson:"provider"`
	Generation int64     `bson:"generation"`
	Outcome    string    `bson:"outcome"`
	SpendUSD   *float64  `bson:"spend_usd"`
	BudgetUSD  *float64  `bson:"budget_usd"`
	At         time.Time `bson:"at"`
}

// WriteHistory inserts a cycle's points in one bulk write.
func (s *Store) WriteHistory(ctx context.Context, points []HistoryPoint) error {
	if len(points) == 0 {
		return nil
	}
	docs := make([]any, len(points))
	for i := range points {
		docs[i] = points[i]
	}
	if _, err := s.history.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

// PruneHistory deletes points older than cutoff. FerretDB has no TTL index,
// so retention is kept by this delete rather than by the database.
func (s *Store) PruneHistory(ctx context.Context, cutoff time.Time) (int64, error) {
	filter := bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: cutoff}}}}
	res, err := s.history.DeleteMany(ctx, filter)
	if err != nil {
		return 0, fmt.Errorf("prune history: %w", err)
	}
	return res.DeletedCount, nil
}

// CountHistory counts the points of one key, or of every key when key is "".
func (s *Store) CountHistory(ctx context.Context, key string) (int64, error) {
	filter := bson.D{}
	if key != "" {
		filter = bson.D{{Key: "key", Value: key}}
	}
	return s.history.CountDocuments(ctx, filter)
}
