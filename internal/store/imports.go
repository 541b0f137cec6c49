package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// held is what the store knows of a key before an import changes it.
type held struct {
	secret     string
	generation int64
}

// secretOwners maps every secret the store holds (keys' live secrets,
// backups, retired secrets) to a description of its holder, so an import
// never gives one secret to two keys, or back to a key that spent it.
func (s *Store) secretOwners(ctx context.Context) (map[string]string, map[string]held, error) {
	owners := map[string]string{}
	keys := map[string]held{}
	read := func(c *mongo.Collection, describe func(doc bson.Raw) string) error {
		cur, err := c.Find(ctx, bson.D{})
		if err != nil {
			return fmt.Errorf("read %s: %w", c.Name(), err)
		}
		defer cur.Close(ctx)
		for cur.Next(ctx) {
			if secret, ok := cur.Current.Lookup("secret").StringValueOK(); ok {
				owners[secret] = describe(cur.Current)
			}
		}
		return cur.Err()
	}
	err := read(s.retired, func(d bson.Raw) string {
		return fmt.Sprintf("a secret key %q retired", d.Lookup("key").StringValue())
	})
	if err == nil {
		err = read(s.backups, func(d bson.Raw) string {
			return fmt.Sprintf("backup %q", d.Lookup("_id").StringValue())
		})
	}
	if err == nil {
		err = read(s.keys, func(d bson.Raw) string {
			id := d.Lookup("_id").StringValue()
			gen, _ := moneyField(d, "generation")
			h := held{secret: d.Lookup("secret").StringValue()}
			if gen != nil {
				h.generation = int64(*gen)
			}
			keys[id] = h
			return fmt.Sprintf("key %q", id)
		})
	}
	return owners, keys, err
}

// ImportKeys inserts new keys and updates existing ones. A key whose secret
// changes keeps its old secret in the retired records and becomes active
// again; fields the import leaves out keep their stored values. A secret
// already held by another key, a backup, or a retired record is refused
// before anything is written. New keys go in one bulk insert: on FerretDB
// an update costs a scan of the collection.
func (s *Store) ImportKeys(ctx context.Context, in []KeyImport) (inserted, updated int, err error) {
	if len(in) == 0 {
		return 0, 0, nil
	}
	owners, existing, err := s.secretOwners(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, k := range in {
		if owner, ok := owners[k.Secret]; ok && owner != fmt.Sprintf("key %q", k.ID) {
			return 0, 0, fmt.Errorf("key %q: its secret is already held by %s", k.ID, owner)
		}
	}

	var fresh []any
	var models []mongo.WriteModel
	for _, k := range in {
		old, ok := existing[k.ID]
		if !ok {
			fresh = append(fresh, newKeyDoc(k))
			continue
		}
		if old.secret != k.Secret {
			if err := s.retireImported(ctx, k.ID, old); err != nil {
				return 0, 0, err
			}
		}
		models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: k.ID}}).
			SetUpdate(bson.D{{Key: "$set", Value: importSet(k, old.secret != k.Secret)}}))
	}
	if len(fresh) > 0 {
		res, err := s.keys.InsertMany(ctx, fresh, options.InsertMany().SetOrdered(false))
		if err != nil {
			return 0, 0, fmt.Errorf("import keys: %w", err)
		}
		inserted = len(res.InsertedIDs)
	}
	for start := 0; start < len(models); start += updateBatch {
		batch := models[start:min(start+updateBatch, len(models))]
		res, err := s.keys.BulkWrite(ctx, batch, options.BulkWrite().SetOrdered(false))
		if err != nil {
			return inserted, updated, fmt.Errorf("import keys: %d new and %d updated before: %w",
				inserted, updated, err)
		}
		updated += int(res.MatchedCount)
	}
	return inserted, updated, nil
}

func newKeyDoc(k KeyImport) bson.D {
	return bson.D{
		{Key: "_id", Value: k.ID}, {Key: "provider", Value: k.Provider}, {Key: "secret", Value: k.Secret},
		{Key: "base_url", Value: k.BaseURL}, {Key: "budget_usd", Value: k.BudgetUSD},
		{Key: "threshold_usd", Value: k.ThresholdUSD}, {Key: "status", Value: StatusActive},
		{Key: "generation", Value: int64(0)},
	}
}

// importSet is the update of an existing key: only what the file says.
func importSet(k KeyImport, newSecret bool) bson.D {
	set := bson.D{{Key: "provider", Value: k.Provider}, {Key: "secret", Value: k.Secret}}
	if newSecret {
		// A fresh secret is a fresh start: an exhausted key checks again.
		set = append(set, bson.E{Key: "status", Value: StatusActive})
	}
	if k.BaseURL != "" {
		set = append(set, bson.E{Key: "base_url", Value: k.BaseURL})
	}
	if k.BudgetUSD != nil {
		set = append(set, bson.E{Key: "budget_usd", Value: *k.BudgetUSD})
	}
	if k.ThresholdUSD != nil {
		set = append(set, bson.E{Key: "threshold_usd", Value: *k.ThresholdUSD})
	}
	return set
}

// retireImported keeps the secret an import replaces, as a rotation does.
func (s *Store) retireImported(ctx context.Context, id string, old held) error {
	now := time.Now().UTC()
	doc := bson.D{
		{Key: "_id", Value: fmt.Sprintf("%s@%d/import/%d", id, old.generation, now.UnixNano())},
		{Key: "key", Value: id}, {Key: "generation", Value: old.generation},
		{Key: "secret", Value: old.secret}, {Key: "reason", Value: "import"}, {Key: "retired_at", Value: now},
	}
	if _, err := s.retired.InsertOne(ctx, doc); err != nil {
		return fmt.Errorf("retire the replaced secret of key %q: %w", id, err)
	}
	return nil
}

// checkBackupSecrets refuses backups whose secret the store already holds.
func (s *Store) checkBackupSecrets(ctx context.Context, in []Backup) error {
	owners, _, err := s.secretOwners(ctx)
	if err != nil {
		return err
	}
	for _, b := range in {
		if owner, ok := owners[b.Secret]; ok && owner != fmt.Sprintf("backup %q", b.ID) {
			return fmt.Errorf("backup %q: its secret is already held by %s", b.ID, owner)
		}
	}
	return nil
}
