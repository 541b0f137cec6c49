package simulator_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/keyspend/keyspend_exporter/internal/simulator"
)

// parallel is how many checks the concurrency tests hold in flight at once.
const parallel = 500

// h2cClient speaks unencrypted HTTP/2 with prior knowledge, and only that.
func h2cClient(t testing.TB) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// http1Client speaks HTTP/1.1 on its own transport, one connection per
// request in flight.
func http1Client(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: parallel}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// gate holds every request until release is closed, then answers 200.
func gate(release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	}
}

// result is one answer of a burst, or why there was none.
type result struct {
	a   answer
	err error
}

// burst sends n requests at once and returns where their results arrive.
func burst(client *http.Client, base string, n int) <-chan result {
	out := make(chan result, n)
	for range n {
		go func() {
			a, err := ask(context.Background(), client, base, secretA)
			out <- result{a, err}
		}()
	}
	return out
}

// holdAll sends a burst that the simulator holds, checks that every request
// was in flight at the same moment, then lets them all be answered.
func holdAll(t *testing.T, sim *simulator.Simulator, client *http.Client, base, proto string) {
	release := make(chan struct{})
	sim.SetHandler("", gate(release))
	results := burst(client, base, parallel)

	waitUntil(t, "every request of the burst is in flight", func() bool {
		return sim.InFlight() == parallel
	})
	if got := sim.MaxInFlight(); got != parallel {
		t.Errorf("MaxInFlight = %d, want %d", got, parallel)
	}
	close(release)

	for range parallel {
		r := <-results
		if r.err != nil || r.a.status != http.StatusOK || r.a.proto != proto {
			t.Fatalf("answer %d %s, error %v; want 200 over %s",
				r.a.status, r.a.proto, r.err, proto)
		}
	}
}

func TestParallelChecksShareOneH2CConnection(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	sim.AddKey(simulator.Key{Secret: secretA})
	base := start(t, sim)
	client := h2cClient(t)

	// One check first, so the client knows the server's stream limit
	// before the burst and has no reason to open a second connection.
	a, err := ask(context.Background(), client, base, secretA)
	if err != nil || a.status != http.StatusOK || a.proto != "HTTP/2.0" {
		t.Fatalf("first check: %d %s, error %v; want 200 over HTTP/2.0", a.status, a.proto, err)
	}
	sim.ResetMaxInFlight()

	holdAll(t, sim, client, base, "HTTP/2.0")
	if got := sim.Connections(); got != 1 {
		t.Errorf("Connections = %d, want 1: every check on one h2c connection", got)
	}
}

func TestParallelChecksOverHTTP1(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	sim.AddKey(simulator.Key{Secret: secretA})
	base := start(t, sim)

	holdAll(t, sim, http1Client(t), base, "HTTP/1.1")
	if got := sim.Connections(); got != parallel {
		t.Errorf("Connections = %d, want %d: HTTP/1.1 needs one per request in flight",
			got, parallel)
	}
}

// BenchmarkKeyInfo measures one /key/info round trip while many run in
// parallel, the way a check cycle calls the upstream.
func BenchmarkKeyInfo(b *testing.B) {
	clients := []struct {
		name   string
		client func(testing.TB) *http.Client
	}{{"h2c", h2cClient}, {"http1", http1Client}}

	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			sim := simulator.New(simulator.Options{})
			sim.AddKey(simulator.Key{Secret: secretA, RateUSDPerSecond: 0.01})
			base := start(b, sim)
			client := c.client(b)

			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchCheck(b, client, base)
				}
			})
		})
	}
}

// benchCheck is one check of the benchmark.
func benchCheck(b *testing.B, client *http.Client, base string) {
	req, err := http.NewRequest(http.MethodGet, base+"/key/info", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secretA)
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Errorf("status %d, want 200", resp.StatusCode)
	}
}
