package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Backup statuses. A backup goes available -> claimed -> used, or back to
// available when a rotation that claimed it is rolled back.
const (
	BackupAvailable = "available"
	BackupClaimed   = "claimed"
	BackupUsed      = "used"
)

// Backup is a spare key waiting in the pool.
type Backup struct {
	ID       string `bson:"_id"`
	Provider string `bson:"provider"`
	Secret   string `bson:"secret"`
	BaseURL  string `bson:"base_url,omitempty"`
	Status   string `bson:"status"`
	UsedBy   string `bson:"used_by,omitempty"`
}

// ImportBackups adds backups to the pool in one bulk insert. A backup whose
// id exists is left alone: its secret may already be serving a key. A
// backup whose secret the store already holds is refused, so no secret
// can end up on two keys.
func (s *Store) ImportBackups(ctx context.Context, in []Backup) (inserted int, err error) {
	if err := s.checkBackupSecrets(ctx, in); err != nil {
		return 0, err
	}
	existing, err := s.ids(ctx, s.backups)
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	var docs []any
	for _, b := range in {
		if existing[b.ID] {
			continue
		}
		docs = append(docs, bson.D{
			{Key: "_id", Value: b.ID}, {Key: "provider", Value: b.Provider}, {Key: "secret", Value: b.Secret},
			{Key: "base_url", Value: b.BaseURL}, {Key: "status", Value: BackupAvailable},
			{Key: "added_at", Value: now},
		})
	}
	if len(docs) == 0 {
		return 0, nil
	}
	res, err := s.backups.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if res != nil {
		inserted = len(res.InsertedIDs)
	}
	// Another import running at once may have added some of the same ids;
	// those stay as that import wrote them.
	if err != nil && !IsDuplicateKey(err) {
		return inserted, fmt.Errorf("import backups: %w", err)
	}
	return inserted, nil
}

// AvailableBackups returns up to limit backups of a provider that no
// rotation has claimed yet, as far as the status field knows; the claim
// insert is what decides.
func (s *Store) AvailableBackups(ctx context.Context, provider string, limit int) ([]Backup,
	error) {
	filter := bson.D{{Key: "status", Value: BackupAvailable}, {Key: "provider", Value: provider}}
	cur, err := s.backups.Find(ctx, filter, options.Find().SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("find backups: %w", err)
	}
	var out []Backup
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("read backups: %w", err)
	}
	return out, nil
}

// CountAvailableBackups counts the available backups of each provider.
func (s *Store) CountAvailableBackups(ctx context.Context) (map[string]int, error) {
	cur, err := s.backups.Find(ctx, bson.D{{Key: "status", Value: BackupAvailable}},
		options.Find().SetProjection(bson.D{{Key: "provider", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("count backups: %w", err)
	}
	defer cur.Close(ctx)

	counts := map[string]int{}
	for cur.Next(ctx) {
		p, _ := cur.Current.Lookup("provider").StringValueOK()
		counts[p]++
	}
	return counts, cur.Err()
}

// ListBackups returns every backup, for the status page and the CLI.
func (s *Store) ListBackups(ctx context.Context) ([]Backup, error) {
	cur, err := s.backups.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var out []Backup
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	return out, nil
}

// Backup reads one backup.
func (s *Store) Backup(ctx context.Context, id string) (Backup, error) {
	var b Backup
	err := s.backups.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&b)
	if err != nil {
		return b, fmt.Errorf("read backup %q: %w", id, err)
	}
	return b, nil
}

// setBackupStatus moves a backup to status. A backup only ever moves
// forward (available, claimed, used) or from claimed back to available, so
// the filter refuses any other move: a late write from a process that died
// mid-rotation cannot take a used backup back to claimed or available. On
// FerretDB the filter and the write are not one atomic step, so this guards
// against stale writes rather than against a race of two live ones; the
// claim insert is what decides who gets a backup.
func (s *Store) setBackupStatus(ctx context.Context, id, status, usedBy string) error {
	from := map[string]bson.A{
		BackupClaimed:   {BackupAvailable},
		BackupAvailable: {BackupClaimed},
		BackupUsed:      {BackupAvailable, BackupClaimed, BackupUsed},
	}[status]
	set := bson.D{{Key: "status", Value: status}}
	if usedBy != "" {
		set = append(set, bson.E{Key: "used_by", Value: usedBy},
			bson.E{Key: "used_at", Value: time.Now().UTC()})
	}
	filter := bson.D{
		{Key: "_id", Value: id}, {Key: "status", Value: bson.D{{Key: "$in", Value: from}}},
	}
	_, err := s.backups.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("set backup %q %s: %w", id, status, err)
	}
	return nil
}
