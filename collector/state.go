package collector

import (
	"sort"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/provider"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// KeyState is what the exporter knows about one key right now.
type KeyState struct {
	ID         string
	Provider   string
	Status     string
	Generation int64
	Active     bool
	Interval   time.Duration

	ThresholdUSD float64
	HasSpend     bool
	SpendUSD     float64
	// SpendAt is when SpendUSD was learned: a check of this process, or
	// one of an earlier run read back from the store.
	SpendAt time.Time
	// HasBudget is false when the key has no cap at all.
	HasBudget bool
	BudgetUSD float64

	Up          bool
	LastOutcome provider.Outcome
	LastCheck   time.Time
	LastSuccess time.Time
	RotatedAt   time.Time
}

// newKeyState starts a key's state from its document. The spend stored by
// an earlier run is shown until the first check, so a restart does not
// blank the dashboards; up stays 0 until a check succeeds.
func newKeyState(k store.Key) *KeyState {
	st := &KeyState{
		ID: k.ID, Provider: k.Provider, Status: k.Status, Generation: k.Generation,
		RotatedAt: k.RotatedAt,
	}
	if k.LastSpendUSD != nil && !k.LastCheckedAt.IsZero() {
		st.HasSpend, st.SpendUSD, st.SpendAt = true, *k.LastSpendUSD, k.LastCheckedAt
	}
	return st
}

// Fleet is the state of the exporter as a whole.
type Fleet struct {
	StoreUp           bool
	CyclesDone        int
	LastCycleAt       time.Time
	LastCycleDuration time.Duration
	LastCycleKeys     int
	// BackupsAvailable counts available backups per provider; nil until
	// the store has been read once.
	BackupsAvailable map[string]int
	// PendingHistory counts points waiting for the store to come back.
	PendingHistory int
}

// Snapshot is a consistent copy of the checker's state for one scrape or
// one page view.
type Snapshot struct {
	Keys   []KeyState // sorted by ID
	Checks map[string]map[provider.Outcome]uint64
	Fleet  Fleet
}

// Snapshot copies the current state. It never waits for a check.
func (c *Checker) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{
		Keys:   make([]KeyState, 0, len(c.states)),
		Checks: map[string]map[provider.Outcome]uint64{},
		Fleet:  c.fleet,
	}
	for _, st := range c.states {
		s.Keys = append(s.Keys, *st)
	}
	sort.Slice(s.Keys, func(i, j int) bool { return s.Keys[i].ID < s.Keys[j].ID })
	for l, n := range c.checks {
		if s.Checks[l.provider] == nil {
			s.Checks[l.provider] = map[provider.Outcome]uint64{}
		}
		s.Checks[l.provider][l.outcome] = n
	}
	s.Fleet.BackupsAvailable = make(map[string]int, len(c.fleet.BackupsAvailable))
	for p, n := range c.fleet.BackupsAvailable {
		s.Fleet.BackupsAvailable[p] = n
	}
	s.Fleet.PendingHistory = len(c.pending.history)
	return s
}

// Ready reports whether the store was reached and a first cycle finished.
func (c *Checker) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fleet.StoreUp && c.fleet.CyclesDone > 0
}
