package rotator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// state is everything the consistency check reads back from the store.
type state struct {
	keys    map[string]store.Key
	backups map[string]store.Backup
	ledger  map[string]store.Rotation // by rotation id
	retired map[string]string         // retired secret by rotation id
	orphans []store.Claim             // claims whose rotation entry is gone
}

func (w *world) state(t *testing.T) state {
	t.Helper()
	ctx := context.Background()
	s := state{keys: w.loadKeys(t), backups: w.listBackups(t),
		ledger: map[string]store.Rotation{}, retired: map[string]string{}}
	rots, err := w.st.Rotations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rots {
		s.ledger[r.ID] = r
		secret, ok, err := w.st.RetiredSecret(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			s.retired[r.ID] = secret
		}
	}
	// A cutoff in the future lists every claim without a rotation entry.
	if s.orphans, err = w.st.OrphanClaims(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return s
}

// holders returns the keys whose current or retired secrets include secret.
func (s state) holders(secret string) []string {
	var out []string
	for id, k := range s.keys {
		held := k.Secret == secret
		for g := int64(0); g < k.Generation && !held; g++ {
			r, ok := s.retired[store.RotationID(id, g)]
			held = ok && r == secret
		}
		if held {
			out = append(out, id)
		}
	}
	return out
}

// checkConsistent fails the test unless the store satisfies every
// guarantee of the rotation protocol. With settled false, a rotation may
// still be under way (the newest ledger entry of a key, not yet done).
func checkConsistent(t *testing.T, w *world, settled bool) state {
	t.Helper()
	s := w.state(t)
	for _, msg := range append(append(checkBackups(w, s, settled), checkKeys(w, s)...),
		checkLedger(w, s, settled)...) {
		t.Error(msg)
	}
	if t.Failed() {
		t.Logf("warnings logged:\n%s", strings.Join(w.logs.lines("level=WARN"), "\n"))
		t.FailNow()
	}
	return s
}

// checkBackups: a used backup is held by exactly the key it names, a
// backup not used by no key at all, and none stays claimed once settled.
func checkBackups(w *world, s state, settled bool) []string {
	var errs []string
	for id, b := range s.backups {
		if b.Secret != w.backups[id] {
			errs = append(errs, fmt.Sprintf("backup %s: secret changed", id))
		}
		holders := s.holders(b.Secret)
		switch {
		case b.Status == store.BackupUsed && (len(holders) != 1 || holders[0] != b.UsedBy):
			errs = append(errs, fmt.Sprintf("backup %s used by %q, held by %v",
				id, b.UsedBy, holders))
		case b.Status != store.BackupUsed && len(holders) != 0:
			errs = append(errs, fmt.Sprintf("backup %s is %s but held by %v",
				id, b.Status, holders))
		case settled && b.Status == store.BackupClaimed:
			errs = append(errs, fmt.Sprintf("backup %s stranded in state claimed", id))
		}
	}
	if settled && len(s.orphans) != 0 {
		errs = append(errs, fmt.Sprintf("claims without a rotation: %v", s.orphans))
	}
	return errs
}

// checkKeys: every key holds one live secret, its original at generation
// 0 and at a later generation the backup its last rotation claimed; no
// secret is live in two keys.
func checkKeys(w *world, s state) []string {
	var errs []string
	live := map[string]string{}
	for id, k := range s.keys {
		if other, dup := live[k.Secret]; dup {
			errs = append(errs, fmt.Sprintf("keys %s and %s hold the same secret", id, other))
		}
		live[k.Secret] = id
		if k.Generation == 0 {
			if k.Secret != w.keys[id] {
				errs = append(errs, fmt.Sprintf("key %s at generation 0 lost its secret", id))
			}
			continue
		}
		last := s.ledger[store.RotationID(id, k.Generation-1)]
		b, ok := s.backups[last.Backup]
		if !ok || k.Secret != b.Secret || b.Status != store.BackupUsed || b.UsedBy != id {
			errs = append(errs, fmt.Sprintf("key %s at generation %d does not hold backup %q "+
				"(status %q, used by %q)", id, k.Generation, last.Backup, b.Status, b.UsedBy))
		}
	}
	return errs
}

// checkLedger: one entry per rotated generation of each key and none
// beyond, each done entry with its retired secret, the secret the key held
// at that generation.
func checkLedger(w *world, s state, settled bool) []string {
	var errs []string
	seen := 0
	for id, k := range s.keys {
		for g := int64(0); g <= k.Generation; g++ {
			rid := store.RotationID(id, g)
			r, ok := s.ledger[rid]
			switch {
			case !ok && g < k.Generation:
				errs = append(errs, fmt.Sprintf("%s rotated without a ledger entry", rid))
			case !ok:
			case g == k.Generation && (settled || r.State == store.RotationDone):
				errs = append(errs, fmt.Sprintf("ledger entry %s (%s) for the live generation",
					rid, r.State))
			case g < k.Generation:
				errs = append(errs, checkRetired(w, s, r)...)
			}
			if ok {
				seen++
			}
		}
	}
	if seen != len(s.ledger) {
		errs = append(errs, fmt.Sprintf("%d ledger entries, %d belong to a key generation",
			len(s.ledger), seen))
	}
	return errs
}

// checkRetired checks one rotation that moved its key past its generation.
func checkRetired(w *world, s state, r store.Rotation) []string {
	want := w.keys[r.Key]
	if r.FromGeneration > 0 {
		prev := s.ledger[store.RotationID(r.Key, r.FromGeneration-1)]
		want = w.backups[prev.Backup]
	}
	got, ok := s.retired[r.ID]
	switch {
	case r.State != store.RotationDone:
		return []string{fmt.Sprintf("rotation %s applied but left %s", r.ID, r.State)}
	case !ok:
		return []string{fmt.Sprintf("rotation %s done without a retired secret", r.ID)}
	case got != want:
		return []string{fmt.Sprintf("rotation %s retired the wrong secret", r.ID)}
	case r.Backup == "":
		return []string{fmt.Sprintf("rotation %s done without naming its backup", r.ID)}
	}
	return nil
}
