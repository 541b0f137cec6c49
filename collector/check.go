package collector

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/provider"
	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// checked is the outcome of one key's check, kept for the store write at
// the end of the cycle.
type checked struct {
	key    store.Key
	result provider.Result
	at     time.Time
	// skipped is true for a check cut short by a stop: it says nothing
	// about the key, so it is neither counted nor written.
	skipped bool
}

// checkAll starts one goroutine per key, all at once, and waits for every
// one. Each check has its own timeout, so the wait is bounded by the slowest
// single check, not by the number of keys. With a concurrency cap, that many
// workers share the keys instead, so a capped cycle of 10,000 keys does not
// park 10,000 goroutines.
func (c *Checker) checkAll(ctx context.Context, keys []store.Key) []checked {
	out := make([]checked, len(keys))
	workers := len(keys)
	if c.opts.MaxConcurrency > 0 && c.opts.MaxConcurrency < workers {
		workers = c.opts.MaxConcurrency
	}
	next := make(chan int, len(keys))
	for i := range keys {
		next <- i
	}
	close(next)

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = c.checkOne(ctx, keys[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// checkOne asks the upstream about one key, records the answer and hands a
// breach to the rotator.
func (c *Checker) checkOne(ctx context.Context, k store.Key) checked {
	defer c.done(k.ID)
	if ctx.Err() != nil {
		return checked{key: k, skipped: true}
	}

	p, _ := provider.Lookup(k.Provider)
	base := k.BaseURL
	if base == "" {
		base = c.opts.BaseURLs[k.Provider]
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	start := c.now()
	res := p.Check(cctx, c.opts.Client, base, k.Secret)
	cancel()
	if ctx.Err() != nil {
		return checked{key: k, skipped: true}
	}
	took := c.now().Sub(start)
	c.duration.WithLabelValues(k.Provider).Observe(took.Seconds())

	obs := c.record(k, res, start)
	if c.opts.Rotator != nil {
		// A rotation that has begun is carried through a stop rather than
		// left for recovery: its steps are few and bounded by the timeout.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.StoreTimeout)
		c.applyRotation(k, c.opts.Rotator.Observe(rctx, obs))
		cancel()
	}
	return checked{key: k, result: res, at: start}
}

func (c *Checker) done(id string) {
	c.mu.Lock()
	delete(c.inFlight, id)
	c.mu.Unlock()
}

// record folds a result into the key's state and logs it. An error keeps
// the last good spend: only a fresh figure replaces it.
func (c *Checker) record(k store.Key, res provider.Result, at time.Time) rotator.Observation {
	c.mu.Lock()
	c.checks[checkLabel{k.Provider, res.Outcome}]++
	st := c.states[k.ID]
	if st == nil || st.Generation != k.Generation {
		// The key was removed or rotated while this check ran.
		c.mu.Unlock()
		return rotator.Observation{Key: k}
	}
	st.LastCheck = at
	st.LastOutcome = res.Outcome
	st.Up = res.HasSpend
	if res.HasSpend {
		st.HasSpend, st.SpendUSD, st.LastSuccess, st.SpendAt = true, res.SpendUSD, at, at
		st.HasBudget, st.BudgetUSD = c.budgetOf(k, res)
	}
	obs := rotator.Observation{Key: k, SpendUSD: st.SpendUSD, ThresholdUSD: st.ThresholdUSD}
	obs.Reason = breach(res, st)
	line := st.logLine()
	c.mu.Unlock()

	if res.HasSpend {
		c.logger.Info(line)
	}
	if res.Outcome != provider.OutcomeOK {
		c.logger.Warn("check failed", "key", k.ID, "provider", k.Provider,
			"outcome", string(res.Outcome), "err", errText(res.Err))
	}
	return obs
}

// budgetOf picks the budget that applies: the key's own override, then the
// upstream's figure, then the configured default, unless the upstream says
// the key is unlimited.
func (c *Checker) budgetOf(k store.Key, res provider.Result) (bool, float64) {
	switch {
	case k.BudgetUSD != nil && *k.BudgetUSD > 0:
		return true, *k.BudgetUSD
	case res.HasBudget:
		return true, res.BudgetUSD
	case res.Unlimited:
		return false, 0
	}
	return true, c.opts.BudgetUSD
}

// breach says why the key must be rotated, or "" when it need not be.
func breach(res provider.Result, st *KeyState) string {
	switch {
	case res.BudgetExceeded:
		return rotator.ReasonBudgetExceeded
	case !res.HasSpend:
		return ""
	case st.HasBudget && st.SpendUSD >= st.BudgetUSD:
		return rotator.ReasonBudgetExceeded
	case st.SpendUSD >= st.ThresholdUSD:
		return rotator.ReasonThreshold
	}
	return ""
}

// applyRotation resets a rotated key's state until its next check: the old
// secret's spend says nothing about the new one.
func (c *Checker) applyRotation(k store.Key, r rotator.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.states[k.ID]
	if st == nil {
		return
	}
	switch {
	case r.Rotated:
		// The pool gauge is recounted at the end of the cycle; until then
		// it must not show the backup this rotation took as available.
		if n := c.fleet.BackupsAvailable[k.Provider]; n > 0 {
			c.fleet.BackupsAvailable[k.Provider] = n - 1
		}
		k.Generation = r.Generation
		k.Status = store.StatusActive
		k.RotatedAt = c.now()
		// The spend read with the key belongs to the secret just retired.
		k.LastSpendUSD, k.LastCheckedAt = nil, time.Time{}
		fresh := newKeyState(k)
		fresh.ThresholdUSD, fresh.Active, fresh.Interval = st.ThresholdUSD, st.Active, st.Interval
		c.states[k.ID] = fresh
	case r.Exhausted:
		st.Status = store.StatusExhausted
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// logLine is the line operators grep for. Called with c.mu held.
func (st *KeyState) logLine() string {
	percent := 0.0
	if st.ThresholdUSD > 0 {
		percent = st.SpendUSD / st.ThresholdUSD * 100
	}
	return fmt.Sprintf("💵 [SpendChecker] %s: $%.2f / $%.2f (%.1f%%)",
		st.ID, st.SpendUSD, st.ThresholdUSD, percent)
}
