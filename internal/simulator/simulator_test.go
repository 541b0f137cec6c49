package simulator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/simulator"

	"github.com/keyspend/keyspend_exporter/internal/secrettest"
)

const (
	secretA = "sk-sim-alpha-7f3a9c21e0"
	secretB = "sk-sim-bravo-51d0e8b4aa"
)

// clock is a test clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// answer is what a client saw of one response.
type answer struct {
	status int
	proto  string
	header http.Header
	body   []byte
}

// serve mounts the simulator's handler on an httptest server.
func serve(t *testing.T, sim *simulator.Simulator) string {
	t.Helper()
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// start runs the simulator's own server and closes it after the test.
func start(t testing.TB, sim *simulator.Simulator) string {
	t.Helper()
	base, err := sim.Start("")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return base
}

// ask sends GET /key/info with secret as the bearer token; "" sends no
// Authorization header.
func ask(ctx context.Context, client *http.Client, base, secret string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/key/info", nil)
	if err != nil {
		return answer{}, err
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Proto, resp.Header, body}, err
}

// mustAsk is ask that fails the test on a transport error.
func mustAsk(t *testing.T, base, secret string) answer {
	t.Helper()
	a, err := ask(context.Background(), http.DefaultClient, base, secret)
	if err != nil {
		t.Fatalf("GET /key/info: %v", err)
	}
	return a
}

// infoField is the raw JSON of one field of a 200 body's info object.
func infoField(t *testing.T, body []byte, name string) string {
	t.Helper()
	var b struct {
		Info map[string]json.RawMessage `json:"info"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("decode key info %q: %v", body, err)
	}
	raw, ok := b.Info[name]
	if !ok {
		t.Fatalf("info has no field %q: %s", name, body)
	}
	return string(raw)
}

// spendOf is the spend a 200 body reports.
func spendOf(t *testing.T, body []byte) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(infoField(t, body, "spend"), 64)
	if err != nil {
		t.Fatalf("spend is not a number: %v", err)
	}
	return v
}

// errorOf is the error object of an error body.
func errorOf(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var b struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Error == nil {
		t.Fatalf("not an error body %q: %v", body, err)
	}
	return b.Error
}

// leaks reports whether text holds a piece of secret.
func leaks(text, secret string) bool {
	return secrettest.Piece(text, secret) != ""
}

// waitUntil polls cond until it holds; it fails the test after a generous
// deadline, which only a broken simulator reaches.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func budget(v float64) *float64 { return &v }

func TestSpendGrowsWithClock(t *testing.T) {
	clk := newClock()
	sim := simulator.New(simulator.Options{Now: clk.Now})
	sim.AddKey(simulator.Key{
		Secret: secretA, Alias: "team-a-1",
		StartSpendUSD: 1.5, RateUSDPerSecond: 0.25, MaxBudgetUSD: budget(10),
	})
	base := serve(t, sim)

	if got := spendOf(t, mustAsk(t, base, secretA).body); got != 1.5 {
		t.Errorf("spend at start = %v, want 1.5", got)
	}
	clk.Advance(10 * time.Second)
	a := mustAsk(t, base, secretA)

	if a.status != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", a.status, a.body)
	}
	if got := spendOf(t, a.body); got != 4 {
		t.Errorf("spend after 10s = %v, want 4", got)
	}
	if got, ok := sim.Spend(secretA); !ok || got != 4 {
		t.Errorf("Spend = %v, %v; want 4, true", got, ok)
	}
	want := map[string]string{
		"key_alias": `"team-a-1"`, "max_budget": "10", "budget_duration": "null",
		"budget_reset_at": "null", "expires": "null", "blocked": "null",
	}
	for name, v := range want {
		if got := infoField(t, a.body, name); got != v {
			t.Errorf("info.%s = %s, want %s", name, got, v)
		}
	}
}

func TestKeyFieldIsHashedToken(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	sim.AddKey(simulator.Key{Secret: secretA})
	a := mustAsk(t, serve(t, sim), secretA)

	var b struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(a.body, &b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secretA))
	if b.Key != hex.EncodeToString(sum[:]) {
		t.Errorf("key = %q, want the hex SHA-256 of the secret", b.Key)
	}
	if leaks(string(a.body), secretA) {
		t.Errorf("200 body quotes the secret")
	}
}

func TestNoBudgetAndNoAliasAreNull(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	sim.AddKey(simulator.Key{Secret: secretA, StartSpendUSD: 3})
	a := mustAsk(t, serve(t, sim), secretA)

	for _, name := range []string{"max_budget", "key_alias"} {
		if got := infoField(t, a.body, name); got != "null" {
			t.Errorf("info.%s = %s, want null", name, got)
		}
	}
}

func TestAddKeyCopiesBudget(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	limit := 10.0
	sim.AddKey(simulator.Key{Secret: secretA, MaxBudgetUSD: &limit})
	limit = 99
	a := mustAsk(t, serve(t, sim), secretA)

	if got := infoField(t, a.body, "max_budget"); got != "10" {
		t.Errorf("max_budget = %s after the caller changed its variable, want 10", got)
	}
}

func TestSpendFromFirstCheck(t *testing.T) {
	clk := newClock()
	sim := simulator.New(simulator.Options{Now: clk.Now})
	sim.AddKey(simulator.Key{
		Secret: secretB, StartSpendUSD: 0.5, RateUSDPerSecond: 2, SpendFromFirstCheck: true,
	})
	base := serve(t, sim)

	clk.Advance(100 * time.Second)
	if got, _ := sim.Spend(secretB); got != 0.5 {
		t.Errorf("Spend of a waiting backup = %v, want 0.5", got)
	}
	if got := spendOf(t, mustAsk(t, base, secretB).body); got != 0.5 {
		t.Errorf("spend at first check = %v, want 0.5", got)
	}
	clk.Advance(3 * time.Second)
	if got := spendOf(t, mustAsk(t, base, secretB).body); got != 6.5 {
		t.Errorf("spend 3s after first check = %v, want 6.5", got)
	}
}

func TestSetSpendDropsSpend(t *testing.T) {
	clk := newClock()
	sim := simulator.New(simulator.Options{Now: clk.Now})
	sim.AddKey(simulator.Key{Secret: secretA, StartSpendUSD: 8, RateUSDPerSecond: 1})
	base := serve(t, sim)

	clk.Advance(5 * time.Second)
	if !sim.SetSpend(secretA, 0.25) {
		t.Fatal("SetSpend of a registered key reported no key")
	}
	clk.Advance(2 * time.Second)
	if got := spendOf(t, mustAsk(t, base, secretA).body); got != 2.25 {
		t.Errorf("spend after the window reset = %v, want 2.25", got)
	}
	if sim.SetSpend(secretB, 1) {
		t.Error("SetSpend of an unknown key reported a key")
	}
}

func TestBudgetExceeded(t *testing.T) {
	const budgetBody = `{"error":{"message":"Budget has been exceeded! ` +
		`Current cost: 12.0, Max budget: 10.0","type":"budget_exceeded",` +
		`"param":null,"code":"429"}}`
	tests := []struct {
		name      string
		errorFlag bool
		advance   time.Duration
		status    int
		body      string
	}{
		{"over budget answers 200 by default", false, 3 * time.Second, 200, ""},
		{"over budget answers 429 with the flag", true, 3 * time.Second, 429, budgetBody},
		{"at budget is exceeded", true, time.Second, 429, ""},
		{"under budget answers 200 with the flag", true, 0, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			sim := simulator.New(simulator.Options{Now: clk.Now})
			sim.AddKey(simulator.Key{
				Secret: secretA, StartSpendUSD: 9, RateUSDPerSecond: 1,
				MaxBudgetUSD: budget(10), BudgetErrorWhenExceeded: tc.errorFlag,
			})
			clk.Advance(tc.advance)
			a := mustAsk(t, serve(t, sim), secretA)

			if a.status != tc.status {
				t.Fatalf("status = %d, want %d; body %s", a.status, tc.status, a.body)
			}
			if tc.status == 200 && spendOf(t, a.body) != 9+tc.advance.Seconds() {
				t.Errorf("spend = %v, want %v", spendOf(t, a.body), 9+tc.advance.Seconds())
			}
			if tc.status == 429 && errorOf(t, a.body)["type"] != "budget_exceeded" {
				t.Errorf("error type = %v, want budget_exceeded", errorOf(t, a.body)["type"])
			}
			if tc.body != "" && string(a.body) != tc.body {
				t.Errorf("body = %s\nwant   %s", a.body, tc.body)
			}
		})
	}
}

func TestUnknownKey(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	sim.AddKey(simulator.Key{Secret: secretA})
	a := mustAsk(t, serve(t, sim), secretB)

	if a.status != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", a.status)
	}
	e := errorOf(t, a.body)
	if e["type"] != "auth_error" || e["param"] != "None" || e["code"] != "401" {
		t.Errorf("error = %v, want type auth_error, param None, code \"401\"", e)
	}
	msg, _ := e["message"].(string)
	if !strings.HasPrefix(msg, "Authentication Error, Invalid proxy server token passed.") {
		t.Errorf("message = %q", msg)
	}
	if leaks(string(a.body), secretB) {
		t.Errorf("401 body quotes an 8-character piece of the secret")
	}
}

func TestMissingAuthorization(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	a := mustAsk(t, serve(t, sim), "")

	if a.status != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", a.status)
	}
	if msg := errorOf(t, a.body)["message"]; msg != "Authentication Error, No api key passed in." {
		t.Errorf("message = %q", msg)
	}
}

func TestRemovedKeyIsRefused(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	sim.AddKey(simulator.Key{Secret: secretA})
	base := serve(t, sim)

	sim.RemoveKey(secretA)
	if a := mustAsk(t, base, secretA); a.status != http.StatusUnauthorized {
		t.Errorf("status after RemoveKey = %d, want 401", a.status)
	}
	if _, ok := sim.Spend(secretA); ok {
		t.Error("Spend still knows the removed key")
	}
}

func TestOtherRoutes(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	base := serve(t, sim)

	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /health = %d, want 404", resp.StatusCode)
	}
	resp, err = http.Post(base+"/key/info", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /key/info = %d, want 405", resp.StatusCode)
	}
}

func TestCounters(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	sim.AddKey(simulator.Key{Secret: secretA})
	base := serve(t, sim)

	for _, secret := range []string{secretA, secretA, secretA, secretB, ""} {
		mustAsk(t, base, secret)
	}
	if got := sim.Requests(); got != 5 {
		t.Errorf("Requests = %d, want 5", got)
	}
	counts := map[string]int64{secretA: 3, secretB: 1, "": 1, "sk-never-seen-0000": 0}
	for secret, want := range counts {
		if got := sim.RequestsFor(secret); got != want {
			t.Errorf("RequestsFor = %d, want %d", got, want)
		}
	}
	if got := sim.InFlight(); got != 0 {
		t.Errorf("InFlight after all answers = %d, want 0", got)
	}
	if got := sim.MaxInFlight(); got != 1 {
		t.Errorf("MaxInFlight after one request at a time = %d, want 1", got)
	}
	sim.ResetMaxInFlight()
	if got := sim.MaxInFlight(); got != 0 {
		t.Errorf("MaxInFlight after reset = %d, want 0", got)
	}
}
