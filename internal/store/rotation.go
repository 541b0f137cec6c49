package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Rotation ledger states, in the order a rotation passes through them.
const (
	RotationStarted = "started" // ledger written, no backup claimed yet
	RotationClaimed = "claimed" // a backup is claimed for it
	RotationDone    = "done"    // key swapped, backup marked used
)

// Rotation is one entry of the rotation ledger. Its ID is the key id and
// the generation being replaced, so inserting it is the lock that lets one
// rotation per key generation through, on MongoDB and FerretDB alike.
type Rotation struct {
	ID             string    `bson:"_id"`
	Key            string    `bson:"key"`
	Provider       string    `bson:"provider"`
	FromGeneration int64     `bson:"from_generation"`
	Reason         string    `bson:"reason"`
	SpendUSD       float64   `bson:"spend_usd"`
	ThresholdUSD   float64   `bson:"threshold_usd"`
	State          string    `bson:"state"`
	Backup         string    `bson:"backup,omitempty"`
	Owner          string    `bson:"owner"`
	StartedAt      time.Time `bson:"started_at"`
	FinishedAt     time.Time `bson:"finished_at,omitempty"`
}

// RotationID names the ledger entry of a key generation.
func RotationID(key string, generation int64) string {
	return fmt.Sprintf("%s@%d", key, generation)
}

// BeginRotation writes the ledger entry. It returns false when an entry for
// this key generation exists: another goroutine or replica has it.
func (s *Store) BeginRotation(ctx context.Context, r Rotation) (bool, error) {
	r.State = RotationStarted
	_, err := s.rotations.InsertOne(ctx, r)
	if IsDuplicateKey(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("begin rotation %s: %w", r.ID, err)
	}
	return true, nil
}

// ClaimBackup takes a backup for a rotation by inserting a claim under the
// backup's id: of any number of concurrent claims exactly one succeeds.
func (s *Store) ClaimBackup(ctx context.Context, backupID, rotationID string) (bool, error) {
	claim := bson.D{
		{Key: "_id", Value: backupID}, {Key: "rotation", Value: rotationID},
		{Key: "at", Value: time.Now().UTC()},
	}
	_, err := s.claims.InsertOne(ctx, claim)
	if IsDuplicateKey(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim backup %q: %w", backupID, err)
	}
	return true, s.setBackupStatus(ctx, backupID, BackupClaimed, "")
}

// ClaimOf returns the backup id claimed by a rotation, or "" when none is.
func (s *Store) ClaimOf(ctx context.Context, rotationID string) (string, error) {
	var claim struct {
		ID string `bson:"_id"`
	}
	err := s.claims.FindOne(ctx, bson.D{{Key: "rotation", Value: rotationID}}).Decode(&claim)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("find claim of %s: %w", rotationID, err)
	}
	return claim.ID, nil
}

// MarkRotationClaimed records the claimed backup on the ledger entry.
func (s *Store) MarkRotationClaimed(ctx context.Context, rotationID, backupID string) error {
	return s.setRotation(ctx, rotationID, bson.D{
		{Key: "state", Value: RotationClaimed}, {Key: "backup", Value: backupID},
	})
}

// RetireSecret keeps the secret being replaced. It is keyed by the rotation,
// so writing it twice (after a crash) is harmless.
func (s *Store) RetireSecret(ctx context.Context, r Rotation, secret string) error {
	doc := bson.D{
		{Key: "_id", Value: r.ID}, {Key: "key", Value: r.Key}, {Key: "generation", Value: r.FromGeneration},
		{Key: "secret", Value: secret}, {Key: "reason", Value: r.Reason},
		{Key: "retired_at", Value: time.Now().UTC()},
	}
	_, err := s.retired.InsertOne(ctx, doc)
	if err != nil && !IsDuplicateKey(err) {
		return fmt.Errorf("retire secret of %s: %w", r.ID, err)
	}
	return nil
}

