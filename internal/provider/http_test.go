package provider

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                               0,
		"30":                             30 * time.Second,
		" 7 ":                            7 * time.Second,
		"0":                              0,
		"-5":                             0,
		"1.5":                            0,
		"soon":                           0,
		"99999999999999":                 time.Hour,
		"Sun, 01 Mar 2026 12:02:00 GMT":  2 * time.Minute,
		"Sunday, 01-Mar-26 12:00:45 GMT": 45 * time.Second,
		"Sun, 01 Mar 2026 11:00:00 GMT":  0,
		"Mon, 02 Mar 2026 12:00:00 GMT":  time.Hour,
	}
	for value, want := range cases {
		h := http.Header{}
		if value != "" {
			h.Set("Retry-After", value)
		}
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", value, got, want)
		}
	}
}

// TestErrorBodyIsDrained checks that a refused key leaves its connection
// fit for reuse: two checks in a row need one connection.
func TestErrorBodyIsDrained(t *testing.T) {
	var conns atomic.Int32
	body := liteLLMError(authMessage, `"auth_error"`, "null", `"401"`)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter,
		_ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(body))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: newProbe(t)}

	for range 2 {
		got := liteLLM{}.Check(context.Background(), client, srv.URL, testSecret)
		assertResult(t, got, outcome(OutcomeInvalidKey), "401 invalid_key")
	}

	if n := conns.Load(); n != 1 {
		t.Errorf("two checks opened %d connections, want 1", n)
	}
}

// TestHugeBodyReadIsBounded checks that a 20 MB answer costs at most the
// kept mebibyte plus the bounded drain, and that its body is closed.
func TestHugeBodyReadIsBounded(t *testing.T) {
	tr := newProbe(t)
	client := &http.Client{Transport: tr}

	got := openRouter{}.Check(context.Background(), client, hugeBody(t), testSecret)

	assertResult(t, got, outcome(OutcomeBadResponse), "body larger than 1 MiB")
	tr.assertClosed(t)
	if len(tr.bodies) != 1 {
		t.Fatalf("%d responses, want 1", len(tr.bodies))
	}
	if read := tr.bodies[0].read; read > maxBodyBytes+1+maxDrainBytes {
		t.Errorf("read %d bytes of the body, want at most %d", read,
			maxBodyBytes+1+maxDrainBytes)
	}
}

// TestBodyLimitIsExact checks the limit's edge: a body of exactly 1 MiB is
// read, one byte more is refused.
func TestBodyLimitIsExact(t *testing.T) {
	body := keyInfo("1.25", "null")
	full := body + strings.Repeat(" ", maxBodyBytes-len(body))

	got := liteLLM{}.Check(context.Background(), nil, reply(200, full)(t), testSecret)
	assertResult(t, got, okSpend(1.25), "")

	got = liteLLM{}.Check(context.Background(), nil, reply(200, full+" ")(t), testSecret)
	assertResult(t, got, outcome(OutcomeBadResponse), "body larger than 1 MiB")
}
