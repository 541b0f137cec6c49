// Package store keeps keys, the backup pool, spend history and the rotation
// ledger in MongoDB (or the embedded FerretDB). It is the only package that
// imports the MongoDB driver.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Names are the database and collection names.
type Names struct {
	Database  string
	Keys      string
	Backups   string
	History   string
	Rotations string
}

// DefaultNames are the names used when nothing is configured.
var DefaultNames = Names{
	Database: "keyspend", Keys: "keys", Backups: "backup_keys",
	History: "spend_history", Rotations: "rotations",
}

// Store is a connection to the database with the exporter's collections.
type Store struct {
	client    *mongo.Client
	keys      *mongo.Collection
	backups   *mongo.Collection
	history   *mongo.Collection
	rotations *mongo.Collection
	claims    *mongo.Collection
	retired   *mongo.Collection
	spend     *mongo.Collection
	logger    *slog.Logger
}

// Open connects to uri. The driver connects lazily, so Open succeeds while
// the database is down; Ping says whether it is reachable.
func Open(uri string, names Names, logger *slog.Logger) (*Store, error) {
	opts := options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(5 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetAppName("keyspend_exporter")
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", RedactURI(uri), err)
	}

	db := client.Database(names.Database)
	return &Store{
		client:    client,
		keys:      db.Collection(names.Keys),
		backups:   db.Collection(names.Backups),
		history:   db.Collection(names.History),
		rotations: db.Collection(names.Rotations),
		claims:    db.Collection(names.Backups + "_claims"),
		retired:   db.Collection(names.Keys + "_retired"),
		spend:     db.Collection(names.Keys + "_spend"),
		logger:    logger,
	}, nil
}

// RedactURI hides the password of a MongoDB URI so it can be logged.
func RedactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparseable URI)"
	}
	return u.Redacted()
}

// Close disconnects from the database.
func (s *Store) Close(ctx context.Context) error {
	return s.client.Disconnect(ctx)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.client.Ping(ctx, nil)
}

// EnsureIndexes creates the indexes the queries rely on. Creating an index
// that exists is a no-op, so this runs at every start.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	plain := []struct {
		c    *mongo.Collection
		keys bson.D
	}{
		{s.backups, bson.D{{Key: "status", Value: 1}, {Key: "provider", Value: 1}}},
		{s.history, bson.D{{Key: "key", Value: 1}, {Key: "at", Value: 1}}},
		{s.history, bson.D{{Key: "at", Value: 1}}},
		{s.rotations, bson.D{{Key: "state", Value: 1}}},
		{s.rotations, bson.D{{Key: "key", Value: 1}}},
		{s.claims, bson.D{{Key: "rotation", Value: 1}}},
	}
	for _, p := range plain {
		if _, err := p.c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: p.keys}); err != nil {
			return fmt.Errorf("create index on %s: %w", p.c.Name(), err)
		}
	}
	return nil
}

// IsDuplicateKey reports whether err is a unique-index violation.
func IsDuplicateKey(err error) bool {
	return mongo.IsDuplicateKeyError(err)
}

// IsNotFound reports whether err means the document asked for does not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, mongo.ErrNoDocuments)
}

// IsUnavailable reports whether err means the database could not be reached,
// as opposed to a rejected operation.
func IsUnavailable(err error) bool {
	return mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mongo.ErrClientDisconnected)
}
