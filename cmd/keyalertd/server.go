package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/buildinfo"
	"github.com/keyalert/keyalert/backend/config"
	"github.com/keyalert/keyalert/backend/console"
	"github.com/keyalert/keyalert/backend/ingest"
	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/redisguard"
	"github.com/keyalert/keyalert/backend/rollup"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/session"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/backoff"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// serverOptions are what a test changes about a server; the binary uses the
// zero value.
type serverOptions struct {
	// Now is the clock of counting, rules, silences and alerts (nil:
	// time.Now). Tests set it to replay old logs and to move time on; leases,
	// retries and timeouts always run on the real clock.
	Now func() time.Time
	// Log is the logger (nil: slog.Default()).
	Log *slog.Logger
	// WrapAPI, if set, wraps the API router (tests check every exchange
	// against its OpenAPI description, the web console's included).
	WrapAPI func(http.Handler) http.Handler
}

// server is one keyalertd: the consumer counting the stream, the alert engine
// evaluating the rules of the shards it holds, the outbox sender while it
// holds that lease, and the HTTP API. newServer connects and listens; Run
// serves until its context ends and then stops everything.
type server struct {
	cfg   *config.Config
	log   *slog.Logger
	now   func() time.Time
	owner string // this replica's token in the lease keys

	rdb      redis.UniversalClient
	reg      *prometheus.Registry
	ln       net.Listener
	http     *http.Server
	consumer *ingest.Fleet // the consumers of the stream's shards
	engine   *alert.Engine
	alerts   *alert.Store
	shards   *lease.Shards
	sender   *lease.Lease
	outbox   *outbox.Outbox
	guard    *redisguard.Guard
	rollers  []*rollup.Roller // hourly tier, one per stream shard, each under its own lease
	rollOpt  rollup.Options   // for the rollers of shards added while running
	// notifiers are the integrations the outbox sends through, by name.
	notifiers *notify.Registry
}

