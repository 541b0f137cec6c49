// Package simulator is a stand-in for a LiteLLM proxy. It answers
// GET /key/info, as LiteLLM does, for keys whose spend grows steadily with
// time, so the exporter's demo and tests can watch thresholds being crossed,
// budgets running out and upstream failures happening, with no real upstream.
//
// The server speaks HTTP/1.1 and unencrypted HTTP/2 on the same port. HTTP/2
// without TLS is spoken with prior knowledge (h2c): the client sends the
// HTTP/2 preface at once, without an Upgrade round trip. Thousands of
// parallel checks then share one connection instead of needing thousands of
// sockets. A client asks for it by enabling only unencrypted HTTP/2 on its
// transport:
//
//	var p http.Protocols
//	p.SetUnencryptedHTTP2(true)
//	client := &http.Client{Transport: &http.Transport{Protocols: &p}}
//
// A transport with HTTP/1 enabled as well uses HTTP/1.1 for http:// URLs.
package simulator

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Key is one simulated upstream key and how it spends.
type Key struct {
	// Secret is the bearer token a client presents. The simulator never
	// logs it; an authentication error quotes only its last four
	// characters, as LiteLLM does.
	Secret string
	// Alias is reported as key_alias; empty means null.
	Alias string

	// StartSpendUSD is the spend when the key's clock starts.
	StartSpendUSD float64
	// RateUSDPerSecond is how fast the spend grows once the clock runs.
	RateUSDPerSecond float64
	// MaxBudgetUSD is the key's own cap; nil is reported as null.
	MaxBudgetUSD *float64

	// BudgetErrorWhenExceeded makes /key/info answer with LiteLLM's 429
	// budget error once spend reaches the budget. LiteLLM itself keeps
	// answering 200 there, which is the default.
	BudgetErrorWhenExceeded bool
	// SpendFromFirstCheck holds the key's clock until the first /key/info
	// request about it, as for a backup key that spends nothing while it
	// waits in the pool.
	SpendFromFirstCheck bool
}

// Options configure a Simulator.
type Options struct {
	// Latency delays every request before it is answered.
	Latency time.Duration
	// Now is the clock spend is computed from; nil means time.Now.
	Now func() time.Time
	// RetryAfter is sent with FaultRateLimited, in whole seconds; zero
	// means one second.
	RetryAfter time.Duration
}

// Simulator is a simulated LiteLLM proxy. All of its methods are safe for
// concurrent use, also while requests are being served.
type Simulator struct {
	now        func() time.Time
	retryAfter string

	mu         sync.RWMutex
	keys       map[string]*key
	latency    time.Duration
	keyLatency map[string]time.Duration
	faults     map[string]Fault
	handlers   map[string]http.HandlerFunc

	requests    atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	connections atomic.Int64
	perSecret   sync.Map // secret -> *atomic.Int64

	done      chan struct{}
	closeOnce sync.Once
	srvMu     sync.Mutex
	srv       *http.Server
	serveErr  chan error
}

// key is a registered Key with the state of its spend clock.
type key struct {
	Key
	token   string
	since   time.Time
	started bool
}

// New returns a Simulator with no keys. It serves nothing until Start is
// called or its Handler is mounted.
func New(opts Options) *Simulator {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	retry := int64(opts.RetryAfter / time.Second)
	if retry <= 0 {
		retry = 1
	}

	return &Simulator{
		now:        now,
		retryAfter: strconv.FormatInt(retry, 10),
		keys:       map[string]*key{},
		latency:    opts.Latency,
		keyLatency: map[string]time.Duration{},
		faults:     map[string]Fault{},
		handlers:   map[string]http.HandlerFunc{},
		done:       make(chan struct{}),
	}
}

// AddKey registers k, replacing any key with the same secret. The key's
// clock starts now, or at its first check with SpendFromFirstCheck.
func (s *Simulator) AddKey(k Key) {
	if k.MaxBudgetUSD != nil {
		budget := *k.MaxBudgetUSD
		k.MaxBudgetUSD = &budget // the caller may reuse its variable
	}
	kk := &key{Key: k, token: tokenOf(k.Secret)}
	if !k.SpendFromFirstCheck {
		kk.since, kk.started = s.now(), true
	}

	s.mu.Lock()
	s.keys[k.Secret] = kk
	s.mu.Unlock()
}

