// Package api is keyalertd's HTTP interface: JSON under /api/v1 (counts,
// rules, silences, alerts and the notification outbox) behind bearer token
// auth or the web console's session cookie (console.go), plus /healthz,
// /readyz, /metrics and the API's OpenAPI description (openapi.yaml) without
// auth.
//
// Every 4xx and 5xx answer has one body, Error. A request gets
// Options.RequestTimeout to finish; when Redis is unreachable or does not
// answer in that time the answer is 503 "redis unavailable: <reason>".
// Routing keys only ever leave in redacted form, and no request body is
// logged.
package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/session"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of the Options fields left zero.
const (
	// DefaultRequestTimeout bounds one request, Redis round trips included.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxBodyBytes bounds a request body; larger ones get 413.
	DefaultMaxBodyBytes = 64 << 10
	// DefaultDetailSamples is how many sample lines an alert's detail shows.
	DefaultDetailSamples = 10
	// DefaultReadyTimeout bounds the readiness check of /readyz.
	DefaultReadyTimeout = 2 * time.Second
	// DefaultMaxCellsPerQuery bounds the Redis entries one counts or top
	// call sums. A top's sum runs in Redis (about 1.2 µs per entry, during
	// which Redis serves no one else), so this keeps it near 300 ms: a top
	// by host over 100,000 hosts may span 2 minutes.
	DefaultMaxCellsPerQuery = 250_000
	// DefaultMaxConcurrentQueries bounds the counts and top calls served at
	// once; more get 503.
	DefaultMaxConcurrentQueries = 4
)

// Options configures the router. The zero value of every field but the
// stores is usable: a zero field takes the Default constant of the same name.
type Options struct {
	// Counts reads the per-minute windows (counts API, alert detail).
	Counts   *window.Store
	Rules    *rules.Store
	Silences *silence.Store
	Alerts   *alert.Store
	Outbox   *outbox.Outbox
	// Receivers, if set, serves /receivers (receivers.go).
	Receivers *receiver.Store
	// TimeIntervals keeps the named intervals silences and rules refer
	// to; nil: the time interval routes answer 404 and references are refused.
	TimeIntervals *timeinterval.Store

	// Tokens are the accepted bearer tokens. With none, /api/v1 is refused
	// unless InsecureNoAuth is set.
	Tokens         []string
	InsecureNoAuth bool
	// Sessions, when set, lets the web console's session cookie stand in
	// for a bearer token (changes also need its CSRF header); see console.go.
	Sessions *session.Store
	// Ingest is what GET /api/v1/health/ingest reads (console.go).
	Ingest IngestSource
	// DefaultRoutingKey says a default PagerDuty routing key is configured,
	// so rules may omit theirs.
	DefaultRoutingKey bool

	Retention time.Duration // bounds count queries; zero: window.DefaultRetention
	// HourlyRetention is how far back counts reads reach through the hourly
	// tier; zero: window.DefaultHourlyRetention; at most Retention turns the
	// hourly tier's reads off.
	HourlyRetention time.Duration
	RequestTimeout  time.Duration // bounds one request; zero: DefaultRequestTimeout
	MaxBodyBytes    int64         // bounds a request body; zero: DefaultMaxBodyBytes
	DetailSamples   int           // sample lines in an alert's detail; zero: DefaultDetailSamples
	// MaxCellsPerQuery bounds the cells (or rolled-up hosts or tags) one
	// counts or top call may sum; more get 400. Zero: DefaultMaxCellsPerQuery.
	MaxCellsPerQuery int64
	// MaxConcurrentQueries bounds the counts and top calls in flight; more
	// get 503. Zero: DefaultMaxConcurrentQueries.
	MaxConcurrentQueries int

	// Ready reports whether the service can do its work (Redis reachable,
	// consumer running); nil means always ready. It gets at most
	// DefaultReadyTimeout (and never more than RequestTimeout).
	Ready func(ctx context.Context) error
	// Gatherer is what /metrics serves; nil: prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Registerer takes the HTTP request metrics; nil:
	// prometheus.DefaultRegisterer.
	Registerer prometheus.Registerer
	Logger     *slog.Logger     // nil: slog.Default()
	Now        func() time.Time // nil: time.Now
	// OOM names a Redis that refuses writes for lack of memory in the log,
	// once per interval (shared with the rest of the process, which counts
	// them); nil: a reporter of the API's own.
	OOM *redisoom.Reporter
}

