package rotator_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

// crashAfter runs one rotation of key-000 that stops after step, as if the
// process died there.
func crashAfter(t *testing.T, w *world, step string) {
	t.Helper()
	dead := w.rotator(w.replica(t), rotator.Options{Owner: "dead",
		AfterStep: func(s string) bool { return s == step }})
	res := dead.Observe(context.Background(), breach(w.key(t, "key-000")))
	if res != (rotator.Result{}) {
		t.Fatalf("rotation stopped after %s: %+v, want no result", step, res)
	}
	if c := dead.Counts(); len(c.Failures) != 0 || len(c.Rotations) != 0 {
		t.Fatalf("a stopped rotation was counted: %+v", c)
	}
}

// restart opens a new client and a new rotator with no grace, as the
// process coming back up, and runs its recovery.
func restart(t *testing.T, w *world) (*rotator.Rotator, rotator.RecoveryReport) {
	t.Helper()
	r := w.rotator(w.replica(t), rotator.Options{Owner: "restarted"})
	rep, err := r.Recover(context.Background())
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	return r, rep
}

func TestCrashAtEveryStep(t *testing.T) {
	finished := rotator.RecoveryReport{Completed: 1}
	undone := rotator.RecoveryReport{RolledBack: 1}
	cases := map[string]struct {
		want   rotator.RecoveryReport
		rotate bool // whether the rotation is carried to the end
	}{
		rotator.StepBegun:   {undone, false},
		rotator.StepClaimed: {finished, true},
		rotator.StepMarked:  {finished, true},
		rotator.StepRetired: {finished, true},
		rotator.StepSwapped: {finished, true},
		rotator.StepUsed:    {finished, true},
		rotator.StepDone:    {rotator.RecoveryReport{}, true},
	}
	if len(cases) != len(rotator.Steps) {
		t.Fatalf("%d cases for %d steps", len(cases), len(rotator.Steps))
	}
	for _, step := range rotator.Steps {
		tc, ok := cases[step]
		if !ok {
			t.Fatalf("no case for step %s", step)
		}
		t.Run(step, func(t *testing.T) {
			w := newWorld(t, 1, 2)
			crashAfter(t, w, step)
			r, rep := restart(t, w)
			if rep != tc.want {
				t.Errorf("recovery report %+v, want %+v", rep, tc.want)
			}
			s := checkConsistent(t, w, true)
			if tc.rotate {
				checkFinished(t, w, s, r, rep.Completed)
			} else {
				checkUndone(t, s)
			}
			checkRotatesAgain(t, w, r)
		})
	}
}

// checkFinished: key-000 serves a backup at generation 1, its old secret
// kept, and a rotation completed by recovery is counted and logged.
func checkFinished(t *testing.T, w *world, s state, r *rotator.Rotator, completed int) {
	t.Helper()
	k := s.keys["key-000"]
	if k.Generation != 1 || k.Secret == w.keys["key-000"] {
		t.Errorf("key at generation %d, original secret %v; want the backup's at 1",
			k.Generation, k.Secret == w.keys["key-000"])
	}
	rid := store.RotationID("key-000", 0)
	if s.ledger[rid].State != store.RotationDone || s.retired[rid] != w.keys["key-000"] {
		t.Errorf("ledger %s in state %q, original secret kept: %v",
			rid, s.ledger[rid].State, s.retired[rid] == w.keys["key-000"])
	}
	used := 0
	for _, b := range s.backups {
		if b.Status == store.BackupUsed {
			used++
		}
	}
	if used != 1 {
		t.Errorf("%d backups used, want 1", used)
	}
	label := rotator.RotationLabel{Key: "key-000", Provider: provider,
		Reason: rotator.ReasonThreshold}
	if n := r.Counts().Rotations[label]; n != uint64(completed) {
		t.Errorf("restarted rotator counted %d rotations, want %d", n, completed)
	}
	if n := len(w.logs.lines(`msg="rotated key"`, "key=key-000 ", "generation=1")); n != completed {
		t.Errorf("%d rotation lines after recovery, want %d", n, completed)
	}
}

// checkUndone: the key keeps its secret at generation 0 and the pool is
// whole again.
func checkUndone(t *testing.T, s state) {
	t.Helper()
	if k := s.keys["key-000"]; k.Generation != 0 {
		t.Errorf("key at generation %d, want 0", k.Generation)
	}
	for id, b := range s.backups {
		if b.Status != store.BackupAvailable {
			t.Errorf("backup %s is %s, want available", id, b.Status)
		}
	}
	if len(s.ledger) != 0 {
		t.Errorf("ledger kept %d entries of a rotation rolled back", len(s.ledger))
	}
}

// checkRotatesAgain: a second recovery finds nothing, and the key's next
// breach rotates it normally.
func checkRotatesAgain(t *testing.T, w *world, r *rotator.Rotator) {
	t.Helper()
	rep, err := r.Recover(context.Background())
	if err != nil || rep != (rotator.RecoveryReport{}) {
		t.Errorf("second recovery: %+v, %v; want nothing to do", rep, err)
	}
	k := w.key(t, "key-000")
	res := r.Observe(context.Background(), breach(k))
	if !res.Rotated || res.Generation != k.Generation+1 {
		t.Errorf("breach after recovery: %+v, want rotated to generation %d", res, k.Generation+1)
	}
	checkConsistent(t, w, true)
}

