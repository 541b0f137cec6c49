package provider

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// keyInfo is a full /key/info body with the given raw JSON for spend and
// max_budget; the fields around them must be ignored.
func keyInfo(spend, maxBudget string) string {
	return `{"key":"5f0c9e1","info":{"key_alias":"team-a-1","spend":` + spend +
		`,"max_budget":` + maxBudget + `,"budget_duration":"30d",` +
		`"budget_reset_at":"2026-12-31T00:00:00Z","expires":null,"blocked":null,` +
		`"soft_budget_cooldown":false,"models":[],"metadata":{"team":"a"}}}`
}

// liteLLMError is LiteLLM's error body; every argument is raw JSON.
func liteLLMError(message, kind, param, code string) string {
	return `{"error":{"message":` + message + `,"type":` + kind + `,"param":` + param +
		`,"code":` + code + `}}`
}

// authMessage is LiteLLM's answer to an unknown key, which quotes the key.
const authMessage = `"Authentication Error, Invalid proxy server token passed. ` +
	`Received API Key = ` + testSecret + `, Key Hash (Token) =4f2fe0c6b5, ` +
	`Unable to find token in cache or LiteLLM_VerificationTokenTable"`

func TestLiteLLMFaults(t *testing.T) {
	cases := append(transportCases(), liteLLMBodyCases()...)
	runFaults(t, liteLLM{}, append(cases, liteLLMErrorCases()...))
}

// liteLLMBodyCases are answers of 200 and what each must give.
func liteLLMBodyCases() []faultCase {
	return []faultCase{
		{name: "spend and budget", target: reply(200, keyInfo("7.1234567", "10.0")),
			want: okBudget(7.1234567, 10)},
		{name: "max_budget null", target: reply(200, keyInfo("7.12", "null")),
			want: okSpend(7.12)},
		{name: "max_budget missing", target: reply(200, `{"info":{"spend":3}}`),
			want: okSpend(3)},
		{name: "spend zero", target: reply(200, keyInfo("0", "10")), want: okBudget(0, 10)},
		{name: "spend as string", target: reply(200, keyInfo(`"7.12"`, `"10"`)),
			want: okBudget(7.12, 10)},
		{name: "spend null", target: reply(200, keyInfo("null", "10")),
			want: outcome(OutcomeBadResponse), errHas: "spend is missing"},
		{name: "spend missing", target: reply(200, `{"info":{"max_budget":10}}`),
			want: outcome(OutcomeBadResponse), errHas: "spend is missing"},
		{name: "spend negative", target: reply(200, keyInfo("-1.5", "10")),
			want: outcome(OutcomeBadResponse), errHas: "spend -1.5 is negative"},
		{name: "spend NaN token", target: reply(200, keyInfo("NaN", "10")),
			want: outcome(OutcomeBadResponse), errHas: "decode key info: invalid character 'N'"},
		{name: "spend NaN string", target: reply(200, keyInfo(`"NaN"`, "10")),
			want: outcome(OutcomeBadResponse), errHas: "spend NaN is not finite"},
		{name: "spend Infinity string", target: reply(200, keyInfo(`"-Infinity"`, "10")),
			want: outcome(OutcomeBadResponse), errHas: "spend -Inf is not finite"},
		{name: "spend 1e308", target: reply(200, keyInfo("1e308", "10")),
			want: outcome(OutcomeBadResponse), errHas: "spend 1e+308 is beyond any real amount"},
		{name: "spend 1e400", target: reply(200, keyInfo("1e400", "null")),
			want: outcome(OutcomeBadResponse), errHas: "spend +Inf is not finite"},
		{name: "spend not a number", target: reply(200, keyInfo(`"7,12"`, "10")),
			want: outcome(OutcomeBadResponse), errHas: "spend is not a number"},
		{name: "spend a boolean", target: reply(200, keyInfo("true", "10")),
			want: outcome(OutcomeBadResponse), errHas: "spend is not a number"},
		{name: "budget zero", target: reply(200, keyInfo("1", "0")),
			want: outcome(OutcomeBadResponse), errHas: "max_budget 0: key budget is misconfigured"},
		{name: "budget negative", target: reply(200, keyInfo("1", "-5")),
			want:   outcome(OutcomeBadResponse),
			errHas: "max_budget -5: key budget is misconfigured"},
		{name: "budget NaN string", target: reply(200, keyInfo("1", `"NaN"`)),
			want: outcome(OutcomeBadResponse), errHas: "max_budget NaN is not finite"},
		{name: "spend over budget", target: reply(200, keyInfo("10.51", "10.0")),
			want:   overBudget(10.51, 10),
			errHas: "spend $10.51 reached the key's budget $10.00"},
		{name: "spend at budget", target: reply(200, keyInfo("10", "10")),
			want: overBudget(10, 10), errHas: "reached the key's budget"},
		{name: "wrong shape array", target: reply(200, `[{"spend":1}]`),
			want: outcome(OutcomeBadResponse), errHas: "cannot unmarshal array"},
		{name: "wrong shape no info", target: reply(200, `{"data":{"spend":1}}`),
			want: outcome(OutcomeBadResponse), errHas: "key info has no info object"},
		{name: "wrong shape info string", target: reply(200, `{"info":"`+testSecret+`"}`),
			want: outcome(OutcomeBadResponse), errHas: "cannot unmarshal string"},
		{name: "trailing garbage", target: reply(200, keyInfo("1", "2")+"}"),
			want: outcome(OutcomeBadResponse), errHas: "after top-level value"},
	}
}

