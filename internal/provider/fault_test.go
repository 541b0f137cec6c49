package provider

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/secrettest"
)

// testSecret is the key every test checks. Its pieces must never show in an
// Err.
const testSecret = "sk-Zq8v3LmN5pR7tW2xY4bC6dF9hJ"

// target starts an upstream for one test and returns its base URL.
type target func(t *testing.T) string

// faultCase is one row of a provider's fault matrix.
type faultCase struct {
	name    string
	target  target
	timeout time.Duration // of the check; 10s when zero
	want    Result        // Err is not compared, errHas is
	errHas  string        // a piece of Err's text; empty means Err is nil
}

// runFaults checks p against every case and asserts the whole Result.
func runFaults(t *testing.T, p Provider, cases []faultCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := c.target(t)
			timeout := c.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			tr := newProbe(t)

			got := p.Check(ctx, &http.Client{Transport: tr}, base, testSecret)

			assertResult(t, got, c.want, c.errHas)
			tr.assertClosed(t)
		})
	}
}

// assertResult compares every field of got with want and checks Err's text.
func assertResult(t *testing.T, got, want Result, errHas string) {
	t.Helper()
	if got.Outcome != want.Outcome {
		t.Errorf("Outcome = %q, want %q (Err: %v)", got.Outcome, want.Outcome, got.Err)
	}
	if got.HasSpend != want.HasSpend || !near(got.SpendUSD, want.SpendUSD) {
		t.Errorf("spend = %v %v, want %v %v", got.HasSpend, got.SpendUSD,
			want.HasSpend, want.SpendUSD)
	}
	if got.HasBudget != want.HasBudget || !near(got.BudgetUSD, want.BudgetUSD) {
		t.Errorf("budget = %v %v, want %v %v", got.HasBudget, got.BudgetUSD,
			want.HasBudget, want.BudgetUSD)
	}
	if got.BudgetExceeded != want.BudgetExceeded {
		t.Errorf("BudgetExceeded = %v, want %v", got.BudgetExceeded, want.BudgetExceeded)
	}
	if got.Unlimited != want.Unlimited {
		t.Errorf("Unlimited = %v, want %v", got.Unlimited, want.Unlimited)
	}
	if got.RetryAfter != want.RetryAfter {
		t.Errorf("RetryAfter = %v, want %v", got.RetryAfter, want.RetryAfter)
	}
	assertErr(t, got.Err, errHas)
}

