package provider

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// orKey is a full /api/v1/key body with the given raw JSON for usage,
// limit, limit_remaining and limit_reset; the fields around them must be
// ignored.
func orKey(usage, limit, remaining, reset string) string {
	return `{"data":{"label":"sk-or-v1-ab1...9f0","usage":` + usage + `,"limit":` + limit +
		`,"limit_remaining":` + remaining + `,"limit_reset":` + reset +
		`,"usage_daily":1.2,"usage_weekly":9.8,"usage_monthly":45.46,"is_free_tier":false}}`
}

// orError is OpenRouter's error body.
func orError(code, message string) string {
	return `{"error":{"code":` + code + `,"message":` + message + `}}`
}

func TestOpenRouterFaults(t *testing.T) {
	cases := []faultCase{
		{name: "monthly window counts limit minus remaining",
			target: reply(200, orKey("433.28", "500", "454.54", `"monthly"`)),
			want:   okBudget(45.46, 500)},
		{name: "unlimited", target: reply(200, orKey("433.28", "null", "null", "null")),
			want: okUnlimited(433.28)},
		{name: "unlimited with a window",
			target: reply(200, orKey("12.5", "null", "null", `"daily"`)), want: okUnlimited(12.5)},
		{name: "limit without window counts usage",
			target: reply(200, orKey("120", "500", "380", "null")), want: okBudget(120, 500)},
		{name: "empty limit_reset counts usage",
			target: reply(200, orKey("120", "500", "470", `""`)), want: okBudget(120, 500)},
		{name: "window without remaining counts usage",
			target: reply(200, orKey("120", "500", "null", `"weekly"`)), want: okBudget(120, 500)},
		{name: "window rounding below zero is zero",
			target: reply(200, orKey("433.28", "500", "500.0000000000001", `"monthly"`)),
			want:   okBudget(0, 500)},
		{name: "remaining far above limit",
			target: reply(200, orKey("433.28", "500", "650", `"monthly"`)),
			want:   outcome(OutcomeBadResponse), errHas: "limit_remaining 650 exceeds limit 500"},
		{name: "remaining NaN string",
			target: reply(200, orKey("433.28", "500", `"NaN"`, `"monthly"`)),
			want:   outcome(OutcomeBadResponse), errHas: "limit_remaining is not a usable number"},
		{name: "window used up", target: reply(200, orKey("933.28", "500", "0", `"monthly"`)),
			want: overBudget(500, 500), errHas: "spend $500.00 reached the key's budget $500.00"},
		{name: "window overspent", target: reply(200, orKey("936.28", "500", "-3", `"monthly"`)),
			want: overBudget(503, 500), errHas: "reached the key's budget"},
		{name: "usage over limit", target: reply(200, orKey("600", "500", "null", "null")),
			want: overBudget(600, 500), errHas: "spend $600.00 reached"},
		{name: "usage as string", target: reply(200, orKey(`"12.5"`, `"50"`, "null", "null")),
			want: okBudget(12.5, 50)},
		{name: "usage missing", target: reply(200, `{"data":{"limit":500,"limit_remaining":10}}`),
			want: outcome(OutcomeBadResponse), errHas: "usage is missing"},
		{name: "usage null", target: reply(200, orKey("null", "null", "null", "null")),
			want: outcome(OutcomeBadResponse), errHas: "usage is missing"},
		{name: "usage negative", target: reply(200, orKey("-0.01", "null", "null", "null")),
			want: outcome(OutcomeBadResponse), errHas: "usage -0.01 is negative"},
		{name: "usage NaN token", target: reply(200, orKey("NaN", "null", "null", "null")),
			want: outcome(OutcomeBadResponse), errHas: "decode key: invalid character 'N'"},
		{name: "usage NaN string", target: reply(200, orKey(`"NaN"`, "null", "null", "null")),
			want: outcome(OutcomeBadResponse), errHas: "usage NaN is not finite"},
		{name: "usage 1e308", target: reply(200, orKey("1e308", "null", "null", "null")),
			want: outcome(OutcomeBadResponse), errHas: "usage 1e+308 is beyond any real amount"},
		{name: "limit zero", target: reply(200, orKey("1", "0", "0", `"monthly"`)),
			want: outcome(OutcomeBadResponse), errHas: "limit 0: key budget is misconfigured"},
		{name: "limit negative", target: reply(200, orKey("1", "-20", "null", "null")),
			want: outcome(OutcomeBadResponse), errHas: "limit -20: key budget is misconfigured"},
		{name: "wrong shape no data", target: reply(200, `{"usage":12.5,"limit":null}`),
			want: outcome(OutcomeBadResponse), errHas: "key has no data object"},
		{name: "wrong shape data list", target: reply(200, `{"data":[{"usage":1}]}`),
			want: outcome(OutcomeBadResponse), errHas: "cannot unmarshal array"},

		{name: "401 quoting the key", target: reply(401, `{"error":{"code":401,"message":`+
			`"No auth credentials found for `+testSecret+`","param":"`+testSecret+`"}}`),
			want:   outcome(OutcomeInvalidKey),
			errHas: "upstream answered 401 invalid_key: No auth credentials found for [REDACTED]"},
		{name: "401 quoting the key without its prefix", target: reply(401, orError("401",
			`"User not found for key ending `+testSecret[10:]+`"`)),
			want:   outcome(OutcomeInvalidKey),
			errHas: "401 invalid_key: User not found for key ending [REDACTED]"},
		{name: "403 disabled key", target: reply(403, orError("403", `"Key is disabled"`)),
			want: outcome(OutcomeInvalidKey), errHas: "403 invalid_key: Key is disabled"},
		{name: "404 is a wrong base URL", target: reply(404, "404 page not found"),
			want: outcome(OutcomeBadResponse), errHas: "404 bad_response: 404 page not found"},
		{name: "402 out of credits", target: reply(402, orError("402",
			`"Insufficient credits. Add more using https://openrouter.ai/credits"`)),
			want: budgetError(), errHas: "402 budget_exceeded: Insufficient credits"},
	}
	runFaults(t, openRouter{}, append(transportCases(), cases...))
}

func TestOpenRouterRequest(t *testing.T) {
	for _, suffix := range []string{"", "/"} {
		t.Run("base"+suffix, func(t *testing.T) {
			var gotPath, gotAuth string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
				r *http.Request) {
				gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
				_, _ = w.Write([]byte(orKey("1.5", "null", "null", "null")))
			}))
			defer srv.Close()

			ctx := context.Background()
			got := openRouter{}.Check(ctx, srv.Client(), srv.URL+suffix, testSecret)

			assertResult(t, got, okUnlimited(1.5), "")
			if gotPath != "/api/v1/key" {
				t.Errorf("path = %q, want %q", gotPath, "/api/v1/key")
			}
			if gotAuth != "Bearer "+testSecret {
				t.Errorf("Authorization = %q, want %q", gotAuth, "Bearer "+testSecret)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	for _, name := range []string{"litellm", "openrouter"} {
		p, ok := Lookup(name)
		if !ok || p.Name() != name {
			t.Errorf("Lookup(%q) = %v, %v; want the %s provider", name, p, ok, name)
		}
	}
	if _, ok := Lookup("openai"); ok {
		t.Error(`Lookup("openai") found a provider, want none`)
	}
	names := Names()
	if !slices.IsSorted(names) || !slices.Contains(names, "litellm") ||
		!slices.Contains(names, "openrouter") {
		t.Errorf("Names() = %v, want litellm and openrouter, sorted", names)
	}
}
