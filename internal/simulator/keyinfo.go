package simulator

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// keyInfoPath is the only route LiteLLM's checkers call.
const keyInfoPath = "/key/info"

// none is Python's None as LiteLLM's error bodies print it in param.
var none = ptr("None")

// route is what one request about one secret is answered with: taken under
// the lock, used after it.
type route struct {
	secret  string
	handler http.HandlerFunc
	fault   Fault
	key     key
	known   bool
}

// infoBody is the 200 body of /key/info. The fields past max_budget are
// fixed: they exist so a parser proves it ignores what it does not need.
type infoBody struct {
	Key  string     `json:"key"`
	Info infoFields `json:"info"`
}

// infoFields is the info object of infoBody.
type infoFields struct {
	KeyAlias           *string           `json:"key_alias"`
	Spend              float64           `json:"spend"`
	MaxBudget          *float64          `json:"max_budget"`
	BudgetDuration     *string           `json:"budget_duration"`
	BudgetResetAt      *string           `json:"budget_reset_at"`
	Expires            *string           `json:"expires"`
	Blocked            *bool             `json:"blocked"`
	SoftBudgetCooldown bool              `json:"soft_budget_cooldown"`
	Models             []string          `json:"models"`
	Metadata           map[string]string `json:"metadata"`
}

// errorBody is LiteLLM's error body on every route.
type errorBody struct {
	Error errorFields `json:"error"`
}

// errorFields is the error object of errorBody.
type errorFields struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// Handler is the simulator's HTTP handler, for tests that serve it with
// httptest or another server of their own.
func (s *Simulator) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// serveHTTP counts the request, routes it, waits out the latency and
// answers.
func (s *Simulator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.enter()
	defer s.inFlight.Add(-1)

	if r.URL.Path != keyInfoPath {
		writeRaw(w, http.StatusNotFound, []byte(`{"detail":"Not Found"}`))
		return
	}
	if r.Method != http.MethodGet {
		writeRaw(w, http.StatusMethodNotAllowed, []byte(`{"detail":"Method Not Allowed"}`))
		return
	}
	secret := bearer(r)
	s.countFor(secret)

	if !s.wait(r.Context(), s.latencyFor(secret)) {
		return // the client gave up; nobody reads an answer
	}
	rt := s.route(secret)
	switch {
	case rt.handler != nil:
		rt.handler(w, r)
	case rt.fault != FaultNone:
		s.fail(w, r, rt)
	default:
		s.keyInfo(w, rt)
	}
}

// bearer is the secret of an "Authorization: Bearer <secret>" header, or ""
// when there is none.
func bearer(r *http.Request) string {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(secret)
}

// latencyFor is the delay for requests that present secret.
func (s *Simulator) latencyFor(secret string) time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if d, ok := s.keyLatency[secret]; ok {
		return d
	}
	return s.latency
}

// wait sleeps for d and reports whether the request should still be
// answered: false when the client went away. Closing the simulator aborts
// the request.
func (s *Simulator) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		abort()
		return false
	}
}

// route looks up everything the answer to secret depends on, and starts the
// clock of a key that waited for its first check.
func (s *Simulator) route(secret string) route {
	rt := route{secret: secret}

	s.mu.RLock()
	rt.handler = s.handlers[secret]
	if rt.handler == nil {
		rt.handler = s.handlers[""]
	}
	rt.fault = s.faults[secret]
	if rt.fault == FaultNone {
		rt.fault = s.faults[""]
	}
	k, ok := s.keys[secret]
	if ok {
		rt.key, rt.known = *k, true
	}
	s.mu.RUnlock()

	if rt.known && !rt.key.started {
		rt.key, rt.known = s.startClock(secret)
	}
	return rt
}

// startClock starts the key's clock unless another request already did,
// and returns the key as it is then.
func (s *Simulator) startClock(secret string) (key, bool) {
	now := s.now()

	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[secret]
	if !ok {
		return key{}, false // removed in between
	}
	if !k.started {
		k.since, k.started = now, true
	}
	return *k, true
}

// keyInfo writes the normal answer of /key/info.
func (s *Simulator) keyInfo(w http.ResponseWriter, rt route) {
	if !rt.known {
		writeAuthError(w, rt.secret)
		return
	}
	body := infoBodyOf(rt, s.now())
	if rt.key.BudgetErrorWhenExceeded && rt.key.exceeded(body.Info.Spend) {
		writeBudgetError(w, body.Info.Spend, rt.key.MaxBudgetUSD)
		return
	}
	writeRaw(w, http.StatusOK, marshal(body))
}

// infoBodyOf is the 200 body for the route's key at now. An unknown secret
// gets the body of a key that has spent nothing.
func infoBodyOf(rt route, now time.Time) infoBody {
	token := rt.key.token
	if !rt.known {
		token = tokenOf(rt.secret)
	}
	var alias *string
	if rt.key.Alias != "" {
		alias = ptr(rt.key.Alias)
	}

	return infoBody{Key: token, Info: infoFields{
		KeyAlias:  alias,
		Spend:     rt.key.spend(now),
		MaxBudget: rt.key.MaxBudgetUSD,
		Models:    []string{},
		Metadata:  map[string]string{},
	}}
}

// writeAuthError writes LiteLLM's 401 for a missing or unknown key. Like
// LiteLLM it quotes the key abbreviated to its last four characters, so a
// checker's redaction of upstream bodies is exercised.
func writeAuthError(w http.ResponseWriter, secret string) {
	msg := "Authentication Error, No api key passed in."
	if secret != "" {
		msg = "Authentication Error, Invalid proxy server token passed. Received API Key = " +
			abbreviate(secret) + ", Key Hash (Token) =" + tokenOf(secret) +
			". Unable to find token in cache or `LiteLLM_VerificationTokenTable`"
	}
	writeError(w, http.StatusUnauthorized, msg, "auth_error", none)
}

// writeBudgetError writes LiteLLM's 429 budget error.
func writeBudgetError(w http.ResponseWriter, spend float64, budget *float64) {
	limit := "None"
	if budget != nil {
		limit = pyFloat(*budget)
	}
	msg := "Budget has been exceeded! Current cost: " + pyFloat(spend) + ", Max budget: " + limit
	writeError(w, http.StatusTooManyRequests, msg, "budget_exceeded", nil)
}

// writeError writes a LiteLLM error body whose code matches the status.
func writeError(w http.ResponseWriter, status int, msg, typ string, param *string) {
	body := errorBody{Error: errorFields{
		Message: msg, Type: typ, Param: param, Code: strconv.Itoa(status),
	}}
	writeRaw(w, status, marshal(body))
}

// writeRaw writes a JSON body with its length, so even a truncated body
// arrives as a complete HTTP response.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// marshal encodes a body built from this package's own types, which
// cannot fail to encode.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("simulator: encode body: " + err.Error())
	}
	return b
}

// abbreviate shows a secret as LiteLLM does in its errors, "sk-...abcd";
// a short secret shows none of itself.
func abbreviate(secret string) string {
	if len(secret) < 12 {
		return "sk-..."
	}
	return "sk-..." + secret[len(secret)-4:]
}

// pyFloat formats v as Python prints a float, which is how LiteLLM's
// messages show money: 10.0, 10.51.
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".NI") {
		s += ".0"
	}
	return s
}

// ptr points at a copy of v, for JSON fields that may be null.
func ptr[T any](v T) *T { return &v }
