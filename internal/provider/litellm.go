package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

func init() {
	Register(liteLLM{})
}

// liteLLM checks keys of a LiteLLM proxy, and of OpenHands' hosted proxy,
// which is LiteLLM.
type liteLLM struct{}

// liteLLMKey is the body of GET /key/info; only the fields that matter are
// read.
type liteLLMKey struct {
	Info *liteLLMSpend `json:"info"`
}

// liteLLMSpend is the "info" object of a key.
type liteLLMSpend struct {
	Spend     *amount `json:"spend"`
	MaxBudget *amount `json:"max_budget"`
}

// Name returns "litellm".
func (liteLLM) Name() string { return "litellm" }

// Check asks {baseURL}/key/info about the calling key.
func (liteLLM) Check(ctx context.Context, client *http.Client, baseURL, secret string) Result {
	return check(ctx, client, endpoint(baseURL, "key/info"), secret, parseLiteLLM)
}

// parseLiteLLM classifies one answer of /key/info.
func parseLiteLLM(status int, header http.Header, body []byte, secret string) Result {
	if !isSuccess(status) {
		return classifyError(status, header, body, secret, liteLLMErrorOutcome)
	}

	var key liteLLMKey
	if err := json.Unmarshal(body, &key); err != nil {
		return badResponse(secret, fmt.Errorf("decode key info: %w", err))
	}
	if key.Info == nil {
		return badResponse(secret, fmt.Errorf("key info has no info object"))
	}

	spend, err := usable("spend", key.Info.Spend)
	if err != nil {
		return badResponse(secret, err)
	}
	// A null max_budget is the usual case behind OpenHands, which caps the
	// team instead of the key.
	if key.Info.MaxBudget == nil {
		return Result{Outcome: OutcomeOK, HasSpend: true, SpendUSD: spend}
	}
	limit, err := budget("max_budget", key.Info.MaxBudget)
	if err != nil {
		return badResponse(secret, err)
	}
	return budgetResult(spend, limit)
}

// liteLLMErrorOutcome classifies a LiteLLM refusal. A budget error wins over
// the status, since LiteLLM has sent it as 400, 401 and 429.
func liteLLMErrorOutcome(status int, e apiError) Outcome {
	switch {
	case isServerError(status):
		return OutcomeUpstreamError
	case status >= 400 && isBudgetError(e):
		return OutcomeBudgetExceeded
	case status == http.StatusTooManyRequests:
		return OutcomeRateLimited
	case status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusNotFound:
		return OutcomeInvalidKey
	case status >= 400 && status <= 499 && isKeyError(e):
		// Older versions answered 400 for an expired key.
		return OutcomeInvalidKey
	}
	return OutcomeBadResponse
}
