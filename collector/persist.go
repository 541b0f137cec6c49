package collector

import (
	"context"
	"fmt"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// pendingWrites holds the history that could not be written while the
// store was down.
type pendingWrites struct {
	history []store.HistoryPoint
	dropped int
}

// persist writes the cycle's spend history in one bulk write, and the
// latest spend of every key of this shard in one more. While the store is
// down the history is kept, up to a bound (oldest dropped first), and
// written when it returns; the latest spends are rebuilt from memory.
func (c *Checker) persist(ctx context.Context, results []checked) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	c.queue(results)
	history, recs := c.pending.history, c.lastChecks()
	c.mu.Unlock()
	if len(history) == 0 && len(recs) == 0 {
		return
	}

	// A stop cancels ctx, but the cycle's results must still be written.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.StoreTimeout)
	defer cancel()
	err := c.opts.Store.WriteHistory(wctx, history)
	if err == nil {
		shard := fmt.Sprintf("%d/%d", c.opts.ReplicaIndex, c.opts.ReplicaCount)
		err = c.opts.Store.RecordChecks(wctx, shard, recs)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.fleet.StoreUp = false
		c.logger.Warn("store write failed, keeping history for later",
			"pending", len(c.pending.history), "err", err)
		return
	}
	c.fleet.StoreUp = true
	// Drop only what was written: a point queued meanwhile stays.
	c.pending.history = c.pending.history[len(history):]
}

// lastChecks lists the latest spend of every key that has one. Called with
// c.mu held.
func (c *Checker) lastChecks() []store.CheckRecord {
	recs := make([]store.CheckRecord, 0, len(c.states))
	for _, st := range c.states {
		if st.HasSpend {
			recs = append(recs, store.CheckRecord{KeyID: st.ID, Generation: st.Generation,
				SpendUSD: st.SpendUSD, CheckedAt: st.SpendAt.UTC()})
		}
	}
	return recs
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
	pctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
	defer cancel()
	counts, err := c.opts.Store.CountAvailableBackups(pctx)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.fleet.BackupsAvailable = counts
	c.mu.Unlock()
}