func TestRecoveryLeavesAYoungRotationAlone(t *testing.T) {
	w := newWorld(t, 1, 2)
	crashAfter(t, w, rotator.StepMarked)
	before := w.snapshot(t)

	r := w.rotator(w.replica(t), rotator.Options{Owner: "other", Grace: time.Hour})
	rep, err := r.Recover(context.Background())
	if err != nil || rep != (rotator.RecoveryReport{}) {
		t.Fatalf("recovery within the grace period: %+v, %v; want nothing done", rep, err)
	}
	if after := w.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Fatalf("recovery within the grace period changed the store")
	}
	s := checkConsistent(t, w, false)
	entry := s.ledger[store.RotationID("key-000", 0)]
	if k := s.keys["key-000"]; k.Generation != 0 || entry.State != store.RotationClaimed {
		t.Fatalf("key at generation %d, ledger %q; want the rotation left as it was",
			k.Generation, entry.State)
	}

	// Once the grace period has passed, the rotation is finished.
	later := w.rotator(w.replica(t), rotator.Options{Owner: "other", Grace: time.Hour,
		Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	if rep, err := later.Recover(context.Background()); err != nil || rep.Completed != 1 {
		t.Fatalf("recovery after the grace period: %+v, %v; want one completed", rep, err)
	}
	if s := checkConsistent(t, w, true); s.keys["key-000"].Generation != 1 {
		t.Errorf("key at generation %d, want 1", s.keys["key-000"].Generation)
	}
}

func TestRecoveryOfARotationWhoseKeyWasDeleted(t *testing.T) {
	w := newWorld(t, 2, 2)
	crashAfter(t, w, rotator.StepMarked)
	deleteKey(t, w, "key-000")

	r, rep := restart(t, w)
	if rep != (rotator.RecoveryReport{}) {
		t.Errorf("recovery report %+v, want nothing completed or rolled back", rep)
	}
	s := checkConsistent(t, w, true)
	for id, b := range s.backups {
		if b.Status != store.BackupAvailable {
			t.Errorf("backup %s is %s, want it back in the pool", id, b.Status)
		}
	}
	if len(s.ledger) != 0 {
		t.Errorf("ledger kept %d entries for a deleted key", len(s.ledger))
	}
	if res := r.Observe(context.Background(), breach(w.key(t, "key-001"))); !res.Rotated {
		t.Errorf("the returned backup did not serve the next breach: %+v", res)
	}
	checkConsistent(t, w, true)
}

// deleteKey removes a key document the way an operator would.
func deleteKey(t *testing.T, w *world, id string) {
	t.Helper()
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(storetest.Server(t).URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(ctx) }()
	res, err := c.Database(w.names.Database).Collection(w.names.Keys).
		DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil || res.DeletedCount != 1 {
		t.Fatalf("delete key %s: %v", id, err)
	}
}

// Replicas run recovery after every cycle, so a rotation left by a dead
// process is usually found by several of them at the same moment.
func TestReplicasRecoverTheSameCrashesAtOnce(t *testing.T) {
	w := newWorld(t, len(rotator.Steps), 2*len(rotator.Steps))
	keys := w.loadKeys(t)
	for i, step := range rotator.Steps {
		dead := w.rotator(w.replica(t), rotator.Options{Owner: "dead",
			AfterStep: func(s string) bool { return s == step }})
		k := keys[fmt.Sprintf("key-%03d", i)]
		if res := dead.Observe(context.Background(), breach(k)); res != (rotator.Result{}) {
			t.Fatalf("rotation stopped after %s: %+v", step, res)
		}
	}

	replicas := []*rotator.Rotator{
		w.rotator(w.replica(t), rotator.Options{Owner: "a"}),
		w.rotator(w.replica(t), rotator.Options{Owner: "b"}),
		w.rotator(w.replica(t), rotator.Options{Owner: "c"}),
	}
	var wg sync.WaitGroup
	for _, r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Recover(context.Background()); err != nil {
				t.Errorf("recover: %v", err)
			}
		}()
	}
	wg.Wait()

	s := checkConsistent(t, w, true)
	for i, step := range rotator.Steps {
		want := int64(1)
		if step == rotator.StepBegun {
			want = 0
		}
		if k := s.keys[fmt.Sprintf("key-%03d", i)]; k.Generation != want {
			t.Errorf("crash after %s: key at generation %d, want %d", step, k.Generation, want)
		}
	}
	// Every key, the one rolled back included, rotates on its next breach.
	for _, k := range w.loadKeys(t) {
		if res := replicas[0].Observe(context.Background(), breach(k)); !res.Rotated {
			t.Errorf("key %s after recovery: %+v, want rotated", k.ID, res)
		}
	}
	checkConsistent(t, w, true)
}
