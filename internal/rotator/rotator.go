package rotator

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// Steps of the rotation protocol, in order. Each is written to the store
// before the next starts, so a restart can tell how far a rotation got.
const (
	StepBegun   = "begun"   // ledger entry inserted
	StepClaimed = "claimed" // claim on a backup inserted
	StepMarked  = "marked"  // ledger entry names the backup
	StepRetired = "retired" // old secret kept
	StepSwapped = "swapped" // key holds the new secret, next generation
	StepUsed    = "used"    // backup marked used by the key
	StepDone    = "done"    // ledger entry closed
)

// Steps lists the protocol steps in order.
var Steps = []string{StepBegun, StepClaimed, StepMarked, StepRetired, StepSwapped, StepUsed, StepDone}

// errStopped is returned when the test hook stops a rotation mid-way.
var errStopped = errors.New("rotation stopped by hook")

// Options configure a Rotator.
type Options struct {
	Store  *store.Store
	Logger *slog.Logger
	// DryRun logs and counts what would happen and changes nothing.
	DryRun bool
	// Confirmations is the number of consecutive breaching checks needed.
	Confirmations int
	// Grace is the age after which an unfinished rotation is recovered by
	// any replica. It must exceed the time one rotation can take.
	Grace time.Duration
	// Owner names this process in ledger entries.
	Owner string
	// Parallel bounds the rotations this process runs at once.
	Parallel int
	// PoolRetry is how long a provider's pool is taken to stay empty before
	// a breaching key tries it again.
	PoolRetry time.Duration
	// AfterStep, when set, is called after each protocol step; returning
	// true stops the rotation there as a crash would. Tests only.
	AfterStep func(step string) bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Rotator replaces breached keys. Its safety comes from unique inserts in
// the store, so any number of Rotators over one database are safe together.
type Rotator struct {
	opts   Options
	logger *slog.Logger
	now    func() time.Time
	sem    chan struct{}

	mu        sync.Mutex
	streaks   map[string]int       // consecutive breaches per key generation
	warned    map[string]bool      // exhaustion already logged per key generation
	dryRun    map[string]bool      // dry-run rotation already counted per key generation
	emptyPool map[string]time.Time // when a provider's pool was last found empty
	counts    Counts
}

// New builds a Rotator.
func New(opts Options) *Rotator {
	if opts.Confirmations < 1 {
		opts.Confirmations = 1
	}
	if opts.Parallel < 1 {
		opts.Parallel = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Rotator{
		opts: opts, logger: opts.Logger, now: opts.Now,
		sem:       make(chan struct{}, opts.Parallel),
		streaks:   map[string]int{},
		warned:    map[string]bool{},
		dryRun:    map[string]bool{},
		emptyPool: map[string]time.Time{},
		counts:    Counts{Rotations: map[RotationLabel]uint64{}, Failures: map[string]uint64{}},
	}
}

// Counts returns a copy of the counters.
func (r *Rotator) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := Counts{
		Rotations: make(map[RotationLabel]uint64, len(r.counts.Rotations)),
		Failures:  make(map[string]uint64, len(r.counts.Failures)),
	}
	for k, v := range r.counts.Rotations {
		c.Rotations[k] = v
	}
	for k, v := range r.counts.Failures {
		c.Failures[k] = v
	}
	return c
}

// Observe takes the result of one check. A breach confirmed by enough
// consecutive checks is rotated before Observe returns.
func (r *Rotator) Observe(ctx context.Context, o Observation) Result {
	id := store.RotationID(o.Key.ID, o.Key.Generation)
	if !r.confirmed(id, o.Reason) {
		return Result{}
	}
	if r.opts.DryRun {
		r.dryRunOnce(id, o)
		return Result{}
	}

	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	case <-ctx.Done():
		return Result{}
	}
	var res Result
	var err error
	if r.poolKnownEmpty(o.Key.Provider) {
		res, err = r.emptyPoolAgain(ctx, o)
	} else {
		res, err = r.rotate(ctx, o)
	}
	if err != nil && !errors.Is(err, errStopped) {
		r.fail(FailureStoreError)
		r.logger.Warn("rotation failed, it will be recovered or retried",
			"key", o.Key.ID, "reason", o.Reason, "err", err)
	}
	return res
}

// confirmed counts consecutive breaches of a key generation.
func (r *Rotator) confirmed(id, reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reason == "" {
		delete(r.streaks, id)
		return false
	}
	r.streaks[id]++
	return r.streaks[id] >= r.opts.Confirmations
}