// Rotation reads one ledger entry; found is false when there is none.
func (s *Store) Rotation(ctx context.Context, id string) (r Rotation, found bool, err error) {
	err = s.rotations.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Rotation{}, false, nil
	}
	if err != nil {
		return Rotation{}, false, fmt.Errorf("read rotation %s: %w", id, err)
	}
	return r, true, nil
}

// RetiredSecret returns the secret a rotation retired, if it was written.
func (s *Store) RetiredSecret(ctx context.Context, rotationID string) (string, bool, error) {
	var doc struct {
		Secret string `bson:"secret"`
	}
	err := s.retired.FindOne(ctx, bson.D{{Key: "_id", Value: rotationID}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read retired secret of %s: %w", rotationID, err)
	}
	return doc.Secret, true, nil
}

// SwapSecret gives a key the backup's secret and moves it to the next
// generation. It only applies while the key is still at fromGeneration, so
// repeating it is harmless.
func (s *Store) SwapSecret(ctx context.Context, keyID string, fromGeneration int64,
	b Backup) error {
	set := bson.D{
		{Key: "secret", Value: b.Secret}, {Key: "generation", Value: fromGeneration + 1},
		{Key: "status", Value: StatusActive}, {Key: "last_spend_usd", Value: nil},
		{Key: "rotated_at", Value: time.Now().UTC()},
	}
	if b.BaseURL != "" {
		set = append(set, bson.E{Key: "base_url", Value: b.BaseURL})
	}
	_, err := s.keys.UpdateOne(ctx, generationFilter(keyID, fromGeneration),
		bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("swap secret of key %q: %w", keyID, err)
	}
	return nil
}

// MarkBackupUsed records that a backup now serves a key.
func (s *Store) MarkBackupUsed(ctx context.Context, backupID, keyID string) error {
	return s.setBackupStatus(ctx, backupID, BackupUsed, keyID)
}

// FinishRotation closes a ledger entry.
func (s *Store) FinishRotation(ctx context.Context, rotationID string) error {
	return s.setRotation(ctx, rotationID, bson.D{
		{Key: "state", Value: RotationDone}, {Key: "finished_at", Value: time.Now().UTC()},
	})
}

// AbandonRotation removes a ledger entry that claimed no backup, so the key
// generation can be tried again later.
func (s *Store) AbandonRotation(ctx context.Context, rotationID string) error {
	_, err := s.rotations.DeleteOne(ctx, bson.D{
		{Key: "_id", Value: rotationID}, {Key: "state", Value: RotationStarted},
	})
	if err != nil {
		return fmt.Errorf("abandon rotation %s: %w", rotationID, err)
	}
	return nil
}

// ReleaseClaim returns a backup to the pool if the given rotation still
// holds its claim. Naming the rotation matters: two replicas recovering the
// same orphan must not let the late one delete a claim a new rotation made
// meanwhile. A crash between the two writes leaves the status "claimed"
// with no claim, which StrandedBackups finds.
func (s *Store) ReleaseClaim(ctx context.Context, backupID, rotationID string) error {
	res, err := s.claims.DeleteOne(ctx,
		bson.D{{Key: "_id", Value: backupID}, {Key: "rotation", Value: rotationID}})
	if err != nil {
		return fmt.Errorf("release claim on %q: %w", backupID, err)
	}
	if res.DeletedCount == 0 {
		return nil
	}
	return s.setBackupStatus(ctx, backupID, BackupAvailable, "")
}

// StrandedBackups returns backups marked claimed that no claim holds, and
// sets them available again. Only a crash inside ReleaseClaim leaves one.
func (s *Store) StrandedBackups(ctx context.Context) ([]string, error) {
	cur, err := s.backups.Find(ctx, bson.D{{Key: "status", Value: BackupClaimed}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find claimed backups: %w", err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read claimed backups: %w", err)
	}
	var stranded []string
	for _, d := range docs {
		n, err := s.claims.CountDocuments(ctx, bson.D{{Key: "_id", Value: d.ID}})
		if err != nil {
			return nil, fmt.Errorf("find claim of %q: %w", d.ID, err)
		}
		if n == 0 {
			stranded = append(stranded, d.ID)
		}
	}
	return stranded, nil
}

// MakeAvailable returns a backup to the pool.
func (s *Store) MakeAvailable(ctx context.Context, backupID string) error {
	return s.setBackupStatus(ctx, backupID, BackupAvailable, "")
}

func (s *Store) setRotation(ctx context.Context, id string, set bson.D) error {
	_, err := s.rotations.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("update rotation %s: %w", id, err)
	}
	return nil
}

