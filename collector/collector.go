package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyspend/keyspend_exporter/internal/provider"
	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

const namespace = "keyspend"

// RotationCounter is the part of the rotator the collector reads.
type RotationCounter interface {
	Counts() rotator.Counts
}

// Collector exposes the checker's latest snapshot as const metrics. A scrape
// reads memory only; it never calls an upstream or the store.
type Collector struct {
	checker   *Checker
	rotations RotationCounter
	poolLow   int
}

// New builds the collector. rotations may be nil when rotation is off.
func New(checker *Checker, rotations RotationCounter, poolLow int) *Collector {
	return &Collector{checker: checker, rotations: rotations, poolLow: poolLow}
}

var keyLabels = []string{"key", "provider"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

var (
	spendDesc     = desc("key_spend_usd", "Spend of the key in its current budget window, in USD.", keyLabels...)
	budgetDesc    = desc("key_budget_usd", "Budget of the key in USD; absent when the key is unlimited.", keyLabels...)
	thresholdDesc = desc("key_threshold_usd", "Spend in USD at which the key is rotated.", keyLabels...)
	upDesc        = desc("key_up", "Whether the last check of the key got a spend figure (1) or not (0).", keyLabels...)
	successDesc   = desc("key_last_success_timestamp_seconds",
		"Unix time of the last check that got a spend figure.", keyLabels...)
	activeDesc   = desc("key_active", "Whether the key was used within the active window (1) or is idle (0).", keyLabels...)
	intervalDesc = desc("key_check_interval_seconds", "How often the key is checked now.", keyLabels...)
	genDesc      = desc("key_generation", "Rotations applied to the key over its life.", keyLabels...)
	rotatedDesc  = desc("key_last_rotation_timestamp_seconds", "Unix time of the key's last rotation.", keyLabels...)
	rotationDesc = desc("key_rotations_total", "Rotations of the key done by this exporter, by reason.",
		"key", "provider", "reason")
	checksDesc        = desc("checks_total", "Upstream spend checks, by outcome.", "provider", "outcome")
	cycleDurationDesc = desc("last_cycle_duration_seconds", "Duration of the last check cycle.")
	cycleKeysDesc     = desc("last_cycle_keys", "Keys checked in the last cycle.")
	cycleTimeDesc     = desc("last_cycle_timestamp_seconds", "Unix time the last check cycle started.")
	keysDesc          = desc("keys", "Keys monitored by this exporter, by status.", "status")
	storeUpDesc       = desc("store_up", "Whether the store answered the last read or write (1) or not (0).")
	backupsDesc       = desc("backup_keys_available", "Backup keys available in the pool.", "provider")
	poolLowDesc       = desc("backup_keys_low_watermark", "Pool size under which the backup pool counts as low.")
	failuresDesc      = desc("rotation_failures_total", "Rotation attempts that failed, by reason.", "reason")
	pendingDesc       = desc("history_pending_points", "Spend history points waiting for the store.")
)

// Describe sends every descriptor, and the check duration histogram's.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		spendDesc, budgetDesc, thresholdDesc, upDesc, successDesc, activeDesc, intervalDesc,
		genDesc, rotatedDesc, rotationDesc, checksDesc, cycleDurationDesc, cycleKeysDesc,
		cycleTimeDesc, keysDesc, storeUpDesc, backupsDesc, poolLowDesc, failuresDesc, pendingDesc,
	} {
		ch <- d
	}
	c.checker.duration.Describe(ch)
}

// Collect sends the metrics of the latest snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.checker.Snapshot()
	var counts rotator.Counts
	if c.rotations != nil {
		counts = c.rotations.Counts()
	}
	for i := range snap.Keys {
		collectKey(ch, &snap.Keys[i], counts)
	}
	c.collectFleet(ch, snap, counts)
	c.checker.duration.Collect(ch)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

func collectKey(ch chan<- prometheus.Metric, k *KeyState, counts rotator.Counts) {
	l := []string{k.ID, k.Provider}
	if k.HasSpend {
		gauge(ch, spendDesc, k.SpendUSD, l...)
		if k.HasBudget {
			gauge(ch, budgetDesc, k.BudgetUSD, l...)
		}
	}
	gauge(ch, thresholdDesc, k.ThresholdUSD, l...)
	gauge(ch, upDesc, boolean(k.Up), l...)
	if !k.LastSuccess.IsZero() {
		gauge(ch, successDesc, unix(k.LastSuccess), l...)
	}
	gauge(ch, activeDesc, boolean(k.Active), l...)
	if k.Interval > 0 {
		gauge(ch, intervalDesc, k.Interval.Seconds(), l...)
	}
	gauge(ch, genDesc, float64(k.Generation), l...)
	if !k.RotatedAt.IsZero() {
		gauge(ch, rotatedDesc, unix(k.RotatedAt), l...)
	}
	for _, reason := range rotator.Reasons {
		n := counts.Rotations[rotator.RotationLabel{Key: k.ID, Provider: k.Provider, Reason: reason}]
		counter(ch, rotationDesc, float64(n), k.ID, k.Provider, reason)
	}
}

func (c *Collector) collectFleet(ch chan<- prometheus.Metric, snap Snapshot,
	counts rotator.Counts) {
	for p, outcomes := range snap.Checks {
		for _, o := range provider.Outcomes {
			counter(ch, checksDesc, float64(outcomes[o]), p, string(o))
		}
	}
	if snap.Fleet.CyclesDone > 0 {
		gauge(ch, cycleDurationDesc, snap.Fleet.LastCycleDuration.Seconds())
		gauge(ch, cycleKeysDesc, float64(snap.Fleet.LastCycleKeys))
		gauge(ch, cycleTimeDesc, unix(snap.Fleet.LastCycleAt))
	}

	byStatus := map[string]int{}
	for _, k := range snap.Keys {
		byStatus[k.Status]++
	}
	for _, s := range store.Statuses {
		gauge(ch, keysDesc, float64(byStatus[s]), s)
	}

	gauge(ch, storeUpDesc, boolean(snap.Fleet.StoreUp))
	for p, n := range snap.Fleet.BackupsAvailable {
		gauge(ch, backupsDesc, float64(n), p)
	}
	c.collectPoolFloor(ch, snap)
	for _, r := range rotator.FailureReasons {
		counter(ch, failuresDesc, float64(counts.Failures[r]), r)
	}
	gauge(ch, pendingDesc, float64(snap.Fleet.PendingHistory))
}

// collectPoolFloor exports the low-pool floor, and a zero pool gauge for a
// provider that has keys but no backups at all, so "pool empty" alerts see
// a 0 rather than nothing.
func (c *Collector) collectPoolFloor(ch chan<- prometheus.Metric, snap Snapshot) {
	gauge(ch, poolLowDesc, float64(c.poolLow))
	if snap.Fleet.BackupsAvailable == nil {
		return
	}
	seen := map[string]bool{}
	for _, k := range snap.Keys {
		if _, ok := snap.Fleet.BackupsAvailable[k.Provider]; !ok && !seen[k.Provider] {
			seen[k.Provider] = true
			gauge(ch, backupsDesc, 0, k.Provider)
		}
	}
}