func (r *Rotator) dryRunOnce(id string, o Observation) {
	r.mu.Lock()
	first := !r.dryRun[id]
	if first {
		r.dryRun[id] = true
		r.counts.Rotations[RotationLabel{o.Key.ID, o.Key.Provider, o.Reason}]++
	}
	r.mu.Unlock()
	if first {
		r.logger.Info("dry run: would rotate key", "key", o.Key.ID, "reason", o.Reason,
			"spend_usd", round2(o.SpendUSD), "threshold_usd", round2(o.ThresholdUSD),
			"generation", o.Key.Generation)
	}
}

func (r *Rotator) poolKnownEmpty(provider string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.emptyPool[provider]
	return ok && r.now().Sub(t) < r.opts.PoolRetry
}

func (r *Rotator) fail(reason string) {
	r.mu.Lock()
	r.counts.Failures[reason]++
	r.mu.Unlock()
}

// step reports a finished step to the test hook.
func (r *Rotator) step(name string) error {
	if r.opts.AfterStep != nil && r.opts.AfterStep(name) {
		return errStopped
	}
	return nil
}

// rotation is the ledger entry for rotating the observed key generation.
func (r *Rotator) rotation(o Observation) store.Rotation {
	k := o.Key
	return store.Rotation{
		ID: store.RotationID(k.ID, k.Generation), Key: k.ID, Provider: k.Provider,
		FromGeneration: k.Generation, Reason: o.Reason, SpendUSD: o.SpendUSD,
		ThresholdUSD: o.ThresholdUSD, Owner: r.opts.Owner, StartedAt: r.now().UTC(),
	}
}

// rotate runs the protocol for one key generation.
func (r *Rotator) rotate(ctx context.Context, o Observation) (Result, error) {
	k := o.Key
	rot := r.rotation(o)
	ok, err := r.opts.Store.BeginRotation(ctx, rot)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		// This generation is being or was rotated elsewhere.
		return r.reapply(ctx, rot)
	}
	if err := r.step(StepBegun); err != nil {
		return Result{}, err
	}

	b, found, err := r.claim(ctx, rot)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return r.exhausted(ctx, o, rot)
	}
	if err := r.step(StepClaimed); err != nil {
		return Result{}, err
	}
	if err := r.opts.Store.MarkRotationClaimed(ctx, rot.ID, b.ID); err != nil {
		return Result{}, err
	}
	if err := r.step(StepMarked); err != nil {
		return Result{}, err
	}
	if err := r.complete(ctx, rot, b, k.Secret); err != nil {
		return Result{}, err
	}
	r.rotated(rot, k.Provider)
	return Result{Rotated: true, Generation: k.Generation + 1}, nil
}

// reapply swaps again a rotation that is done while its key is still at the
// generation it replaced. On FerretDB every update rewrites the whole key
// document, so a write that read the key just before the swap (the proxy's
// last_used_at, a check record) puts the old secret back; without this the
// key would keep its spent secret and its generation could never be rotated.
func (r *Rotator) reapply(ctx context.Context, rot store.Rotation) (Result, error) {
	done, found, err := r.opts.Store.Rotation(ctx, rot.ID)
	if err != nil || !found || done.State != store.RotationDone {
		return Result{}, err
	}
	k, err := r.opts.Store.Key(ctx, rot.Key)
	if err != nil || k.Generation != rot.FromGeneration {
		return Result{}, err
	}

	b, err := r.opts.Store.Backup(ctx, done.Backup)
	if err != nil {
		return Result{}, err
	}
	if err := r.opts.Store.SwapSecret(ctx, rot.Key, rot.FromGeneration, b); err != nil {
		return Result{}, err
	}
	r.logger.Warn("key had lost its new secret to a concurrent write, swapped again",
		"key", rot.Key, "backup", b.ID, "generation", rot.FromGeneration+1)
	return Result{Rotated: true, Generation: rot.FromGeneration + 1}, nil
}

// claim takes one available backup of the key's provider. Candidates are
// tried in random order so concurrent rotations rarely collide; the claim
// insert decides who wins each one.
func (r *Rotator) claim(ctx context.Context, rot store.Rotation) (store.Backup, bool, error) {
	for round := 0; round < 5; round++ {
		candidates, err := r.opts.Store.AvailableBackups(ctx, rot.Provider, 64)
		if err != nil {
			return store.Backup{}, false, err
		}
		if len(candidates) == 0 {
			return store.Backup{}, false, nil
		}
		rand.Shuffle(len(candidates), func(i, j int) {
			candidates[i], candidates[j] = candidates[j], candidates[i]
		})
		for _, b := range candidates {
			ok, err := r.opts.Store.ClaimBackup(ctx, b.ID, rot.ID)
			if err != nil {
				return store.Backup{}, false, err
			}
			if ok {
				return b, true, nil
			}
		}
	}
	// Every candidate of every round was already claimed: the status field
	// lags behind claims being made right now, and no backup is free.
	return store.Backup{}, false, nil
}

