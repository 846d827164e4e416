// Command keyalertd consumes the keyword stream written by the keyalert Fluent
// Bit plugin into per-minute windows in Redis and serves them over HTTP.
// Settings: flags with KEYALERT_* environment fallbacks (backend/README.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/config"
	"github.com/keyalert/keyalert/backend/ingest"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run is main without the process exit: 0 after a clean stop, 2 for bad
// settings, 1 for other startup failures.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := config.Load(args, getenv, stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "keyalertd: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)
	if getenv("GOGC") == "" {
		// The live heap is a few MB of batches in flight; at the default 100
		// the collector runs so often it costs as much CPU as the work.
		debug.SetGCPercent(GCPercent)
	}

	rdb := redis.NewUniversalClient(cfg.Redis.Options())
	defer rdb.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	store := window.NewStore(rdb, cfg.Stream)
	consumer, err := ingest.New(ingest.Options{
		Client:        rdb,
		Stream:        cfg.Stream,
		Group:         cfg.Group,
		Consumer:      cfg.Consumer,
		Retention:     cfg.Retention,
		BatchSize:     cfg.BatchSize,
		Workers:       cfg.Workers,
		Block:         cfg.Block,
		ClaimIdle:     cfg.ClaimIdle,
		ClaimInterval: cfg.ClaimInterval,
		MaxDeliveries: cfg.MaxDeliveries,
		Samples:       samplesOption(cfg.Samples),
		DeadMaxLen:    cfg.DeadMaxLen,
		DrainTimeout:  cfg.ShutdownTimeout,
		Logger:        log,
		Registerer:    reg,
		// The alert engine hooks in here (OnApplied) and below (Mount).
	})
	if err != nil {
		log.Error("consumer setup", "err", err)
		return 1
	}
	handler, err := api.NewRouter(api.Options{
		Store:          store,
		Tokens:         cfg.APITokens,
		InsecureNoAuth: cfg.InsecureNoAuth,
		Retention:      cfg.Retention,
		Gatherer:       reg,
		Logger:         log,
		Ready: func(ctx context.Context) error {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return consumer.Ready()
		},
	})
	if err != nil {
		log.Error("router setup", "err", err)
		return 1
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "keyalertd: KEYALERT_LISTEN = %q: %v\n", cfg.Listen, err)
		return 1
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.InsecureNoAuth && len(cfg.APITokens) == 0 {
		log.Warn("serving /api/v1 without authentication (--insecure-no-auth)")
	}
	log.Info("keyalertd starting", "listen", ln.Addr().String(), "redis", cfg.Redis.Redacted(),
		"stream", cfg.Stream, "group", cfg.Group, "consumer", cfg.Consumer, "retention", cfg.Retention.String())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		_ = consumer.Run(ctx) // returns after the batches in flight are acknowledged
	}()

	code := 0
	select {
	case <-ctx.Done():
		log.Info("stopping: finishing the batch in flight")
	case err := <-serveErr:
		log.Error("http server stopped", "err", err)
		code = 1
		stop()
	}
	// The consumer stops within one read (Block) plus the batch in flight.
	select {
	case <-consumed:
	case <-time.After(cfg.ShutdownTimeout + cfg.Block):
		log.Warn("consumer did not stop in time; its unacknowledged entries stay pending")
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	log.Info("keyalertd stopped")
	return code
}

// GCPercent is keyalertd's GOGC unless the environment sets one.
const GCPercent = 400

// samplesOption maps the setting (0 = keep none) to ingest's convention
// (0 = default, -1 = none).
func samplesOption(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(cfg.LogLevel) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