// liteLLMErrorCases are LiteLLM's refusals, in every shape it has sent.
func liteLLMErrorCases() []faultCase {
	return []faultCase{
		{name: "401 unknown key quoting the key", target: reply(401,
			liteLLMError(authMessage, `"auth_error"`, `"`+testSecret+`"`, `"401"`)),
			want: outcome(OutcomeInvalidKey),
			errHas: "upstream answered 401 invalid_key: Authentication Error, " +
				"Invalid proxy server token passed. Received API Key = [REDACTED]"},
		{name: "401 quoting the key without its prefix", target: reply(401, liteLLMError(
			`"Invalid key sk-...`+testSecret[3:]+`"`, `"auth_error"`,
			`"`+testSecret[3:]+`"`, "401")),
			want:   outcome(OutcomeInvalidKey),
			errHas: "401 invalid_key: Invalid key sk-...[REDACTED]"},
		{name: "401 expired key", target: reply(401, liteLLMError(
			`"Authentication Error - Expired Key. Key Expiry time 2025-01-01"`,
			`"expired_key"`, "null", `"401"`)),
			want: outcome(OutcomeInvalidKey), errHas: "401 invalid_key: Authentication Error"},
		{name: "400 expired key, older versions", target: reply(400, liteLLMError(
			`"Authentication Error - Expired Key"`, `"expired_key"`, "null", "400")),
			want: outcome(OutcomeInvalidKey), errHas: "400 invalid_key"},
		{name: "401 token not found", target: reply(401, liteLLMError(
			`"Authentication Error"`, `"token_not_found_in_db"`, "null", "401")),
			want: outcome(OutcomeInvalidKey), errHas: "401 invalid_key"},
		{name: "403 llm_api key on info route", target: reply(403, liteLLMError(
			`"key not allowed to access this route"`, `"auth_error"`, "null", `"403"`)),
			want: outcome(OutcomeInvalidKey), errHas: "403 invalid_key: key not allowed"},
		{name: "404 detail", target: reply(404, `{"detail":"Not Found"}`),
			want:   outcome(OutcomeInvalidKey),
			errHas: "upstream answered 404 invalid_key: Not Found"},
		{name: "400 other", target: reply(400, liteLLMError(
			`"invalid request"`, `"bad_request_error"`, "null", "400")),
			want: outcome(OutcomeBadResponse), errHas: "400 bad_response: invalid request"},
		{name: "429 wrong-shape error", target: reply(429, `{"error":["slow down"]}`),
			want: rateLimited(0), errHas: `429 rate_limited: ["slow down"]`},

		{name: "budget_exceeded code string 429", target: reply(429, liteLLMError(
			`"Budget has been exceeded! Current cost: 10.51, Max budget: 10.0"`,
			`"budget_exceeded"`, "null", `"429"`), "Retry-After", "60"),
			want: budgetError(), errHas: "429 budget_exceeded: Budget has been exceeded!"},
		{name: "budget_exceeded code number 400", target: reply(400, liteLLMError(
			`"Budget has been exceeded! Current cost: 10.51, Max budget: 10.0"`,
			`"budget_exceeded"`, "null", "400")),
			want: budgetError(), errHas: "400 budget_exceeded"},
		{name: "ExceededBudget message", target: reply(400, liteLLMError(
			`"ExceededBudget: User=u1 over budget. Spend=10.51, Budget=10.0"`,
			"null", "null", "400")),
			want: budgetError(), errHas: "400 budget_exceeded: ExceededBudget"},
		{name: "auth_error with budget sentence", target: reply(401, liteLLMError(
			`"Authentication Error - Budget has been exceeded! Current cost: 10.51"`,
			`"auth_error"`, `"`+testSecret+`"`, `"401"`)),
			want: budgetError(), errHas: "401 budget_exceeded"},
		{name: "type null with budget sentence", target: reply(429, liteLLMError(
			`"Budget has been exceeded! Current cost: 10.51, Max budget: 10.0"`,
			"null", "null", "429")),
			want: budgetError(), errHas: "429 budget_exceeded"},
		{name: "budget error behind 500 is not trusted", target: reply(500, liteLLMError(
			`"Budget has been exceeded!"`, `"budget_exceeded"`, "null", "500")),
			want: outcome(OutcomeUpstreamError), errHas: "500 upstream_error"},
	}
}