// complete finishes a rotation whose backup is claimed. Every step is
// idempotent, so recovery runs the same code after a crash.
func (r *Rotator) complete(ctx context.Context, rot store.Rotation, b store.Backup,
	oldSecret string) error {
	if err := r.opts.Store.RetireSecret(ctx, rot, oldSecret); err != nil {
		return err
	}
	if err := r.step(StepRetired); err != nil {
		return err
	}
	if err := r.opts.Store.SwapSecret(ctx, rot.Key, rot.FromGeneration, b); err != nil {
		return err
	}
	if err := r.step(StepSwapped); err != nil {
		return err
	}
	if err := r.opts.Store.MarkBackupUsed(ctx, b.ID, rot.Key); err != nil {
		return err
	}
	if err := r.step(StepUsed); err != nil {
		return err
	}
	if err := r.opts.Store.FinishRotation(ctx, rot.ID); err != nil {
		return err
	}
	return r.step(StepDone)
}

func (r *Rotator) rotated(rot store.Rotation, provider string) {
	r.mu.Lock()
	r.counts.Rotations[RotationLabel{rot.Key, provider, rot.Reason}]++
	delete(r.streaks, rot.ID)
	r.mu.Unlock()
	r.logger.Info("rotated key", "key", rot.Key, "reason", rot.Reason,
		"spend_usd", round2(rot.SpendUSD), "threshold_usd", round2(rot.ThresholdUSD),
		"generation", rot.FromGeneration+1)
}

// exhausted remembers that the provider's pool is empty, marks the key
// exhausted and gives the ledger entry back.
func (r *Rotator) exhausted(ctx context.Context, o Observation, rot store.Rotation) (Result,
	error) {
	r.mu.Lock()
	r.emptyPool[o.Key.Provider] = r.now()
	r.mu.Unlock()
	return r.giveBack(ctx, o, rot)
}

// emptyPoolAgain handles a breach while the provider's pool is known to be
// empty, without asking the pool again. The ledger entry is taken first so
// that the status write cannot meet another replica's rotation of the same
// generation: on FerretDB an update rewrites the whole document, and a
// status write that read the key before a swap would undo the swap.
func (r *Rotator) emptyPoolAgain(ctx context.Context, o Observation) (Result, error) {
	rot := r.rotation(o)
	r.mu.Lock()
	warned := r.warned[rot.ID]
	r.mu.Unlock()
	if warned {
		return Result{Exhausted: true}, nil
	}
	ok, err := r.opts.Store.BeginRotation(ctx, rot)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		// This generation is being or was rotated elsewhere.
		return r.reapply(ctx, rot)
	}
	return r.giveBack(ctx, o, rot)
}

// giveBack marks the key exhausted while its ledger entry is still held,
// then removes the entry so the generation is rotated once backups arrive.
func (r *Rotator) giveBack(ctx context.Context, o Observation, rot store.Rotation) (Result, error) {
	res := r.markExhausted(ctx, o, rot.ID)
	return res, r.opts.Store.AbandonRotation(ctx, rot.ID)
}

// markExhausted records, once per key generation, that the key breached
// with no backup to replace it: a status in the store, a failure count and
// one warning. Later breaches of the same generation change nothing, and the
// pool is not queried again by every key until PoolRetry has passed.
func (r *Rotator) markExhausted(ctx context.Context, o Observation, id string) Result {
	r.mu.Lock()
	first := !r.warned[id]
	r.warned[id] = true
	r.mu.Unlock()
	if !first {
		return Result{Exhausted: true}
	}

	err := r.opts.Store.SetKeyStatus(ctx, o.Key.ID, o.Key.Generation, store.StatusExhausted)
	if err != nil {
		r.logger.Warn("could not mark key exhausted", "key", o.Key.ID, "err", err)
	}
	r.fail(FailurePoolEmpty)
	r.logger.Warn("backup pool empty, key left in place", "key", o.Key.ID,
		"provider", o.Key.Provider, "reason", o.Reason, "spend_usd", round2(o.SpendUSD))
	return Result{Exhausted: true}
}

func round2(v float64) float64 {
	return float64(int64(v*100+0.5)) / 100
}
