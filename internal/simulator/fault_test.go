package simulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/simulator"
)

// faultSim has key A under its budget of 10 (spend 2) and key B unlimited,
// on a clock that stands still.
func faultSim(t *testing.T) (*simulator.Simulator, string) {
	t.Helper()
	clk := newClock()
	sim := simulator.New(simulator.Options{Now: clk.Now, RetryAfter: 7 * time.Second})
	sim.AddKey(simulator.Key{Secret: secretA, StartSpendUSD: 2, MaxBudgetUSD: budget(10)})
	sim.AddKey(simulator.Key{Secret: secretB, StartSpendUSD: 1})
	return sim, serve(t, sim)
}

func TestFaults(t *testing.T) {
	tests := []struct {
		fault simulator.Fault
		check func(t *testing.T, a, normal answer)
	}{
		{simulator.FaultServerError, func(t *testing.T, a, _ answer) {
			if a.status != 500 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") ||
				!bytes.Contains(a.body, []byte("<html>")) {
				t.Errorf("got %d %q %q, want 500 with an HTML page",
					a.status, a.header.Get("Content-Type"), a.body)
			}
		}},
		{simulator.FaultRateLimited, func(t *testing.T, a, _ answer) {
			if a.status != 429 || a.header.Get("Retry-After") != "7" {
				t.Errorf("got %d Retry-After %q, want 429 with Retry-After 7",
					a.status, a.header.Get("Retry-After"))
			}
			if e := errorOf(t, a.body); e["code"] != "429" || e["type"] == "budget_exceeded" {
				t.Errorf("error = %v, want code 429 and no budget error", e)
			}
		}},
		{simulator.FaultTruncated, func(t *testing.T, a, normal answer) {
			if a.status != 200 || json.Valid(a.body) || len(a.body) == 0 ||
				!bytes.HasPrefix(normal.body, a.body) {
				t.Errorf("got %d %q, want 200 with a cut-off prefix of %q",
					a.status, a.body, normal.body)
			}
		}},
		{simulator.FaultInvalidKey, func(t *testing.T, a, _ answer) {
			if e := errorOf(t, a.body); a.status != 401 || e["type"] != "auth_error" {
				t.Errorf("got %d %v, want 401 auth_error", a.status, e)
			}
		}},
		{simulator.FaultBudgetError, func(t *testing.T, a, _ answer) {
			want := "Budget has been exceeded! Current cost: 2.0, Max budget: 10.0"
			if e := errorOf(t, a.body); a.status != 429 || e["type"] != "budget_exceeded" ||
				e["message"] != want || e["param"] != nil {
				t.Errorf("got %d %v, want 429 budget_exceeded %q", a.status, e, want)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.fault.String(), func(t *testing.T) {
			sim, base := faultSim(t)
			normal := mustAsk(t, base, secretA)

			sim.SetFault("", tc.fault)
			tc.check(t, mustAsk(t, base, secretA), normal)
			sim.SetFault("", simulator.FaultNone)

			if a := mustAsk(t, base, secretA); !bytes.Equal(a.body, normal.body) {
				t.Errorf("after clearing the fault got %d %s, want the normal answer",
					a.status, a.body)
			}
		})
	}
}

func TestFaultHang(t *testing.T) {
	sim, base := faultSim(t)
	sim.SetFault(secretA, simulator.FaultHang)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := ask(ctx, http.DefaultClient, base, secretA)

	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
	waitUntil(t, "the hung request ends with its client", func() bool {
		return sim.InFlight() == 0
	})
	if a := mustAsk(t, base, secretB); a.status != 200 {
		t.Errorf("key B status = %d, want 200: the hang was set for key A only", a.status)
	}
}

func TestFaultPerKeyWinsOverGlobal(t *testing.T) {
	sim, base := faultSim(t)
	statuses := func() [2]int {
		return [2]int{mustAsk(t, base, secretA).status, mustAsk(t, base, secretB).status}
	}

	sim.SetFault(secretA, simulator.FaultServerError)
	if got := statuses(); got != [2]int{500, 200} {
		t.Errorf("per-key fault on A: statuses %v, want [500 200]", got)
	}
	sim.SetFault("", simulator.FaultInvalidKey)
	if got := statuses(); got != [2]int{500, 401} {
		t.Errorf("with a global fault too: statuses %v, want [500 401]", got)
	}
	sim.SetFault(secretA, simulator.FaultNone)
	if got := statuses(); got != [2]int{401, 401} {
		t.Errorf("per-key fault cleared: statuses %v, want [401 401]", got)
	}
	sim.SetFault("", simulator.FaultNone)
	if got := statuses(); got != [2]int{200, 200} {
		t.Errorf("all cleared: statuses %v, want [200 200]", got)
	}
}

func TestFaultOnUnknownKey(t *testing.T) {
	sim, base := faultSim(t)
	sim.SetFault("", simulator.FaultServerError)

	if a := mustAsk(t, base, "sk-nobody-0000000000"); a.status != 500 {
		t.Errorf("status = %d, want 500: a global fault answers every request", a.status)
	}
}

func TestSetHandler(t *testing.T) {
	sim, base := faultSim(t)
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
	}

	sim.SetFault("", simulator.FaultServerError)
	sim.SetHandler(secretA, status(http.StatusTeapot))
	if a := mustAsk(t, base, secretA); a.status != http.StatusTeapot {
		t.Errorf("key handler over a fault: status %d, want 418", a.status)
	}
	sim.SetHandler("", status(http.StatusAccepted))
	if got := [2]int{mustAsk(t, base, secretA).status, mustAsk(t, base, secretB).status}; got !=
		[2]int{418, 202} {
		t.Errorf("key and global handlers: statuses %v, want [418 202]", got)
	}
	sim.SetHandler(secretA, nil)
	sim.SetHandler("", nil)
	if a := mustAsk(t, base, secretA); a.status != 500 {
		t.Errorf("handlers cleared: status %d, want the fault's 500", a.status)
	}
}

func TestFaultChangesUnderLoad(t *testing.T) {
	sim, base := faultSim(t)
	stop := make(chan struct{})
	var toggler sync.WaitGroup
	toggler.Go(func() {
		for f := simulator.FaultNone; ; f ^= simulator.FaultServerError {
			select {
			case <-stop:
				return
			default:
				sim.SetFault("", f)
				sim.SetLatency(time.Duration(f) * time.Microsecond)
			}
		}
	})

	var clients sync.WaitGroup
	bad := make(chan int, 400)
	for range 8 {
		clients.Go(func() {
			for range 50 {
				a, err := ask(context.Background(), http.DefaultClient, base, secretA)
				if err != nil || (a.status != 200 && a.status != 500) {
					bad <- a.status
				}
			}
		})
	}
	clients.Wait()
	close(stop)
	toggler.Wait()
	close(bad)

	for status := range bad {
		t.Errorf("answer %d while faults changed, want 200 or 500", status)
	}
	if got := sim.RequestsFor(secretA); got != 400 {
		t.Errorf("RequestsFor = %d, want 400", got)
	}
}

func TestLatencyHonoured(t *testing.T) {
	const latency = 50 * time.Millisecond
	sim := simulator.New(simulator.Options{Latency: latency})
	sim.AddKey(simulator.Key{Secret: secretA})
	base := serve(t, sim)

	began := time.Now()
	a := mustAsk(t, base, secretA)
	if elapsed := time.Since(began); a.status != 200 || elapsed < latency {
		t.Errorf("answered %d after %v, want 200 no sooner than %v", a.status, elapsed, latency)
	}
}

func TestLatencyCancelledByClient(t *testing.T) {
	sim, base := faultSim(t)
	sim.SetKeyLatency(secretA, time.Hour)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := ask(ctx, http.DefaultClient, base, secretA)
		errc <- err
	}()
	waitUntil(t, "the request waits out its latency", func() bool { return sim.InFlight() == 1 })

	if a := mustAsk(t, base, secretB); a.status != 200 {
		t.Errorf("key B without the override: status %d, want 200", a.status)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want the client's cancellation", err)
	}
	waitUntil(t, "the server stops waiting", func() bool { return sim.InFlight() == 0 })

	sim.SetKeyLatency(secretA, -1)
	if a := mustAsk(t, base, secretA); a.status != 200 {
		t.Errorf("override removed: status %d, want 200", a.status)
	}
}

func TestKeyLatencyOverridesDefault(t *testing.T) {
	sim, base := faultSim(t)
	sim.SetLatency(time.Hour)
	sim.SetKeyLatency(secretB, 0)

	if a := mustAsk(t, base, secretB); a.status != 200 {
		t.Errorf("key B with a zero override under an hour's default: status %d, want 200",
			a.status)
	}
}

func TestCloseEndsHeldRequests(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	base, err := sim.Start("")
	if err != nil {
		t.Fatal(err)
	}
	sim.SetFault("", simulator.FaultHang)

	errc := make(chan error, 1)
	go func() {
		_, err := ask(context.Background(), http.DefaultClient, base, secretA)
		errc <- err
	}()
	waitUntil(t, "the request hangs", func() bool { return sim.InFlight() == 1 })

	if err := sim.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; err == nil {
		t.Error("the hung request got an answer, want a broken connection")
	}
	waitUntil(t, "the hung handler returns", func() bool { return sim.InFlight() == 0 })
	if _, err := sim.Start(""); err == nil {
		t.Error("Start after Close succeeded, want an error")
	}
}
