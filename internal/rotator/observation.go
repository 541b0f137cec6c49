// Package rotator replaces a key whose spend crossed its threshold, or whose
// budget is exceeded, with a key from the backup pool.
package rotator

import "github.com/keyspend/keyspend_exporter/internal/store"

// Rotation reasons, used as metric label values.
const (
	ReasonThreshold      = "threshold"
	ReasonBudgetExceeded = "budget_exceeded"
)

// Reasons lists the rotation reasons in a stable order.
var Reasons = []string{ReasonThreshold, ReasonBudgetExceeded}

// Observation is the result of one check of one key as the rotator needs it.
type Observation struct {
	Key store.Key
	// Reason is the breach the check found, or "" when the key is fine or
	// the check learned nothing.
	Reason       string
	SpendUSD     float64
	ThresholdUSD float64
}

// Result says what the rotator did with an observation.
type Result struct {
	// Rotated is true when the key now holds a new secret at Generation.
	Rotated    bool
	Generation int64
	// Exhausted is true when the key breached and the pool had no backup.
	Exhausted bool
}

// RotationLabel identifies one series of the per-key rotation counter.
type RotationLabel struct {
	Key, Provider, Reason string
}

// Counts are the rotator's counters since start.
type Counts struct {
	Rotations map[RotationLabel]uint64
	// Failures counts failed rotation attempts by reason.
	Failures map[string]uint64
}

// Failure reasons, used as metric label values.
const (
	FailurePoolEmpty  = "pool_empty"
	FailureStoreError = "store_error"
)

// FailureReasons lists the failure reasons in a stable order.
var FailureReasons = []string{FailurePoolEmpty, FailureStoreError}
