package provider

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps an upstream's Retry-After hint, so a garbage value
// cannot park a key for years.
const maxRetryAfter = time.Hour

// maxQuotedBytes is how much of a body that is not a JSON error is looked at
// for a message. Redact cuts it shorter still.
const maxQuotedBytes = 4 << 10

// apiError is what an upstream said when it refused: LiteLLM and OpenRouter
// send {"error": {"message", "type", "param", "code"}}, a framework in front
// of them may send {"detail": "..."}, a reverse proxy an HTML page. Every
// field is plain text, whatever JSON type it came as.
type apiError struct {
	message string
	kind    string // the "type" field
	code    string
}

// errorOutcome picks the outcome for a non-2xx answer of one provider.
type errorOutcome func(status int, e apiError) Outcome

// classifyError turns a non-2xx answer into a failed Result.
func classifyError(status int, header http.Header, body []byte, secret string,
	outcomeOf errorOutcome) Result {
	e := parseAPIError(body)
	outcome := outcomeOf(status, e)

	text := fmt.Sprintf("upstream answered %d %s", status, outcome)
	if e.message != "" {
		text += ": " + e.message[:min(len(e.message), maxQuotedBytes)]
	}
	r := failure(outcome, secret, nil, "%s", text)
	r.BudgetExceeded = outcome == OutcomeBudgetExceeded
	if outcome == OutcomeRateLimited {
		r.RetryAfter = retryAfter(header, time.Now())
	}
	return r
}

// parseAPIError reads whatever error shape body has. It never fails: a body
// that is no known shape becomes the message itself.
func parseAPIError(body []byte) apiError {
	var envelope struct {
		Error  json.RawMessage `json:"error"`
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &envelope) != nil {
		return apiError{message: quoteBody(body)}
	}

	var fields struct {
		Message json.RawMessage `json:"message"`
		Type    json.RawMessage `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	isObject := len(envelope.Error) > 0 && envelope.Error[0] == '{'
	if isObject && json.Unmarshal(envelope.Error, &fields) == nil {
		return apiError{
			message: plain(fields.Message), kind: plain(fields.Type), code: plain(fields.Code),
		}
	}
	if msg := cmp.Or(plain(envelope.Error), plain(envelope.Detail)); msg != "" {
		return apiError{message: msg}
	}
	return apiError{message: quoteBody(body)}
}

// plain renders a JSON value as text: a string without its quotes, null or
// absent as empty, anything else as its JSON.
func plain(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	return string(raw)
}

// quoteBody returns what is worth quoting of a body that is no JSON error:
// the title of an HTML page, or the start of the text.
func quoteBody(body []byte) string {
	body = body[:min(len(body), maxQuotedBytes)]
	lower := bytes.ToLower(body)
	start := bytes.Index(lower, []byte("<title>"))
	end := bytes.Index(lower, []byte("</title>"))
	if start >= 0 && end > start {
		return string(body[start+len("<title>") : end])
	}
	return string(body)
}

// isBudgetError reports whether e says the key's budget is used up, in any
// of the wordings LiteLLM has used.
func isBudgetError(e apiError) bool {
	msg := strings.ToLower(e.message)
	return strings.EqualFold(e.kind, "budget_exceeded") ||
		strings.EqualFold(e.code, "budget_exceeded") ||
		strings.Contains(msg, "budget has been exceeded") ||
		strings.Contains(msg, "exceededbudget")
}

// isKeyError reports whether e names the key itself as the problem.
func isKeyError(e apiError) bool {
	for _, s := range []string{e.kind, e.code} {
		switch strings.ToLower(s) {
		case "auth_error", "expired_key", "token_not_found_in_db", "invalid_api_key":
			return true
		}
	}
	return false
}

// retryAfter reads the Retry-After header, in seconds or as an HTTP date,
// as a wait from now. Absent, unreadable or past, it is zero.
func retryAfter(header http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(header.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var wait time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		wait = time.Duration(min(max(secs, 0), int64(maxRetryAfter/time.Second))) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		wait = at.Sub(now)
	}
	return min(max(wait, 0), maxRetryAfter)
}

// badResponse builds the Result for an answer whose content is unusable.
func badResponse(secret string, err error) Result {
	var cause error
	if errors.Is(err, ErrBudgetMisconfigured) {
		cause = ErrBudgetMisconfigured
	}
	return failure(OutcomeBadResponse, secret, cause, "%v", err)
}

// isSuccess reports whether status is 2xx, the only answers that carry
// spend.
func isSuccess(status int) bool { return status >= 200 && status <= 299 }

// isServerError reports whether status is 5xx.
func isServerError(status int) bool { return status >= 500 && status <= 599 }