// withDefaults fills the zero fields and checks the invariants.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Counts == nil || o.Rules == nil || o.Silences == nil || o.Alerts == nil || o.Outbox == nil {
		errs = append(errs, errors.New("the Counts, Rules, Silences, Alerts and Outbox stores are required"))
	}
	if len(o.Tokens) == 0 && !o.InsecureNoAuth {
		errs = append(errs, errors.New("no API tokens and InsecureNoAuth not set"))
	}
	if o.MaxCellsPerQuery < 0 || o.MaxConcurrentQueries < 0 {
		errs = append(errs, fmt.Errorf("negative setting: max cells per query %d, max concurrent queries %d",
			o.MaxCellsPerQuery, o.MaxConcurrentQueries))
	}
	if o.Retention < 0 || o.RequestTimeout < 0 || o.MaxBodyBytes < 0 || o.DetailSamples < 0 {
		errs = append(errs, fmt.Errorf("negative setting: retention %v, request timeout %v, max body bytes %d, detail samples %d",
			o.Retention, o.RequestTimeout, o.MaxBodyBytes, o.DetailSamples))
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("api options: %w", err)
	}
	if o.Retention == 0 {
		o.Retention = window.DefaultRetention
	}
	if o.HourlyRetention <= 0 {
		o.HourlyRetention = window.DefaultHourlyRetention
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.DetailSamples == 0 {
		o.DetailSamples = DefaultDetailSamples
	}
	if o.MaxCellsPerQuery == 0 {
		o.MaxCellsPerQuery = DefaultMaxCellsPerQuery
	}
	if o.MaxConcurrentQueries == 0 {
		o.MaxConcurrentQueries = DefaultMaxConcurrentQueries
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.DefaultGatherer
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.DefaultRegisterer
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

type handlers struct {
	o   Options
	log *slog.Logger
	// queries holds a token per counts or top call in flight.
	queries chan struct{}
}

// NewRouter returns the HTTP handler.
func NewRouter(opts Options) (http.Handler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newHTTPMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	if o.OOM == nil {
		o.OOM = redisoom.NewReporter(nil, o.Logger, 0, nil)
	}
	h := &handlers{o: o, log: o.Logger, queries: make(chan struct{}, o.MaxConcurrentQueries)}
	r := chi.NewRouter()
	r.Use(middleware.RequestID, observe(r, m, o.Logger), recoverer(o.Logger), deadline(o.RequestTimeout))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		if allow := allowed(r, req.URL.Path); allow != "" {
			w.Header().Set("Allow", allow)
		}
		WriteError(w, http.StatusMethodNotAllowed, "method "+req.Method+" not allowed on "+req.URL.Path)
	})
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", h.readyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
		// What a collector cannot read (Redis down) is left out and logged;
		// the rest is still served, with 200.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}))
	r.Get(OpenAPIPath, serveOpenAPI)
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(auth(o.Tokens, h.sessionAuth))
		h.consoleRoutes(r)
		r.Get("/counts", h.counts)
		r.Get("/counts/top", h.top)
		r.Route("/rules", func(r chi.Router) {
			r.Post("/", h.createRule)
			r.Get("/", h.listRules)
			r.Get("/{id}", h.getRule)
			r.Put("/{id}", h.updateRule)
			r.Delete("/{id}", h.deleteRule)
		})
		r.Route("/silences", func(r chi.Router) {
			r.Post("/", h.createSilence)
			r.Get("/", h.listSilences)
			r.Get("/{id}", h.getSilence)
			r.Delete("/{id}", h.deleteSilence)
		})
		r.Route("/alerts", func(r chi.Router) {
			r.Get("/", h.listAlerts)
			r.Get("/{id}", h.getAlert)
			r.Post("/{id}/ack", h.ackAlert)
			r.Post("/{id}/resolve", h.resolveAlert)
		})
		r.Route("/time_intervals", func(r chi.Router) {
			r.Post("/", h.createTimeInterval)
			r.Get("/", h.listTimeIntervals)
			r.Get("/{name}", h.getTimeInterval)
			r.Put("/{name}", h.putTimeInterval)
			r.Delete("/{name}", h.deleteTimeInterval)
		})
		r.Get("/outbox", h.outbox)
		h.receiverRoutes(r)
	})
	return r, nil
}

// allowed lists the methods the router serves on path, for a 405's Allow.
func allowed(r *chi.Mux, path string) string {
	var ms []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if r.Find(chi.NewRouteContext(), m, path) != "" {
			ms = append(ms, m)
		}
	}
	return strings.Join(ms, ", ")
}

// auth accepts "Authorization: Bearer <token>" for any configured token,
// compared in constant time; with no tokens every request passes (the
// caller allowed that explicitly with InsecureNoAuth).
//
// A request without an Authorization header goes to byCookie (the console's
// session), which answers it itself when it does not pass.
func auth(tokens []string, byCookie func(http.ResponseWriter, *http.Request) bool) func(http.Handler) http.Handler {
	toks := make([][]byte, len(tokens))
	for i, t := range tokens {
		toks[i] = []byte(t)
	}
	return func(next http.Handler) http.Handler {
		if len(toks) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Header.Get("Authorization")
			if h == "" && byCookie != nil {
				if byCookie(w, r) {
					next.ServeHTTP(w, r)
				}
				return
			}
			scheme, tok, ok := strings.Cut(h, " ")
			got := []byte(strings.TrimSpace(tok))
			match := 0
			for _, t := range toks { // no early exit: time does not tell which token matched
				match |= subtle.ConstantTimeCompare(got, t)
			}
			if !ok || !strings.EqualFold(scheme, "Bearer") || len(got) == 0 || match != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="keyalert"`)
				WriteError(w, http.StatusUnauthorized, "missing or invalid bearer token")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// recoverer answers a panicking handler with 500 in the common error body.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p,
						"req_id", middleware.GetReqID(r.Context()))
					WriteError(w, http.StatusInternalServerError, "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// deadline gives each request at most d, through its context: every Redis
// call of a handler ends by then.
func deadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func (h *handlers) readyz(w http.ResponseWriter, r *http.Request) {
	if h.o.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), DefaultReadyTimeout)
		defer cancel()
		if err := h.o.Ready(ctx); err != nil {
			WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
