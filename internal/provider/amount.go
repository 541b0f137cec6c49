package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// maxUSD is the largest dollar amount taken as real. No key spends or is
// capped at a trillion dollars; a bigger figure is garbage from the upstream.
const maxUSD = 1e12

// ErrBudgetMisconfigured is the cause of a bad_response whose upstream
// reports a budget of zero or less for the key: the key's own cap is broken
// and no percentage of it means anything.
var ErrBudgetMisconfigured = errors.New("budget is misconfigured")

// amount is a dollar figure as upstreams send it: a JSON number or a numeric
// string. A JSON null or a missing field leaves a *amount nil; anything else
// that is not a number leaves valid false, so the field can be named in the
// error instead of failing the whole decode.
type amount struct {
	value float64
	valid bool
}

// UnmarshalJSON accepts 7.12 and "7.12" alike.
func (a *amount) UnmarshalJSON(data []byte) error {
	text := string(data)
	if strings.HasPrefix(text, `"`) {
		if err := json.Unmarshal(data, &text); err != nil {
			return err
		}
		text = strings.TrimSpace(text)
	}

	v, err := strconv.ParseFloat(text, 64)
	// Out of range parses to an infinity, which the checks below reject
	// by name; any other error means it was no number at all.
	*a = amount{value: v, valid: err == nil || errors.Is(err, strconv.ErrRange)}
	return nil
}

// usable returns the amount named field if it is a finite figure between 0
// and maxUSD.
func usable(field string, a *amount) (float64, error) {
	switch {
	case a == nil:
		return 0, fmt.Errorf("%s is missing", field)
	case !a.valid:
		return 0, fmt.Errorf("%s is not a number", field)
	case math.IsNaN(a.value) || math.IsInf(a.value, 0):
		return 0, fmt.Errorf("%s %v is not finite", field, a.value)
	case a.value < 0:
		return 0, fmt.Errorf("%s %v is negative", field, a.value)
	case a.value > maxUSD:
		return 0, fmt.Errorf("%s %v is beyond any real amount", field, a.value)
	}
	if a.value == 0 {
		return 0, nil // turns -0 into 0
	}
	return a.value, nil
}

// budget returns the cap named field, which must be above zero: a key whose
// cap is zero or negative is misconfigured, and is never divided by.
func budget(field string, a *amount) (float64, error) {
	v, err := usable(field, a)
	if err != nil {
		if a != nil && a.valid && a.value < 0 {
			return 0, fmt.Errorf("%s %v: key %w", field, a.value, ErrBudgetMisconfigured)
		}
		return 0, err
	}
	if v == 0 {
		return 0, fmt.Errorf("%s 0: key %w", field, ErrBudgetMisconfigured)
	}
	return v, nil
}

// budgetResult judges a usable spend against the key's own cap.
func budgetResult(spend, limit float64) Result {
	r := Result{
		Outcome:  OutcomeOK,
		HasSpend: true, SpendUSD: spend,
		HasBudget: true, BudgetUSD: limit,
	}
	if spend >= limit {
		r.Outcome = OutcomeBudgetExceeded
		r.BudgetExceeded = true
		r.Err = fmt.Errorf("spend $%.2f reached the key's budget $%.2f", spend, limit)
	}
	return r
}
