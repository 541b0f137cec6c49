// Package provider asks an upstream LLM API proxy what one key has spent and
// classifies every answer into one of a small, fixed set of outcomes.
package provider

import (
	"context"
	"net/http"
	"sort"
	"time"
)

// Outcome is the bounded classification of one spend check. It is used as a
// metric label value, so the set must stay small and fixed.
type Outcome string

// The outcomes a check can have. Every response, and every failure to get
// one, maps to exactly one of these.
const (
	OutcomeOK             Outcome = "ok"
	OutcomeBudgetExceeded Outcome = "budget_exceeded"
	OutcomeInvalidKey     Outcome = "invalid_key"
	OutcomeRateLimited    Outcome = "rate_limited"
	OutcomeUpstreamError  Outcome = "upstream_error"
	OutcomeBadResponse    Outcome = "bad_response"
	OutcomeTimeout        Outcome = "timeout"
	OutcomeNetwork        Outcome = "network"
)

// Outcomes lists every outcome, in a stable order, so metrics can be
// pre-declared with zero values.
var Outcomes = []Outcome{
	OutcomeOK, OutcomeBudgetExceeded, OutcomeInvalidKey, OutcomeRateLimited,
	OutcomeUpstreamError, OutcomeBadResponse, OutcomeTimeout, OutcomeNetwork,
}

// Result is what one check learned about one key.
type Result struct {
	Outcome Outcome

	// HasSpend is true when the upstream reported a usable spend figure;
	// only then are SpendUSD (and the budget fields) meaningful.
	HasSpend bool
	SpendUSD float64

	// HasBudget is true when the upstream reported a cap of the key's own.
	// False means not reported: the caller applies its configured default,
	// unless Unlimited says the upstream has no cap at all for the key.
	HasBudget bool
	BudgetUSD float64
	Unlimited bool

	// BudgetExceeded is true when the upstream's data or its error says the
	// key's budget is used up.
	BudgetExceeded bool

	// RetryAfter is the upstream's Retry-After hint on a rate-limited
	// answer, zero when absent.
	RetryAfter time.Duration

	// Err explains a non-ok outcome in one line. It never contains the
	// key's secret: upstream text is redacted before it lands here.
	Err error
}

// Provider checks the spend of one key against one kind of upstream.
type Provider interface {
	// Name is the provider's label value, e.g. "litellm".
	Name() string
	// Check asks baseURL about the key whose secret is given. It never
	// returns an error of its own: every failure is a classified Result.
	Check(ctx context.Context, client *http.Client, baseURL, secret string) Result
}

var registry = map[string]Provider{}

// Register makes p available under p.Name(). It is called from init in the
// file of each provider.
func Register(p Provider) {
	registry[p.Name()] = p
}

// Lookup returns the provider registered under name.
func Lookup(name string) (Provider, bool) {
	p, ok := registry[name]
	return p, ok
}

// Names lists the registered providers, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