// RemoveKey forgets the key, so its secret is refused with 401 from then on,
// as LiteLLM refuses a deleted key.
func (s *Simulator) RemoveKey(secret string) {
	s.mu.Lock()
	delete(s.keys, secret)
	s.mu.Unlock()
}

// SetSpend restarts the key's clock from spend usd, as when a budget window
// resets and the spend drops. It reports whether the key exists.
func (s *Simulator) SetSpend(secret string, usd float64) bool {
	now := s.now()

	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[secret]
	if ok {
		k.StartSpendUSD, k.since, k.started = usd, now, true
	}
	return ok
}

// Spend is the key's spend at the simulator's current time. Asking does not
// start the clock of a key that waits for its first check.
func (s *Simulator) Spend(secret string) (float64, bool) {
	now := s.now()

	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[secret]
	if !ok {
		return 0, false
	}
	return k.spend(now), true
}

// SetLatency sets the delay applied to every request without a per-key
// override.
func (s *Simulator) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// SetKeyLatency overrides the delay for requests that present secret. A
// negative d removes the override.
func (s *Simulator) SetKeyLatency(secret string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d < 0 {
		delete(s.keyLatency, secret)
		return
	}
	s.keyLatency[secret] = d
}

// SetFault makes requests that present secret fail with f; secret "" sets
// the fault for every request. FaultNone clears it. A per-key fault wins
// over the one for every request.
func (s *Simulator) SetFault(secret string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == FaultNone {
		delete(s.faults, secret)
		return
	}
	s.faults[secret] = f
}

// SetHandler makes h answer the requests that present secret, after the
// latency; secret "" sets it for every request. A nil h clears it. A
// handler wins over any fault, and a per-key handler over the one for
// every request.
func (s *Simulator) SetHandler(secret string, h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.handlers, secret)
		return
	}
	s.handlers[secret] = h
}

// Requests is the number of requests received so far.
func (s *Simulator) Requests() int64 { return s.requests.Load() }

// InFlight is the number of requests being handled right now.
func (s *Simulator) InFlight() int64 { return s.inFlight.Load() }

// MaxInFlight is the largest number of requests ever handled at the same
// moment, since New or the last ResetMaxInFlight.
func (s *Simulator) MaxInFlight() int64 { return s.maxInFlight.Load() }

// ResetMaxInFlight lowers the high-water mark to the requests in flight now.
func (s *Simulator) ResetMaxInFlight() { s.maxInFlight.Store(s.inFlight.Load()) }

// RequestsFor is the number of /key/info requests that presented secret,
// whether or not a key with that secret exists.
func (s *Simulator) RequestsFor(secret string) int64 {
	if n, ok := s.perSecret.Load(secret); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// Connections is the number of connections the started server accepted. It
// shows whether parallel requests shared one HTTP/2 connection. It stays
// zero when the Handler is served by another server.
func (s *Simulator) Connections() int64 { return s.connections.Load() }

// spend is the key's spend at now; the clock never runs backwards.
func (k *key) spend(now time.Time) float64 {
	if !k.started {
		return k.StartSpendUSD
	}
	elapsed := now.Sub(k.since).Seconds()
	if elapsed < 0 {
		elapsed = 0
	}
	return k.StartSpendUSD + k.RateUSDPerSecond*elapsed
}

// exceeded reports whether spend has reached the key's own budget.
func (k *key) exceeded(spend float64) bool {
	return k.MaxBudgetUSD != nil && spend >= *k.MaxBudgetUSD
}

// tokenOf is the key's hashed token, which LiteLLM reports in place of the
// secret: the hex SHA-256 of the secret.
func tokenOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// enter counts a request arriving and raises the high-water mark.
func (s *Simulator) enter() {
	s.requests.Add(1)
	n := s.inFlight.Add(1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			return
		}
	}
}

// countFor counts a request for secret.
func (s *Simulator) countFor(secret string) {
	n, ok := s.perSecret.Load(secret)
	if !ok {
		n, _ = s.perSecret.LoadOrStore(secret, new(atomic.Int64))
	}
	n.(*atomic.Int64).Add(1)
}
