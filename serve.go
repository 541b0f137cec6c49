package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/keyspend/keyspend_exporter/collector"
	"github.com/keyspend/keyspend_exporter/internal/config"
	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/store"
	kweb "github.com/keyspend/keyspend_exporter/internal/web"
)

// shutdownTimeout bounds how long a stop waits for checks in flight and the
// last store writes.
const shutdownTimeout = 15 * time.Second

func serve() int {
	cfg, err := config.Load()
	if err != nil {
		return fail(err)
	}
	logger := newLogger(cfg, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := newApp(cfg, logger)
	if err != nil {
		return fail(err)
	}
	if err := a.serve(ctx); err != nil {
		return fail(err)
	}
	return 0
}

func newLogger(cfg config.Config, w *os.File) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	logger := slog.New(slog.NewTextHandler(w, opts))
	if cfg.LogFormat == "json" {
		logger = slog.New(slog.NewJSONHandler(w, opts))
	}
	for _, name := range config.Unknown() {
		logger.Warn("ignoring an unknown variable; see --help for the ones read", "variable", name)
	}
	return logger
}

// versionString is the version set at build time with -ldflags, or the
// module's version as Go recorded it ("(devel)" for a local build).
func versionString() string {
	if version.Version != "" {
		return version.Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

func versionLine() string {
	return fmt.Sprintf("keyspend_exporter %s (revision %s, %s)", versionString(), version.Revision,
		version.GoVersion)
}

// app is the running exporter: store, checker, rotator and web endpoints.
type app struct {
	cfg      config.Config
	logger   *slog.Logger
	embedded *store.Embedded
	store    *store.Store
	checker  *collector.Checker
	rotator  *rotator.Rotator
	registry *prometheus.Registry

	indexed    bool
	lastPruned time.Time
}

// openStore connects to the configured MongoDB, or starts the embedded one.
func openStore(cfg config.Config, logger *slog.Logger) (*store.Store, *store.Embedded, error) {
	uri := cfg.MongoDBURI
	var emb *store.Embedded
	if uri == "" {
		var err error
		if emb, err = store.StartEmbedded(cfg.DataDir, logger); err != nil {
			return nil, nil, err
		}
		uri = emb.URI()
		logger.Info("embedded store running", "data_dir", cfg.DataDir)
	}
	st, err := store.Open(uri, storeNames(cfg), logger)
	if err != nil {
		if emb != nil {
			emb.Close()
		}
		return nil, nil, err
	}
	return st, emb, nil
}

func storeNames(cfg config.Config) store.Names {
	return store.Names{
		Database: cfg.Database, Keys: cfg.KeysCollection, Backups: cfg.BackupsCollection,
		History: cfg.HistoryCollection, Rotations: cfg.RotationCollection,
	}
}

func newApp(cfg config.Config, logger *slog.Logger) (*app, error) {
	if cfg.WebConfigFile != "" {
		if err := web.Validate(cfg.WebConfigFile); err != nil {
			return nil, fmt.Errorf("KEYSPEND_WEB_CONFIG_FILE: %w", err)
		}
	}
	st, emb, err := openStore(cfg, logger)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, logger: logger, store: st, embedded: emb}

	var rot collector.Rotator
	if cfg.Rotation != config.RotationOff {
		a.rotator = rotator.New(rotator.Options{
			Store: st, Logger: logger, DryRun: cfg.Rotation == config.RotationDryRun,
			Confirmations: cfg.RotationConfirmations, Grace: cfg.RotationGrace,
			Owner: owner(), PoolRetry: cfg.CheckInterval,
		})
		rot = a.rotator
	}
	a.checker = collector.NewChecker(collector.Options{
		Store: st, Client: newHTTPClient(cfg), Logger: logger, Rotator: rot,
		Interval: cfg.CheckInterval, IdleInterval: cfg.IdleCheckInterval,
		ActiveWindow: cfg.ActiveWindow, Timeout: cfg.CheckTimeout, StoreTimeout: cfg.StoreTimeout,
		MaxConcurrency: cfg.MaxConcurrency, ThresholdUSD: cfg.ThresholdUSD, BudgetUSD: cfg.BudgetUSD,
		BaseURLs:     map[string]string{"litellm": cfg.LiteLLMURL, "openrouter": cfg.OpenRouterURL},
		ReplicaCount: cfg.ReplicaCount, ReplicaIndex: cfg.ReplicaIndex,
		HistoryBuffer: cfg.HistoryBuffer, AfterCycle: a.afterCycle,
	})
	a.registry = a.newRegistry()
	return a, nil
}

// owner names this process in the rotation ledger: host, pid and a random
// part, so two replicas on one host are told apart.
func owner() string {
	host, _ := os.Hostname()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

func (a *app) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	var counter collector.RotationCounter
	if a.rotator != nil {
		counter = a.rotator
	}
	reg.MustRegister(
		collector.New(a.checker, counter, a.cfg.BackupPoolLow),
		buildInfo(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

func buildInfo() prometheus.Collector {
	v := versionString()
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "keyspend", Name: "build_info",
		Help: "A metric with a constant 1 labelled by the exporter's version and Go version.",
		ConstLabels: prometheus.Labels{
			"version": v, "revision": version.Revision, "goversion": version.GoVersion,
		},
	}, func() float64 { return 1 })
}

// newHTTPClient builds the one client every check shares. Timeouts come
// from each check's context; the transport keeps enough idle connections
// for every key to reuse one.
func newHTTPClient(cfg config.Config) *http.Client {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{Timeout: cfg.CheckTimeout,
			KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   4096,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.CheckTimeout,
		ResponseHeaderTimeout: cfg.CheckTimeout,
		ForceAttemptHTTP2:     true,
	}
	if cfg.UpstreamH2C {
		// Without HTTP/1 in the set, plain http:// URLs are spoken to with
		// HTTP/2 directly, so thousands of checks share a few connections.
		p := new(http.Protocols)
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = p
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// afterCycle does the store upkeep between cycles: indexes once the store
// answers, rotation recovery, and history pruning once an hour.
func (a *app) afterCycle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	defer cancel()
	if !a.indexed {
		if err := a.store.EnsureIndexes(ctx); err != nil {
			a.logger.Warn("could not create store indexes, will retry next cycle", "err", err)
			return
		}
		a.indexed = true
	}
	if a.rotator != nil {
		if _, err := a.rotator.Recover(ctx); err != nil {
			a.logger.Warn("rotation recovery failed, will retry next cycle", "err", err)
		}
	}
	if time.Since(a.lastPruned) > time.Hour {
		n, err := a.store.PruneHistory(ctx, time.Now().Add(-a.cfg.HistoryRetention))
		if err == nil {
			a.lastPruned = time.Now()
			a.logger.Debug("pruned spend history", "deleted", n)
		}
	}
}

// serve listens, runs the check loop until ctx ends, then shuts down:
// checks in flight are cancelled, pending history is written, and the store
// is closed.
func (a *app) serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.ListenAddress)
	if err != nil {
		a.close()
		return fmt.Errorf("KEYSPEND_LISTEN_ADDRESS: %w", err)
	}
	return a.serveOn(ctx, ln)
}

func (a *app) serveOn(ctx context.Context, ln net.Listener) error {
	h := kweb.New(a.checker, a.store, a.registry, a.logger, versionString())
	// The server's own messages are about clients (a plain request to the
	// TLS port, a dropped connection), not about the exporter: debug level.
	srv := &http.Server{Handler: h.Mux(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(a.logger.Handler(), slog.LevelDebug)}
	webConfig := a.cfg.WebConfigFile
	systemd := false
	flags := &web.FlagConfig{WebConfigFile: &webConfig, WebSystemdSocket: &systemd,
		WebListenAddresses: &[]string{ln.Addr().String()}}

	webErr := make(chan error, 1)
	go func() { webErr <- web.Serve(ln, srv, flags, a.logger) }()
	a.logger.Info("keyspend_exporter started", "version", versionLine(), "address", ln.Addr().String())

	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		a.checker.Run(ctx)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-webErr:
	}
	return errors.Join(err, a.shutdown(srv, loopDone))
}

func (a *app) shutdown(srv *http.Server, loopDone <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	a.logger.Info("shutting down")
	err := srv.Shutdown(ctx)
	select {
	case <-loopDone:
	case <-ctx.Done():
		a.logger.Warn("check loop did not stop in time")
	}
	if pending := a.checker.Flush(ctx); pending > 0 {
		a.logger.Warn("history points not written at exit", "points", pending)
	}
	a.close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (a *app) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.store.Close(ctx)
	if a.embedded != nil {
		a.embedded.Close()
	}
}
