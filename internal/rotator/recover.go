package rotator

import (
	"context"
	"fmt"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// RecoveryReport counts what one recovery pass did.
type RecoveryReport struct {
	Completed  int // unfinished rotations carried to the end
	RolledBack int // unfinished rotations that had claimed nothing, removed
	Released   int // claimed backups that no rotation held, returned to the pool
}

// Recover finishes or undoes rotations that stopped part-way (a crash, a
// killed pod, a store outage) and returns stranded backups to the pool. Only
// entries older than the grace period are touched, so a rotation still
// running in another replica is left alone. It runs at start-up and after
// every cycle; with nothing to do it costs two queries.
func (r *Rotator) Recover(ctx context.Context) (RecoveryReport, error) {
	var rep RecoveryReport
	if r.opts.DryRun {
		return rep, nil
	}
	cutoff := r.now().Add(-r.opts.Grace)
	unfinished, err := r.opts.Store.UnfinishedRotations(ctx, cutoff)
	if err != nil {
		return rep, err
	}
	for _, rot := range unfinished {
		if err := r.recoverOne(ctx, rot, &rep); err != nil {
			return rep, fmt.Errorf("recover rotation %s: %w", rot.ID, err)
		}
	}

	orphans, err := r.opts.Store.OrphanClaims(ctx, cutoff)
	if err != nil {
		return rep, err
	}
	for _, c := range orphans {
		released, err := r.releaseOrphan(ctx, c)
		if err != nil {
			return rep, err
		}
		if released {
			rep.Released++
			r.logger.Info("returned a stranded backup to the pool", "backup", c.Backup)
		}
	}
	return rep, r.restoreStranded(ctx, &rep)
}

// restoreStranded makes available the backups a crash inside ReleaseClaim
// left marked claimed with no claim.
func (r *Rotator) restoreStranded(ctx context.Context, rep *RecoveryReport) error {
	stranded, err := r.opts.Store.StrandedBackups(ctx)
	if err != nil {
		return err
	}
	for _, id := range stranded {
		if err := r.opts.Store.MakeAvailable(ctx, id); err != nil {
			return err
		}
		rep.Released++
		r.logger.Info("returned a backup marked claimed without a claim to the pool", "backup", id)
	}
	return nil
}

func (r *Rotator) recoverOne(ctx context.Context, rot store.Rotation, rep *RecoveryReport) error {
	backupID := rot.Backup
	if backupID == "" {
		var err error
		if backupID, err = r.opts.Store.ClaimOf(ctx, rot.ID); err != nil {
			return err
		}
	}
	if backupID == "" {
		rep.RolledBack++
		r.logger.Info("rolled back an unfinished rotation that claimed no backup", "key", rot.Key,
			"generation", rot.FromGeneration)
		return r.opts.Store.AbandonRotation(ctx, rot.ID)
	}
	if rot.Backup == "" {
		// The process stopped between the claim and the ledger naming it;
		// the ledger must still say which backup the key received.
		if err := r.opts.Store.MarkRotationClaimed(ctx, rot.ID, backupID); err != nil {
			return err
		}
	}

	b, err := r.opts.Store.Backup(ctx, backupID)
	if err != nil {
		return err
	}
	k, err := r.opts.Store.Key(ctx, rot.Key)
	if store.IsNotFound(err) {
		return r.dropForDeletedKey(ctx, rot, backupID)
	}
	if err != nil {
		return err
	}

	// Before the swap the key still holds the secret being retired; after
	// it, the retired record was written first and already holds it.
	oldSecret := k.Secret
	if k.Generation != rot.FromGeneration {
		oldSecret = ""
	}
	if err := r.completeRecovered(ctx, rot, b, oldSecret); err != nil {
		return err
	}
	rep.Completed++
	r.rotated(rot, rot.Provider)
	return nil
}

// completeRecovered runs the rest of the protocol; with oldSecret empty the
// swap is known done and only the backup and ledger remain.
func (r *Rotator) completeRecovered(ctx context.Context, rot store.Rotation, b store.Backup,
	oldSecret string) error {
	if oldSecret != "" {
		return r.complete(ctx, rot, b, oldSecret)
	}
	if err := r.opts.Store.MarkBackupUsed(ctx, b.ID, rot.Key); err != nil {
		return err
	}
	return r.opts.Store.FinishRotation(ctx, rot.ID)
}

// dropForDeletedKey ends a rotation whose key was deleted meanwhile: the
// backup it claimed goes back to the pool.
func (r *Rotator) dropForDeletedKey(ctx context.Context, rot store.Rotation,
	backupID string) error {
	if err := r.opts.Store.DeleteRotation(ctx, rot.ID); err != nil {
		return err
	}
	r.logger.Info("key deleted during its rotation, backup returned",
		"key", rot.Key, "backup", backupID)
	return r.opts.Store.ReleaseClaim(ctx, backupID, rot.ID)
}

// releaseOrphan returns a claimed backup to the pool unless a key already
// uses it.
func (r *Rotator) releaseOrphan(ctx context.Context, c store.Claim) (bool, error) {
	b, err := r.opts.Store.Backup(ctx, c.Backup)
	if err != nil {
		return false, err
	}
	if b.Status == store.BackupUsed {
		return false, nil
	}
	return true, r.opts.Store.ReleaseClaim(ctx, c.Backup, c.Rotation)
}
