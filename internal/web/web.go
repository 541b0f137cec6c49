// Package web serves the exporter's HTTP endpoints: /metrics, the status
// page and the health checks.
package web

import (
	"context"
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyspend/keyspend_exporter/collector"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

//go:embed status.html
var files embed.FS

var statusPage = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"percent": percent, "since": since,
	"round": func(d time.Duration) time.Duration { return d.Round(time.Millisecond) },
}).ParseFS(files, "status.html"))

// Handler serves every endpoint.
type Handler struct {
	checker  *collector.Checker
	store    *store.Store
	gatherer prometheus.Gatherer
	logger   *slog.Logger
	version  string
}

// New builds the endpoints' handler.
func New(checker *collector.Checker, st *store.Store, g prometheus.Gatherer, logger *slog.Logger,
	version string) *Handler {
	return &Handler{checker: checker, store: st, gatherer: g, logger: logger, version: version}
}

// Mux routes the endpoints.
func (h *Handler) Mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.gatherer, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(h.logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("Healthy.\n"))
	})
	mux.HandleFunc("GET /-/ready", h.ready)
	mux.HandleFunc("GET /{$}", h.status)
	return mux
}

func (h *Handler) ready(w http.ResponseWriter, _ *http.Request) {
	if !h.checker.Ready() {
		http.Error(w, "Not ready: the store has not answered or the first cycle has not finished.",
			http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("Ready.\n"))
}

// statusView is what the status page shows.
type statusView struct {
	Version   string
	Now       time.Time
	Snapshot  collector.Snapshot
	Rotations []store.Rotation
	Backups   map[string]int
	StoreErr  string
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	v := statusView{Version: h.version, Now: time.Now(), Snapshot: h.checker.Snapshot()}
	v.Backups = v.Snapshot.Fleet.BackupsAvailable

	// The page reads recent rotations from the store with a short limit, so
	// a slow store makes the page say so instead of hanging.
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	rots, err := h.store.RecentRotations(ctx, 20)
	if err != nil {
		v.StoreErr = "recent rotations unavailable: the store did not answer"
	}
	v.Rotations = rots

	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := statusPage.Execute(w, v); err != nil {
		h.logger.Warn("render status page", "err", err)
	}
}

func percent(spend, threshold float64) float64 {
	if threshold <= 0 {
		return 0
	}
	p := spend / threshold * 100
	if p > 100 {
		return 100
	}
	return p
}

func since(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}