// assertErr checks that err is nil when errHas is empty, and otherwise holds
// errHas on one line with no piece of the secret.
func assertErr(t *testing.T, err error, errHas string) {
	t.Helper()
	if errHas == "" {
		if err != nil {
			t.Errorf("Err = %q, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Err = nil, want one containing %q", errHas)
	}
	text := err.Error()
	if !strings.Contains(text, errHas) {
		t.Errorf("Err = %q, want it to contain %q", text, errHas)
	}
	if strings.ContainsAny(text, "\r\n") {
		t.Errorf("Err = %q spans lines", text)
	}
	assertNoSecret(t, text)
}

// assertNoSecret fails if text holds any 8-character piece of testSecret.
func assertNoSecret(t *testing.T, text string) {
	t.Helper()
	if piece := secrettest.Piece(text, testSecret); piece != "" {
		t.Errorf("text %q leaks secret piece %q", text, piece)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// Results a row may expect.

func okSpend(spend float64) Result {
	return Result{Outcome: OutcomeOK, HasSpend: true, SpendUSD: spend}
}

// okUnlimited is the result for a key the upstream says has no cap.
func okUnlimited(spend float64) Result {
	r := okSpend(spend)
	r.Unlimited = true
	return r
}

func okBudget(spend, budget float64) Result {
	r := okSpend(spend)
	r.HasBudget, r.BudgetUSD = true, budget
	return r
}

func overBudget(spend, budget float64) Result {
	r := okBudget(spend, budget)
	r.Outcome, r.BudgetExceeded = OutcomeBudgetExceeded, true
	return r
}

func budgetError() Result {
	return Result{Outcome: OutcomeBudgetExceeded, BudgetExceeded: true}
}

func outcome(o Outcome) Result { return Result{Outcome: o} }

func rateLimited(wait time.Duration) Result {
	return Result{Outcome: OutcomeRateLimited, RetryAfter: wait}
}

// Upstreams.

// serve answers every request with h.
func serve(h http.HandlerFunc) target {
	return func(t *testing.T) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
}

// reply answers status and body, with header given as name, value pairs.
func reply(status int, body string, header ...string) target {
	return serve(func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

// refused returns the address of a listener that was closed, so connecting
// is refused.
func refused(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// silent accepts connections and never answers on them.
func silent(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				<-done
				_ = conn.Close()
			})
		}
	})
	t.Cleanup(func() {
		close(done)
		_ = ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// cutBody sends a 200 whose JSON body stops halfway, then closes the
// connection. With a Content-Length the client can tell the body was cut;
// without one the close is how the body ends.
func cutBody(withLength bool) target {
	return serve(func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		defer func() { _ = conn.Close() }()

		head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
		if withLength {
			head += "Content-Length: 200\r\n"
		}
		_, _ = buf.WriteString(head + "\r\n" + `{"key":"5f0c","info":{"spend":7.1`)
		_ = buf.Flush()
	})
}

// hugeBody answers 200 with 20 MB of JSON-looking text, stopping when the
// client goes away.
func hugeBody(t *testing.T) string {
	chunk := []byte(strings.Repeat("a", 64<<10))
	return serve(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"key":"`)
		for sent := 0; sent < 20<<20; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})(t)
}

// htmlPage is what a reverse proxy sends when the upstream behind it is down.
const htmlPage = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" +
	"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n" +
	"</body>\r\n</html>\r\n"

// transportCases are the faults below the provider's own format: the same
// rows, with the same outcomes, for every provider.
func transportCases() []faultCase {
	return []faultCase{
		{name: "connection refused", target: refused,
			want: outcome(OutcomeNetwork), errHas: "connection refused"},
		{name: "accepts and never answers", target: silent, timeout: 200 * time.Millisecond,
			want: outcome(OutcomeTimeout), errHas: "deadline exceeded"},
		{name: "body cut with length", target: cutBody(true),
			want: outcome(OutcomeNetwork), errHas: "unexpected EOF"},
		{name: "body cut without length", target: cutBody(false),
			want: outcome(OutcomeBadResponse), errHas: "unexpected end of JSON input"},
		{name: "20 MB body", target: hugeBody,
			want: outcome(OutcomeBadResponse), errHas: "body larger than 1 MiB"},
		{name: "502 HTML page", target: reply(502, htmlPage, "Content-Type", "text/html"),
			want:   outcome(OutcomeUpstreamError),
			errHas: "upstream answered 502 upstream_error: 502 Bad Gateway"},
		{name: "500 plain text", target: reply(500, "Internal Server Error\n"),
			want:   outcome(OutcomeUpstreamError),
			errHas: "upstream answered 500 upstream_error: Internal Server Error"},
		{name: "503 with Retry-After", target: reply(503, "", "Retry-After", "30"),
			want: outcome(OutcomeUpstreamError), errHas: "upstream answered 503 upstream_error"},
		{name: "429 with Retry-After",
			target: reply(429, `{"error":{"message":"Rate limit exceeded","code":429}}`,
				"Retry-After", "30"),
			want:   rateLimited(30 * time.Second),
			errHas: "upstream answered 429 rate_limited: Rate limit exceeded"},
		{name: "429 without Retry-After",
			target: reply(429, `{"error":{"message":"Rate limit exceeded","code":429}}`),
			want:   rateLimited(0), errHas: "429 rate_limited"},
		{name: "200 HTML page", target: reply(200, htmlPage, "Content-Type", "text/html"),
			want: outcome(OutcomeBadResponse), errHas: "invalid character '<'"},
		{name: "200 empty body", target: reply(200, ""),
			want: outcome(OutcomeBadResponse), errHas: "unexpected end of JSON input"},
	}
}

// probe is a real transport that records every response body it hands
// out, so a test can see that each was closed and how much was read.
type probe struct {
	base   *http.Transport
	mu     sync.Mutex
	bodies []*probeBody
}

// probeBody counts what is read from a body and whether it was closed.
type probeBody struct {
	rc     io.ReadCloser
	read   int64
	closed bool
}

func (b *probeBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.read += int64(n)
	return n, err
}

func (b *probeBody) Close() error {
	b.closed = true
	return b.rc.Close()
}

func newProbe(t *testing.T) *probe {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.Proxy = nil
	t.Cleanup(base.CloseIdleConnections)
	return &probe{base: base}
}

func (p *probe) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := p.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body := &probeBody{rc: resp.Body}
	resp.Body = body
	p.mu.Lock()
	p.bodies = append(p.bodies, body)
	p.mu.Unlock()
	return resp, nil
}

// assertClosed fails unless every body handed out was closed.
func (p *probe) assertClosed(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.bodies {
		if !b.closed {
			t.Errorf("response body %d was not closed", i)
		}
	}
}
