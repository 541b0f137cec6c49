// Package collector runs the check cycle, keeps the latest result of every
// key in memory, and exposes it to Prometheus through a custom collector
// that never calls an upstream during a scrape.
package collector

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyspend/keyspend_exporter/internal/provider"
	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// ErrCycleRunning is returned by RunCycle when the previous cycle has not
// finished: cycles never overlap.
var ErrCycleRunning = errors.New("previous check cycle still running")

// Rotator is told the result of every check and may rotate the key.
type Rotator interface {
	Observe(ctx context.Context, o rotator.Observation) rotator.Result
}

// Options configure a Checker. Zero values are not defaults: main fills
// every field from the configuration.
type Options struct {
	Store  *store.Store
	Client *http.Client
	Logger *slog.Logger
	// Rotator may be nil, which turns rotation off.
	Rotator Rotator

	Interval       time.Duration
	IdleInterval   time.Duration
	ActiveWindow   time.Duration
	Timeout        time.Duration
	MaxConcurrency int
	// StoreTimeout bounds each store operation: loading keys, writing a
	// cycle's results, a rotation. Zero means Timeout.
	StoreTimeout time.Duration

	ThresholdUSD float64
	BudgetUSD    float64
	// BaseURLs maps a provider to the base URL of keys that have none.
	BaseURLs map[string]string

	ReplicaCount int
	ReplicaIndex int

	// HistoryBuffer bounds the history points kept while the store is down.
	HistoryBuffer int

	// AfterCycle, when set, runs after every cycle in Run: store upkeep
	// such as rotation recovery.
	AfterCycle func(ctx context.Context)

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Checker runs check cycles and holds the latest state of every key.
type Checker struct {
	opts    Options
	logger  *slog.Logger
	now     func() time.Time
	running atomic.Bool

	duration *prometheus.HistogramVec

	// writeMu keeps a stop's Flush from writing while a cycle writes.
	writeMu sync.Mutex

	mu       sync.Mutex
	keys     []store.Key // last list read from the store
	states   map[string]*KeyState
	inFlight map[string]bool
	checks   map[checkLabel]uint64
	fleet    Fleet
	pending  pendingWrites
}

type checkLabel struct {
	provider string
	outcome  provider.Outcome
}

// NewChecker builds a Checker. It does not start checking: call Run.
func NewChecker(opts Options) *Checker {
	c := &Checker{
		opts:     opts,
		logger:   opts.Logger,
		now:      opts.Now,
		states:   map[string]*KeyState{},
		inFlight: map[string]bool{},
		checks:   map[checkLabel]uint64{},
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "check_duration_seconds",
			Help:      "Time taken by one upstream spend check.",
			Buckets:   []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider"}),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.opts.ReplicaCount < 1 {
		c.opts.ReplicaCount = 1
	}
	if c.opts.StoreTimeout <= 0 {
		c.opts.StoreTimeout = c.opts.Timeout
	}
	return c
}

// Run checks the due keys at once, then again on every interval, until ctx
// is done. A tick that comes while a cycle runs is dropped.
func (c *Checker) Run(ctx context.Context) {
	ticker := time.NewTicker(c.opts.Interval)
	defer ticker.Stop()
	for {
		if _, err := c.RunCycle(ctx); err != nil && ctx.Err() == nil {
			c.logger.Warn("check cycle failed", "err", err)
		}
		if c.opts.AfterCycle != nil && ctx.Err() == nil {
			c.opts.AfterCycle(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// CycleReport sums up one cycle.
type CycleReport struct {
	Keys     int // keys loaded for this replica
	Checked  int // keys checked
	Duration time.Duration
	// CheckDuration is the part of Duration spent checking, from the first
	// check started to the last one finished; the rest is store work.
	CheckDuration time.Duration
}

// RunCycle runs one cycle: load keys, check every due key in its own
// goroutine, wait for all of them, and write the results to the store.
func (c *Checker) RunCycle(ctx context.Context) (CycleReport, error) {
	if !c.running.CompareAndSwap(false, true) {
		return CycleReport{}, ErrCycleRunning
	}
	defer c.running.Store(false)

	start := c.now()
	keys := c.loadKeys(ctx)
	due := c.pickDue(keys, start)
	checkStart := c.now()
	results := c.checkAll(ctx, due)
	checkTime := c.now().Sub(checkStart)
	c.persist(ctx, results)
	c.refreshPool(ctx)

	report := CycleReport{Keys: len(keys), Checked: len(due), Duration: c.now().Sub(start),
		CheckDuration: checkTime}
	c.mu.Lock()
	c.fleet.LastCycleDuration = report.Duration
	c.fleet.LastCycleKeys = report.Checked
	c.fleet.LastCycleAt = start
	c.fleet.CyclesDone++
	c.mu.Unlock()
	return report, nil
}

// loadKeys reads the keys of this replica's shard. When the store cannot be
// read the previous list is used, so checks go on during an outage.
func (c *Checker) loadKeys(ctx context.Context) []store.Key {
	lctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
	defer cancel()
	all, bad, err := c.opts.Store.LoadKeys(lctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			c.fleet.StoreUp = false
			c.logger.Warn("store unreachable, checking the last known keys", "keys", len(c.keys), "err", err)
		}
		return c.keys
	}
	c.fleet.StoreUp = true
	for _, e := range bad {
		c.logger.Warn("skipping key document", "err", e)
	}

	keys := c.usable(all)
	c.keys = keys
	c.syncStates(keys)
	return keys
}

// usable drops keys of other shards, duplicates and keys that cannot be
// checked, saying why for the last two.
func (c *Checker) usable(all []store.Key) []store.Key {
	seen := make(map[string]bool, len(all))
	keys := make([]store.Key, 0, len(all))
	for _, k := range all {
		if !c.inShard(k.ID) {
			continue
		}
		if seen[k.ID] {
			c.logger.Warn("skipping duplicate key document", "key", k.ID)
			continue
		}
		seen[k.ID] = true
		if _, ok := provider.Lookup(k.Provider); !ok {
			c.logger.Warn("skipping key with unknown provider", "key", k.ID, "provider", k.Provider)
			continue
		}
		if k.BaseURL == "" && c.opts.BaseURLs[k.Provider] == "" {
			c.logger.Warn("skipping key with no base URL and no default for its provider",
				"key", k.ID, "provider", k.Provider)
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// inShard tells whether this replica checks the key.
func (c *Checker) inShard(id string) bool {
	if c.opts.ReplicaCount <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32()%uint32(c.opts.ReplicaCount)) == c.opts.ReplicaIndex
}

// syncStates makes the in-memory states match the key list: new keys get a
// state, removed keys lose theirs, rotated keys start afresh. Called with
// c.mu held.
func (c *Checker) syncStates(keys []store.Key) {
	present := make(map[string]bool, len(keys))
	for _, k := range keys {
		present[k.ID] = true
		st, ok := c.states[k.ID]
		if !ok || st.Generation != k.Generation {
			st = newKeyState(k)
			c.states[k.ID] = st
		}
		st.Status = k.Status
		st.RotatedAt = k.RotatedAt
		st.ThresholdUSD = c.thresholdOf(k)
	}
	for id := range c.states {
		if !present[id] {
			delete(c.states, id)
		}
	}
}

func (c *Checker) thresholdOf(k store.Key) float64 {
	if k.ThresholdUSD != nil && *k.ThresholdUSD > 0 {
		return *k.ThresholdUSD
	}
	return c.opts.ThresholdUSD
}

// pickDue returns the keys to check now and marks them in flight. A key
// whose previous check is still running is never picked.
func (c *Checker) pickDue(keys []store.Key, now time.Time) []store.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	var due []store.Key
	for _, k := range keys {
		st := c.states[k.ID]
		if st == nil || c.inFlight[k.ID] {
			continue
		}
		st.Active = !k.LastUsedAt.IsZero() && now.Sub(k.LastUsedAt) <= c.opts.ActiveWindow
		st.Interval = c.opts.IdleInterval
		if st.Active {
			st.Interval = c.opts.Interval
		}
		// Half a tick of slack: a key checked a few milliseconds less than
		// an interval ago is still due on this tick, not the next one.
		if st.LastCheck.IsZero() || now.Sub(st.LastCheck) >= st.Interval-c.opts.Interval/2 {
			c.inFlight[k.ID] = true
			due = append(due, k)
		}
	}
	return due
}
