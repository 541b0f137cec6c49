package collector

import (
	"context"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// pendingWrites holds what could not be written while the store was down.
type pendingWrites struct {
	history []store.HistoryPoint
	checks  map[string]store.CheckRecord // latest per key
	dropped int
}

// persist writes the cycle's spend history in one bulk write and each key's
// latest spend in another. While the store is down both are kept, the
// history up to a bound (oldest dropped first), and written when it returns.
func (c *Checker) persist(ctx context.Context, results []checked) {
	c.mu.Lock()
	c.queue(results)
	history, checks := c.pending.history, c.pending.checks
	c.mu.Unlock()
	if len(history) == 0 && len(checks) == 0 {
		return
	}

	// A stop cancels ctx, but the cycle's results must still be written.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.Timeout)
	defer cancel()
	recs := make([]store.CheckRecord, 0, len(checks))
	for _, r := range checks {
		recs = append(recs, r)
	}
	err := c.opts.Store.WriteHistory(wctx, history)
	if err == nil {
		err = c.opts.Store.RecordChecks(wctx, recs)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.fleet.StoreUp = false
		c.logger.Warn("store write failed, keeping history for later",
			"pending", len(c.pending.history), "err", err)
		return
	}
	// Drop only what was written: a point queued meanwhile stays.
	c.pending.history = c.pending.history[len(history):]
	for id, r := range checks {
		if c.pending.checks[id] == r {
			delete(c.pending.checks, id)
		}
	}
}

// Flush writes what is pending, for a clean stop, and returns how many
// history points could not be written.
func (c *Checker) Flush(ctx context.Context) int {
	c.persist(ctx, nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending.history)
}

// queue adds a cycle's results to the pending writes. Called with c.mu held.
func (c *Checker) queue(results []checked) {
	if c.pending.checks == nil {
		c.pending.checks = map[string]store.CheckRecord{}
	}
	for _, r := range results {
		if r.skipped {
			continue
		}
		p := store.HistoryPoint{
			Key: r.key.ID, Provider: r.key.Provider, Generation: r.key.Generation,
			Outcome: string(r.result.Outcome), At: r.at.UTC(),
		}
		if r.result.HasSpend {
			spend := r.result.SpendUSD
			p.SpendUSD = &spend
			c.pending.checks[r.key.ID] = store.CheckRecord{
				KeyID: r.key.ID, Generation: r.key.Generation, SpendUSD: spend, CheckedAt: p.At,
			}
		}
		if r.result.HasBudget {
			budget := r.result.BudgetUSD
			p.BudgetUSD = &budget
		}
		c.pending.history = append(c.pending.history, p)
	}
	if over := len(c.pending.history) - c.opts.HistoryBuffer; over > 0 {
		c.pending.dropped += over
		c.pending.history = append([]store.HistoryPoint(nil), c.pending.history[over:]...)
		c.logger.Warn("history buffer full, dropping the oldest points", "dropped", over)
	}
}

// refreshPool counts the available backups for the pool gauge.
func (c *Checker) refreshPool(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	counts, err := c.opts.Store.CountAvailableBackups(pctx)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.fleet.BackupsAvailable = counts
	c.mu.Unlock()
}
