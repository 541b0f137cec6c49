package rotator_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

// The child process of TestKill9DuringRotations is this test binary run
// again with these variables set; TestMain hands it to runRotationChild.
const (
	childURIEnv = "KEYSPEND_TEST_CHILD_URI"
	childDBEnv  = "KEYSPEND_TEST_CHILD_DB"
	childGrace  = time.Second
)

// runRotationChild plays an exporter that does nothing but rotate: it
// recovers what the previous process left, then reports every key as
// breaching, again and again, until the pool is empty. The parent kills it
// with SIGKILL at a random moment.
func runRotationChild() int {
	names := store.DefaultNames
	names.Database = os.Getenv(childDBEnv)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(os.Getenv(childURIEnv), names, logger)
	if err != nil {
		return 2
	}
	ctx := context.Background()
	// The grace period lets writes the killed process left in flight at the
	// server land before its rotations are recovered, as in production.
	r := rotator.New(rotator.Options{Store: st, Logger: logger, Grace: childGrace,
		Owner: fmt.Sprint(os.Getpid())})
	if _, err := r.Recover(ctx); err != nil {
		return 3
	}
	for {
		keys, _, err := st.LoadKeys(ctx)
		if err != nil {
			return 4
		}
		exhausted := 0
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, k := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := r.Observe(ctx, rotator.Observation{Key: k, Reason: rotator.ReasonThreshold,
					SpendUSD: 9.99, ThresholdUSD: 9.95})
				if res.Exhausted {
					mu.Lock()
					exhausted++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if exhausted == len(keys) {
			return 0
		}
	}
}

// TestKill9DuringRotations kills a rotating process with SIGKILL over and
// over, restarting it on the same store each time, and then checks every
// guarantee: each backup used at most once, each key holding exactly one
// live secret, no retired secret lost, nothing left claimed.
func TestKill9DuringRotations(t *testing.T) {
	const keys, backups, maxKills = 30, 300, 40
	w := newWorld(t, keys, backups)
	kills, finished := 0, false
	for kills < maxKills && !finished {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childURIEnv+"="+storetest.Server(t).URI(), childDBEnv+"="+w.names.Database)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()

		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("rotation process failed on its own: %v", err)
			}
			finished = true
		case <-time.After(time.Duration(100+rand.IntN(400)) * time.Millisecond):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}

	// A last process recovers what the last kill left, as a restart would,
	// once the grace period has passed.
	time.Sleep(childGrace)
	r := w.rotator(w.replica(t), rotator.Options{Grace: childGrace})
	rep, err := r.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := checkConsistent(t, w, true)
	generations := int64(0)
	for _, k := range s.keys {
		generations += k.Generation
	}
	used := 0
	for _, b := range w.listBackups(t) {
		if b.Status == store.BackupUsed {
			used++
		}
	}
	t.Logf("%d SIGKILLs during rotations (pool drained: %v); %d rotations done, %d backups used; "+
		"final recovery completed %d, rolled back %d, released %d",
		kills, finished, generations, used, rep.Completed, rep.RolledBack, rep.Released)
	if kills < 10 {
		t.Errorf("only %d kills landed before the pool ran out: the test exercised too little", kills)
	}
	if int64(used) != generations {
		t.Errorf("%d backups used for %d rotations", used, generations)
	}
}
