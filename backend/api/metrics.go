package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// RouteOther is the route label of requests no route matched (404, 405), so
// unknown paths cannot grow the label set.
const RouteOther = "other"

// httpMetrics are the request metrics, labelled with the chi route pattern
// ("/api/v1/rules/{id}"), never the raw path.
type httpMetrics struct {
	requests *prometheus.CounterVec   // keyalert_http_requests_total{route,method,code}
	duration *prometheus.HistogramVec // keyalert_http_request_duration_seconds{route,method}
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyalert_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyalert_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or reuses the collector already registered under
// its name (a second router on the same registry counts into the same
// series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("api: registering HTTP metrics: %w", err)
	}
	return c, nil
}

// knownMethods bounds the method label.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// observe records each request's metrics and logs it at debug level. The
// route is looked up in mux rather than read after the handler ran, so a
// request refused before routing (401) still counts under its route.
func observe(mux *chi.Mux, m *httpMetrics, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t0 := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			dur := time.Since(t0)

			route := mux.Find(chi.NewRouteContext(), r.Method, r.URL.Path)
			if route == "" {
				route = RouteOther
			}
			method := r.Method
			if !knownMethods[method] {
				method = "other"
			}
			status := ww.Status()
			if status == 0 { // nothing written
				status = http.StatusOK
				if errors.Is(r.Context().Err(), context.Canceled) {
					status = 499 // the client went away before an answer
				}
			}
			m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(route, method).Observe(dur.Seconds())
			log.Debug("http", "method", r.Method, "path", r.URL.Path, "route", route, "status", status,
				"bytes", ww.BytesWritten(), "dur", dur, "req_id", middleware.GetReqID(r.Context()))
		})
	}
}
