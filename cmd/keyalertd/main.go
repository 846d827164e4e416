// Command keyalertd consumes the keyword stream written by the keyalert Fluent
// Bit plugin into per-minute windows in Redis, evaluates the alert rules and
// pages PagerDuty, and serves counts, rules, silences and alerts over HTTP.
// Settings: flags with KEYALERT_* environment fallbacks (README.md). The
// wiring is in server.go, so tests can run a whole server in-process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/keyalert/keyalert/backend/buildinfo"
	"github.com/keyalert/keyalert/backend/config"
	"github.com/keyalert/keyalert/pkg/redislog"
	"github.com/keyalert/keyalert/pkg/redisurl"
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
	// go-redis repeats per connection attempt what the consumer and the API
	// already log once; keep it in the structured log, at debug.
	redislog.Route(log, slog.LevelDebug)
	if getenv("GOGC") == "" {
		// The live heap is a few MB of batches in flight; at the default 100
		// the collector runs so often it costs as much CPU as the work.
		debug.SetGCPercent(GCPercent)
	}

	srv, err := newServer(cfg, serverOptions{Log: log})
	if err != nil {
		fmt.Fprintf(stderr, "keyalertd: %v\n", err)
		if se := (*setupError)(nil); errors.As(err, &se) {
			return se.code
		}
		return 1
	}
	if cfg.API.InsecureNoAuth && len(cfg.API.Tokens) == 0 {
		log.Warn("serving /api/v1 without authentication (--insecure-no-auth)")
	}
	pdURL, _ := url.Parse(cfg.PagerDuty.URL) // validated by config
	log.Info("keyalertd starting", "version", buildinfo.Version(), "listen", srv.Addr(), "redis", redisurl.Redact(cfg.RedisURL),
		"stream", cfg.Ingest.Stream, "group", cfg.Ingest.Group, "consumer", cfg.Ingest.Consumer, "retention", cfg.Ingest.Retention.String(),
		"pagerduty_url", pdURL.Redacted(), "default_routing_key", cfg.DefaultRoutingKey != "",
		"eval_shards", cfg.Lease.Shards, "lease_ttl", cfg.Lease.TTL.String(), "lease_owner", srv.Owner(),
		"stream_shards", cfg.Ingest.Shards, "stream_shards_consumed", srv.consumer.Width(), "wait_replicas", cfg.Ingest.WaitReplicas)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		log.Error("keyalertd stopped", "err", err)
		if se := (*setupError)(nil); errors.As(err, &se) {
			return se.code
		}
		return 1
	}
	log.Info("keyalertd stopped")
	return 0
}

// GCPercent is keyalertd's GOGC unless the environment sets one.
const GCPercent = 400

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
