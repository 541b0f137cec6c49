package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/config"
	"github.com/keyspend/keyspend_exporter/internal/simulator"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// demoOptions are the demo's own flags.
type demoOptions struct {
	keys    int
	backups int
	latency time.Duration
}

func parseDemoFlags(args []string) (demoOptions, error) {
	var o demoOptions
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.IntVar(&o.keys, "keys", 20, "number of simulated keys")
	fs.IntVar(&o.backups, "backups", 10, "number of backup keys in the pool")
	fs.DurationVar(&o.latency, "latency", 50*time.Millisecond, "simulated upstream latency")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.keys < 1 || o.keys > 100000:
		return o, errors.New("demo: --keys must be from 1 to 100000")
	case o.backups < 0 || o.backups > 100000:
		return o, errors.New("demo: --backups must be from 0 to 100000")
	case o.latency < 0:
		return o, errors.New("demo: --latency must not be negative")
	}
	return o, nil
}

// demo runs the exporter against a simulated LiteLLM whose keys spend
// money as time passes, on a throwaway embedded store unless
// KEYSPEND_DATA_DIR or KEYSPEND_MONGODB_URI says otherwise.
func demo(args []string) int {
	opts, err := parseDemoFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return fail(err)
	}
	cfg, cleanup, err := demoConfig()
	if err != nil {
		return fail(err)
	}
	defer cleanup()

	sim := simulator.New(simulator.Options{Latency: opts.latency})
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		return fail(fmt.Errorf("start simulator: %w", err))
	}
	defer sim.Close()
	cfg.LiteLLMURL = simURL

	logger := newLogger(cfg, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := newApp(cfg, logger)
	if err != nil {
		return fail(err)
	}
	ids, err := seedDemo(ctx, a.store, sim, opts)
	if err != nil {
		a.close()
		return fail(err)
	}
	go keepUsed(ctx, a.store, ids, logger)

	fmt.Printf("keyspend_exporter demo: %d keys, %d backups, simulated LiteLLM at %s\n",
		opts.keys, opts.backups, simURL)
	fmt.Printf("metrics at http://localhost%s/metrics, status page at http://localhost%s/\n",
		portOf(cfg.ListenAddress), portOf(cfg.ListenAddress))
	if err := a.serve(ctx); err != nil {
		return fail(err)
	}
	return 0
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i:]
		}
	}
	return addr
}

// demoConfig reads the configuration and applies the demo's defaults where
// the environment is silent: a temporary data directory and a 5s interval,
// so rotations happen within a couple of minutes.
func demoConfig() (config.Config, func(), error) {
	cfg, err := config.Load()
	if err != nil {
		return cfg, func() {}, err
	}
	if _, set := os.LookupEnv("KEYSPEND_CHECK_INTERVAL"); !set {
		cfg.CheckInterval = 5 * time.Second
	}
	if _, set := os.LookupEnv("KEYSPEND_IDLE_CHECK_INTERVAL"); !set {
		cfg.IdleCheckInterval = cfg.CheckInterval
	}
	if _, set := os.LookupEnv("KEYSPEND_ROTATION_GRACE"); !set {
		cfg.RotationGrace = 2 * cfg.StoreTimeout
	}
	cfg.UpstreamH2C = true
	cleanup := func() {}
	if _, set := os.LookupEnv("KEYSPEND_DATA_DIR"); !set && cfg.MongoDBURI == "" {
		dir, err := os.MkdirTemp("", "keyspend-demo-")
		if err != nil {
			return cfg, cleanup, fmt.Errorf("demo data directory: %w", err)
		}
		cfg.DataDir = dir
		cleanup = func() { os.RemoveAll(dir) }
	}
	return cfg, cleanup, cfg.Validate()
}

// seedDemo fills an empty store with demo keys and backups, and teaches the
// simulator every secret the store holds, so a rerun on the same data
// directory works too. It returns the ids of the keys.
func seedDemo(ctx context.Context, st *store.Store, sim *simulator.Simulator,
	o demoOptions) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.EnsureIndexes(ctx); err != nil {
		return nil, err
	}
	keys, _, err := st.LoadKeys(ctx)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		if err := importDemo(ctx, st, o); err != nil {
			return nil, err
		}
		if keys, _, err = st.LoadKeys(ctx); err != nil {
			return nil, err
		}
	}
	return teachSimulator(ctx, st, sim, keys)
}

func importDemo(ctx context.Context, st *store.Store, o demoOptions) error {
	keys := make([]store.KeyImport, o.keys)
	for i := range keys {
		keys[i] = store.KeyImport{ID: fmt.Sprintf("demo-key-%03d", i+1), Provider: "litellm",
			Secret: demoSecret()}
	}
	backups := make([]store.Backup, o.backups)
	for i := range backups {
		backups[i] = store.Backup{ID: fmt.Sprintf("demo-backup-%03d", i+1), Provider: "litellm",
			Secret: demoSecret()}
	}
	if _, _, err := st.ImportKeys(ctx, keys); err != nil {
		return err
	}
	_, err := st.ImportBackups(ctx, backups)
	return err
}

func demoSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "sk-demo-" + hex.EncodeToString(b)
}

// teachSimulator registers the store's secrets with spend that grows: keys
// start between 30% and 96% of the threshold and spend 2 to 6 cents a
// second, so the first crosses within seconds and most within minutes.
// Backups spend nothing until first checked.
func teachSimulator(ctx context.Context, st *store.Store, sim *simulator.Simulator,
	keys []store.Key) ([]string, error) {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
		start := 9.95 * (0.96 - 0.66*float64(i)/float64(max(len(keys), 1)))
		sk := simulator.Key{Secret: k.Secret, Alias: k.ID, StartSpendUSD: start,
			RateUSDPerSecond: 0.02 + 0.04*mrand.Float64()}
		if i%2 == 1 {
			budget := 10.0
			sk.MaxBudgetUSD = &budget
		}
		sim.AddKey(sk)
	}
	backups, err := st.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range backups {
		sim.AddKey(simulator.Key{Secret: b.Secret, Alias: b.ID, RateUSDPerSecond: 0.02,
			SpendFromFirstCheck: true})
	}
	return ids, nil
}

// keepUsed plays the proxy that uses the demo keys: it marks them used
// every half minute so they stay on the active interval.
func keepUsed(ctx context.Context, st *store.Store, ids []string, logger *slog.Logger) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		if err := st.MarkUsed(ctx, ids, time.Now()); err != nil && ctx.Err() == nil {
			logger.Debug("demo could not mark keys used", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
