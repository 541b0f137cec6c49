package store_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

func backupStatus(t *testing.T, s *store.Store, id string) string {
	t.Helper()
	b, err := s.Backup(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return b.Status
}

// A late release by a rotation that no longer holds the claim must leave a
// newer rotation's claim alone; otherwise one backup could serve two keys.
func TestReleaseClaimOnlyReleasesItsOwnRotation(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	if _, err := s.ImportBackups(ctx, []store.Backup{{ID: "b1", Provider: "litellm", Secret: "x"}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.ClaimBackup(ctx, "b1", "new@0"); err != nil || !ok {
		t.Fatalf("claim: ok=%v err=%v", ok, err)
	}

	if err := s.ReleaseClaim(ctx, "b1", "old@0"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ClaimOf(ctx, "new@0"); got != "b1" || backupStatus(t, s, "b1") != store.BackupClaimed {
		t.Errorf("another rotation's release took the claim: claim of new@0 = %q, status %q",
			got, backupStatus(t, s, "b1"))
	}

	if err := s.ReleaseClaim(ctx, "b1", "new@0"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ClaimOf(ctx, "new@0"); got != "" || backupStatus(t, s, "b1") != store.BackupAvailable {
		t.Errorf("after its own release: claim %q, status %q", got, backupStatus(t, s, "b1"))
	}
}

// StrandedBackups finds a backup marked claimed with no claim behind it, as
// a crash between the two writes of ReleaseClaim leaves one.
func TestStrandedBackups(t *testing.T) {
	ctx := context.Background()
	names := storetest.Names(t)
	s := storetest.Open(t, storetest.Server(t).URI(), names)
	backups := []store.Backup{{ID: "held", Provider: "litellm", Secret: "x"}, {ID: "lost", Provider: "litellm", Secret: "y"}}
	if _, err := s.ImportBackups(ctx, backups); err != nil {
		t.Fatal(err)
	}
	for _, b := range backups {
		if ok, err := s.ClaimBackup(ctx, b.ID, "r-"+b.ID); err != nil || !ok {
			t.Fatalf("claim %s: ok=%v err=%v", b.ID, ok, err)
		}
	}
	// The claim on "lost" goes, its status stays: the crash.
	claims := rawCollection(t, names, names.Backups+"_claims")
	if _, err := claims.DeleteOne(ctx, bson.D{{Key: "_id", Value: "lost"}}); err != nil {
		t.Fatal(err)
	}

	got, err := s.StrandedBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "lost" {
		t.Errorf("stranded = %v, want [lost]", got)
	}
}