// setupError is a startup failure; code is the exit status (2 for a bad
// setting, 1 otherwise).
type setupError struct {
	code int
	err  error
}

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// newServer wires a server and opens its listener; nothing runs until Run.
func newServer(cfg *config.Config, o serverOptions) (*server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	log := o.Log
	s := &server{cfg: cfg, log: log, now: o.Now}
	s.rdb = redis.NewUniversalClient(cfg.Redis.Options())
	fail := func(code int, err error) (*server, error) {
		s.rdb.Close()
		return nil, &setupError{code, err}
	}

	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := buildinfo.Register(s.reg); err != nil {
		return fail(1, err)
	}

	// A full Redis (maxmemory, noeviction) makes MULTI/EXEC answer only
	// EXECABORT: the hook puts the OOM cause into the error, the reporter
	// counts it and names it in the log once per interval.
	s.rdb.AddHook(redisoom.Hook{})
	oomTotal := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyalert_redis_oom_total",
		Help: "Redis writes refused because Redis reached its maxmemory (OOM command not allowed), as seen by the API, ingest, the outbox and the shard leases.",
	})
	s.reg.MustRegister(oomTotal)
	oom := redisoom.NewReporter(s.rdb, log, 0, oomTotal.Inc)

	// Reads sum every stream shard the fleet consumes (one when unsharded).
	counts := window.NewShardedStore(s.rdb, cfg.Ingest.Stream, func() int { return s.consumer.Width() })
	ruleStore := rules.NewStore(s.rdb, cfg.Rules, o.Now, log)
	sils := silence.NewStore(s.rdb, o.Now, log)
	tiOpt := cfg.TimeIntervals
	tiOpt.Logger = log
	intervals := timeinterval.NewStore(s.rdb, tiOpt, o.Now)
	sils.UseIntervals(intervals)
	defaultKey := cfg.DefaultRoutingKey
	s.notifiers = notify.NewRegistry()
	pd := pagerduty.NewClient(cfg.PagerDuty, nil)
	if err := s.notifiers.Register(pagerduty.Name, pd); err != nil {
		return fail(1, err)
	}
	recvOpt := cfg.Receivers
	recvOpt.PagerDuty = pd // named pagerduty receivers share the endpoint, timeout and pace
	receivers := receiver.NewStore(s.rdb, recvOpt, o.Now)
	obOpt := cfg.Outbox
	obOpt.Integrations, obOpt.Registerer, obOpt.OOM = s.notifiers.Names(), s.reg, oom
	obOpt.Receivers, obOpt.ReceiverTypes = receivers, receiver.Types
	s.outbox = outbox.New(s.rdb, obOpt, log)
	alerts := alert.NewStoreOptions(s.rdb, s.outbox, alert.RuleKeys{Rules: ruleStore, Default: defaultKey}, o.Now, log, cfg.Alerts)
	s.alerts = alerts
	s.owner = lease.NewOwner()
	leaseOpt := cfg.Lease
	leaseOpt.OOM = oom
	s.shards = lease.NewShards(s.rdb, alert.LeasePrefix, s.owner, leaseOpt, log)
	s.sender = lease.New(s.rdb, alert.OutboxLeaseKey, s.owner, cfg.Lease.TTL)
	alertOpt := cfg.Alert
	alertOpt.Registerer = s.reg
	s.engine = alert.New(alert.Config{Redis: s.rdb, Rules: ruleStore, Silences: sils, Counts: counts, Store: alerts,
		IngestCaughtUp: func() bool { return s.consumer != nil && s.consumer.CaughtUp() },
		Shards:         s.shards, Options: alertOpt, DefaultRoutingKey: defaultKey, DefaultReceivers: len(cfg.Outbox.DefaultReceivers) > 0,
		Now: o.Now, Log: log})
	s.registerLeaseMetrics()

	ingOpt := cfg.Ingest
	ingOpt.Client, ingOpt.Logger, ingOpt.Registerer, ingOpt.Now, ingOpt.OOM = s.rdb, log, s.reg, o.Now, oom
	ingOpt.OnApplied = s.engine.OnApplied // no I/O: it only wakes the engine
	var err error
	if s.consumer, err = ingest.NewFleet(ingOpt, leaseOpt, s.owner); err != nil {
		return fail(1, fmt.Errorf("consumer setup: %w", err))
	}
	// The shards ever used, so that rollers and epochs cover them all from
	// the start; Run reads it again (Redis may be down now).
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := s.consumer.Sync(sctx); err != nil {
		log.Warn("stream shard record not read at start", "err", err)
	}
	cancel()
	shardKeys := streamshard.Keys(cfg.Ingest.Stream, s.consumer.Width())

	s.rollOpt = cfg.Rollup
	s.rollOpt.LeaseTTL, s.rollOpt.Registerer, s.rollOpt.Logger, s.rollOpt.Now = cfg.Lease.TTL, s.reg, log, o.Now
	for range shardKeys {
		if err := s.addRoller(); err != nil {
			return fail(1, err)
		}
	}

	guardOpt := cfg.Guard
	guardOpt.Slots = append([]string(nil), redisguard.DefaultSlots...)
	for _, key := range shardKeys {
		guardOpt.Slots = append(guardOpt.Slots, stream.HashTag(key))
	}
	guardOpt.Registerer, guardOpt.Logger, guardOpt.Now = s.reg, log, o.Now
	guardOpt.Interval = cfg.Alert.EvalInterval // a wipe is noticed within one tick
	guardOpt.OnLoss = func(ctx context.Context) error {
		// The rules went with the data: keep the agents counting the
		// keywords published before until the rules are recreated.
		n, err := ruleStore.RetainKeywords(ctx)
		if err == nil {
			log.Warn("republished the keyword set after redis data loss; its keywords stay published until restart", "keywords", n)
		}
		return err
	}
	if s.guard, err = redisguard.New(s.rdb, guardOpt); err != nil {
		return fail(1, err)
	}
	if err := s.checkPersistence(); err != nil {
		return fail(2, err)
	}
	apiOpts := cfg.API
	apiOpts.Counts, apiOpts.Rules, apiOpts.Silences, apiOpts.Alerts, apiOpts.Outbox = counts, ruleStore, sils, alerts, s.outbox
	apiOpts.Gatherer, apiOpts.Registerer, apiOpts.Logger, apiOpts.Now = s.reg, s.reg, log, o.Now
	apiOpts.OOM = oom
	apiOpts.Receivers = receivers
	apiOpts.TimeIntervals = intervals
	apiOpts.Sessions = session.NewStore(s.rdb, cfg.Session)
	apiOpts.Ingest = api.IngestSource{Redis: s.rdb, Stream: cfg.Ingest.Stream, Dead: ingest.DeadStream(cfg.Ingest.Stream), Group: cmp.Or(cfg.Ingest.Group, ingest.DefaultGroup),
		Shards: s.consumer.Width}
	apiOpts.Ready = func(ctx context.Context) error {
		if err := s.rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		if err := s.guard.Ready(); err != nil {
			return err
		}
		return s.consumer.Ready()
	}
	apiHandler, err := api.NewRouter(apiOpts)
	if err != nil {
		return fail(1, fmt.Errorf("router setup: %w", err))
	}
	if o.WrapAPI != nil {
		apiHandler = o.WrapAPI(apiHandler)
	}
	handler, err := console.New(apiHandler) // the web console at /, the API behind it
	if err != nil {
		return fail(1, err)
	}
	s.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(1, fmt.Errorf("KEYALERT_LISTEN = %q: %w", cfg.Listen, err))
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// checkPersistence runs the guard's start check; only a volatile Redis is an
// error. An unreachable Redis must not stop the start (the consumer retries),
// so the guard checks again once Redis answers.
func (s *server) checkPersistence() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := s.guard.Start(ctx)
	if errors.Is(err, redisguard.ErrVolatile) {
		return err
	}
	if err != nil {
		s.log.Warn("redis persistence not checked yet; checking again when redis answers", "err", err)
	}
	return nil
}

