package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
)

func init() {
	Register(openRouter{})
}

// openRouter checks keys of OpenRouter.
type openRouter struct{}

// openRouterBody is the body of GET /api/v1/key.
type openRouterBody struct {
	Data *openRouterKey `json:"data"`
}

// openRouterKey holds the spend fields of a key. A null limit means the key
// is unlimited.
type openRouterKey struct {
	Usage          *amount         `json:"usage"`
	Limit          *amount         `json:"limit"`
	LimitRemaining *amount         `json:"limit_remaining"`
	LimitReset     json.RawMessage `json:"limit_reset"`
}

// Name returns "openrouter".
func (openRouter) Name() string { return "openrouter" }

// Check asks {baseURL}/api/v1/key about the calling key.
func (openRouter) Check(ctx context.Context, client *http.Client, baseURL, secret string) Result {
	return check(ctx, client, endpoint(baseURL, "api/v1/key"), secret, parseOpenRouter)
}

// parseOpenRouter classifies one answer of /api/v1/key.
func parseOpenRouter(status int, header http.Header, body []byte, secret string) Result {
	if !isSuccess(status) {
		return classifyError(status, header, body, secret, openRouterErrorOutcome)
	}

	var b openRouterBody
	if err := json.Unmarshal(body, &b); err != nil {
		return badResponse(secret, fmt.Errorf("decode key: %w", err))
	}
	if b.Data == nil {
		return badResponse(secret, fmt.Errorf("key has no data object"))
	}
	return openRouterResult(b.Data, secret)
}

// openRouterResult judges a decoded key. A missing usage is a bad answer,
// never a spend of zero.
func openRouterResult(k *openRouterKey, secret string) Result {
	usage, err := usable("usage", k.Usage)
	if err != nil {
		return badResponse(secret, err)
	}
	if k.Limit == nil {
		return Result{Outcome: OutcomeOK, HasSpend: true, SpendUSD: usage, Unlimited: true}
	}
	limit, err := budget("limit", k.Limit)
	if err != nil {
		return badResponse(secret, err)
	}

	spend := usage
	// With a reset window the limit applies to the window, not to lifetime
	// usage, and only limit_remaining tells what the window has spent.
	if plain(k.LimitReset) != "" && k.LimitRemaining != nil {
		if spend, err = windowSpend(limit, k.LimitRemaining); err != nil {
			return badResponse(secret, err)
		}
	}
	return budgetResult(spend, limit)
}

// windowSpend is the spend of the current window: limit minus what remains.
// Remaining may be negative on an overspent key, which is a spend past the
// limit. A remaining above the limit by more than float rounding is garbage.
func windowSpend(limit float64, remaining *amount) (float64, error) {
	left := remaining.value
	if !remaining.valid || math.IsNaN(left) || math.Abs(left) > maxUSD {
		return 0, fmt.Errorf("limit_remaining is not a usable number")
	}

	spend := limit - left
	if spend < 0 && -spend <= 1e-9*math.Max(1, limit) {
		spend = 0 // float rounding on a key that has spent nothing
	}
	if spend < 0 {
		return 0, fmt.Errorf("limit_remaining %v exceeds limit %v", left, limit)
	}
	return spend, nil
}

// openRouterErrorOutcome classifies an OpenRouter refusal. 404 is not the
// key's fault there: the path is fixed, so it means a wrong base URL.
func openRouterErrorOutcome(status int, _ apiError) Outcome {
	switch {
	case isServerError(status):
		return OutcomeUpstreamError
	case status == http.StatusPaymentRequired:
		return OutcomeBudgetExceeded
	case status == http.StatusTooManyRequests:
		return OutcomeRateLimited
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return OutcomeInvalidKey
	}
	return OutcomeBadResponse
}