func TestLiteLLMRequest(t *testing.T) {
	for _, suffix := range []string{"", "/", "/proxy", "/proxy/"} {
		t.Run("base"+suffix, func(t *testing.T) {
			var gotPath, gotAuth string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
				r *http.Request) {
				gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
				_, _ = w.Write([]byte(keyInfo("1.5", "null")))
			}))
			defer srv.Close()

			got := liteLLM{}.Check(context.Background(), srv.Client(), srv.URL+suffix, testSecret)

			assertResult(t, got, okSpend(1.5), "")
			wantPath := "/key/info"
			if suffix != "" && suffix != "/" {
				wantPath = "/proxy/key/info"
			}
			if gotPath != wantPath {
				t.Errorf("path = %q, want %q", gotPath, wantPath)
			}
			if gotAuth != "Bearer "+testSecret {
				t.Errorf("Authorization = %q, want %q", gotAuth, "Bearer "+testSecret)
			}
		})
	}
}

func TestLiteLLMErrUnwraps(t *testing.T) {
	got := parseLiteLLM(200, nil, []byte(keyInfo("1", "0")), testSecret)
	if !errors.Is(got.Err, ErrBudgetMisconfigured) {
		t.Errorf("Err = %v, want it to be ErrBudgetMisconfigured", got.Err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	got = liteLLM{}.Check(ctx, nil, silent(t), testSecret)
	if !errors.Is(got.Err, context.DeadlineExceeded) {
		t.Errorf("Err = %v, want it to be context.DeadlineExceeded", got.Err)
	}
}

func TestLiteLLMCanceledIsTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	got := liteLLM{}.Check(ctx, nil, refused(t), testSecret)

	assertResult(t, got, outcome(OutcomeTimeout), "context canceled")
	if !errors.Is(got.Err, context.Canceled) {
		t.Errorf("Err = %v, want it to be context.Canceled", got.Err)
	}
}
