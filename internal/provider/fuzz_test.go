package provider

import (
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keyspend/keyspend_exporter/internal/secrettest"
)

// The seed corpora live in testdata/fuzz/<name>/: real answers, every fault
// of the matrix, and bodies that quote the secret.

func FuzzLiteLLMParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		assertInvariants(t, parseLiteLLM(status, retryHeader(), body, testSecret))
	})
}

func FuzzOpenRouterParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		assertInvariants(t, parseOpenRouter(status, retryHeader(), body, testSecret))
	})
}

func retryHeader() http.Header {
	return http.Header{"Retry-After": []string{"12"}}
}

// assertInvariants checks what must hold for any answer whatever.
func assertInvariants(t *testing.T, r Result) {
	t.Helper()
	if !slices.Contains(Outcomes, r.Outcome) {
		t.Fatalf("Outcome %q is not one of Outcomes", r.Outcome)
	}
	if (r.Outcome == OutcomeOK) != (r.Err == nil) {
		t.Fatalf("Outcome %q with Err %v", r.Outcome, r.Err)
	}
	if r.HasSpend && (math.IsNaN(r.SpendUSD) || math.IsInf(r.SpendUSD, 0) || r.SpendUSD < 0) {
		t.Fatalf("HasSpend with spend %v", r.SpendUSD)
	}
	if r.HasSpend && r.Outcome != OutcomeOK && r.Outcome != OutcomeBudgetExceeded {
		t.Fatalf("HasSpend with outcome %q", r.Outcome)
	}
	if r.HasBudget && !(r.BudgetUSD > 0 && r.BudgetUSD <= maxUSD) {
		t.Fatalf("HasBudget with budget %v", r.BudgetUSD)
	}
	if r.BudgetExceeded != (r.Outcome == OutcomeBudgetExceeded) {
		t.Fatalf("BudgetExceeded %v with outcome %q", r.BudgetExceeded, r.Outcome)
	}
	if r.RetryAfter < 0 || (r.RetryAfter != 0 && r.Outcome != OutcomeRateLimited) {
		t.Fatalf("RetryAfter %v with outcome %q", r.RetryAfter, r.Outcome)
	}
	if r.Err != nil {
		assertErrText(t, r.Err.Error())
	}
}

// assertErrText checks an Err is one short line with no piece of the secret.
func assertErrText(t *testing.T, text string) {
	t.Helper()
	if piece := secrettest.Piece(text, testSecret); piece != "" {
		t.Fatalf("Err %q leaks secret piece %q", text, piece)
	}
	if strings.ContainsAny(text, "\r\n") || !utf8.ValidString(text) {
		t.Fatalf("Err %q is not one valid line", text)
	}
	// 200 runes, the cut mark, and markers a little longer than what they
	// replace.
	if n := utf8.RuneCountInString(text); n > 300 {
		t.Fatalf("Err is %d runes long", n)
	}
}