// Addr is the HTTP listen address (host:port).
func (s *server) Addr() string { return s.ln.Addr().String() }

// Owner is the token this replica writes into the lease keys it holds
// (ka:{alerts}:lease:*), so people and tests can tell which replica holds what.
func (s *server) Owner() string { return s.owner }

// Run serves until ctx ends (or the HTTP server fails), then stops the
// consumer after its batch in flight, the engine, the outbox sender and the
// HTTP server, releases the leases so other replicas take over at once, and
// closes the Redis client. It returns nil after a stop asked for by ctx.
func (s *server) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer s.rdb.Close()

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.http.Serve(s.ln) }()

	// Take this replica's shards before the engine's first tick, so the
	// rules are evaluated at once rather than a tick later.
	if err := s.shards.Step(ctx); err != nil {
		s.log.Warn("shard leases", "err", err)
	}
	var alerting sync.WaitGroup
	alerting.Go(func() { s.shards.Run(ctx) })
	alerting.Go(func() { s.engine.Run(ctx) })
	alerting.Go(func() { s.sender.Hold(ctx, s.sendOutbox) })
	// Bounded work per tick: ids of expired alerts leave the index.
	alerting.Go(func() { s.alerts.RunPruner(ctx, s.cfg.Alert.EvalInterval) })
	for _, r := range s.rollers {
		alerting.Go(func() { r.Run(ctx) })
	}
	// Shards another replica added while this one runs get rollers here too.
	alerting.Go(func() {
		t := time.NewTicker(max(s.cfg.Lease.TTL, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for len(s.rollers) < s.consumer.Width() {
				if err := s.addRoller(); err != nil {
					s.log.Error("roller of a new stream shard", "err", err)
					break
				}
				r := s.rollers[len(s.rollers)-1]
				alerting.Go(func() { r.Run(ctx) })
			}
		}
	})
	guardErr := make(chan error, 1)
	alerting.Go(func() {
		if err := s.guard.Run(ctx); err != nil {
			guardErr <- err
		}
	})
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		_ = s.consumer.Run(ctx) // returns after the batches in flight are acknowledged
	}()

	var err error
	select {
	case <-ctx.Done():
		s.log.Info("stopping: finishing the batch in flight")
	case err = <-serveErr:
		s.log.Error("http server stopped", "err", err)
		err = fmt.Errorf("http server: %w", err)
		stop()
	case gerr := <-guardErr:
		// Redis was unreachable at start and turned out volatile: the same
		// refusal as at start, only later.
		s.log.Error("stopping", "err", gerr)
		err = &setupError{2, gerr}
		stop()
	}
	// The consumer stops within one read (Block) plus the batch in flight.
	select {
	case <-consumed:
	case <-time.After(s.cfg.ShutdownTimeout + s.cfg.Ingest.Block):
		s.log.Warn("consumer did not stop in time; its unacknowledged entries stay pending")
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(sctx); err != nil {
		s.log.Warn("http shutdown", "err", err)
	}
	// The engine, shard leases and outbox sender end with ctx; the leases
	// are released on the way out.
	done := make(chan struct{})
	go func() { alerting.Wait(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		s.log.Warn("alerting did not stop in time; its leases expire by themselves")
	}
	return err
}

// addRoller adds the roller of the next stream shard. Metrics are
// registered once per process: the rollers of shards after the first keep
// theirs private.
func (s *server) addRoller() error {
	o := s.rollOpt
	if len(s.rollers) > 0 {
		o.Registerer = prometheus.NewRegistry()
	}
	r, err := rollup.New(s.rdb, streamshard.Key(s.cfg.Ingest.Stream, len(s.rollers)), s.owner, o)
	if err != nil {
		return err
	}
	s.rollers = append(s.rollers, r)
	return nil
}

// sendOutbox runs the outbox sender while this replica holds its lease; a
// failed start (Redis down) is retried rather than idling on the lease.
func (s *server) sendOutbox(ctx context.Context) {
	s.log.Info("outbox sender started")
	defer s.log.Info("outbox sender stopped")
	_ = backoff.Retry(ctx, backoff.Policy{}, func(ctx context.Context) error {
		err := s.outbox.Run(ctx, s.notifiers)
		if ctx.Err() != nil {
			return nil // stopped, not failed
		}
		return err
	}, func(err error, _ int) { s.log.Warn("outbox sender", "err", err) })
}

// registerLeaseMetrics exposes the leases this replica holds; the alerting
// packages register their own metrics.
func (s *server) registerLeaseMetrics() {
	s.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyalert_eval_shards_owned",
			Help: "Evaluation shard leases this replica holds."},
			func() float64 { return float64(len(s.shards.Owned())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyalert_outbox_sender",
			Help: "1 while this replica holds the outbox sender lease."},
			func() float64 {
				if s.sender.Held() {
					return 1
				}
				return 0
			}),
	)
}