// UnfinishedRotations returns ledger entries not done and started before
// cutoff: rotations whose process died or stalled.
func (s *Store) UnfinishedRotations(ctx context.Context, cutoff time.Time) ([]Rotation, error) {
	filter := bson.D{
		{Key: "state", Value: bson.D{{Key: "$ne", Value: RotationDone}}},
		{Key: "started_at", Value: bson.D{{Key: "$lt", Value: cutoff}}},
	}
	return s.findRotations(ctx, filter, 0)
}

// RecentRotations returns the newest ledger entries, newest first.
func (s *Store) RecentRotations(ctx context.Context, limit int) ([]Rotation, error) {
	return s.findRotations(ctx, bson.D{}, limit)
}

// Rotations returns every ledger entry, oldest first.
func (s *Store) Rotations(ctx context.Context) ([]Rotation, error) {
	return s.findRotations(ctx, bson.D{}, -1)
}

func (s *Store) findRotations(ctx context.Context, filter bson.D, limit int) ([]Rotation, error) {
	opts := options.Find().SetSort(bson.D{{Key: "started_at", Value: 1}})
	if limit > 0 {
		opts = options.Find().SetSort(bson.D{{Key: "started_at", Value: -1}}).SetLimit(int64(limit))
	}
	cur, err := s.rotations.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("find rotations: %w", err)
	}
	var out []Rotation
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("read rotations: %w", err)
	}
	return out, nil
}

// Claim ties a backup to the rotation that took it.
type Claim struct {
	Backup   string `bson:"_id"`
	Rotation string `bson:"rotation"`
}

// OrphanClaims returns claims older than cutoff whose rotation entry no
// longer exists: backups taken out of the pool that no rotation will use.
func (s *Store) OrphanClaims(ctx context.Context, cutoff time.Time) ([]Claim, error) {
	cur, err := s.claims.Find(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: cutoff}}}})
	if err != nil {
		return nil, fmt.Errorf("find claims: %w", err)
	}
	var claims []Claim
	if err := cur.All(ctx, &claims); err != nil {
		return nil, fmt.Errorf("read claims: %w", err)
	}

	var orphans []Claim
	for _, c := range claims {
		n, err := s.rotations.CountDocuments(ctx, bson.D{{Key: "_id", Value: c.Rotation}})
		if err != nil {
			return nil, fmt.Errorf("find rotation of claim %q: %w", c.Backup, err)
		}
		if n == 0 {
			orphans = append(orphans, c)
		}
	}
	return orphans, nil
}

// Key reads one key.
func (s *Store) Key(ctx context.Context, id string) (Key, error) {
	raw, err := s.keys.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil {
		return Key{}, fmt.Errorf("read key %q: %w", id, err)
	}
	return decodeKey(raw)
}

// DeleteRotation removes a ledger entry whatever its state. It is for a key
// deleted while being rotated.
func (s *Store) DeleteRotation(ctx context.Context, rotationID string) error {
	if _, err := s.rotations.DeleteOne(ctx, bson.D{{Key: "_id", Value: rotationID}}); err != nil {
		return fmt.Errorf("delete rotation %s: %w", rotationID, err)
	}
	return nil
}
