// Package api is keyalertd's HTTP interface: JSON under /api/v1 behind bearer
// token auth, plus /healthz, /readyz and /metrics without auth. Other packages
// add routes under /api/v1 through Options.Mount.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures the router.
type Options struct {
	Store *window.Store // required: window reads
	// Tokens are the accepted bearer tokens. With none, /api/v1 is refused
	// unless InsecureNoAuth is set.
	Tokens         []string
	InsecureNoAuth bool
	Retention      time.Duration // bounds queries; default 7 days
	// Ready reports whether the service can do its work (Redis reachable,
	// consumer running); nil means always ready.
	Ready    func(ctx context.Context) error
	Gatherer prometheus.Gatherer // default prometheus.DefaultGatherer
	Logger   *slog.Logger        // default slog.Default()
	// Mount registers extra routes under /api/v1, behind the same auth.
	Mount []func(r chi.Router)
	Now   func() time.Time // default time.Now
}

// NewRouter returns the HTTP handler.
func NewRouter(o Options) (http.Handler, error) {
	if o.Store == nil {
		return nil, errors.New("api: Options.Store is required")
	}
	if len(o.Tokens) == 0 && !o.InsecureNoAuth {
		return nil, errors.New("api: no API tokens configured and InsecureNoAuth not set")
	}
	if o.Retention <= 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.DefaultGatherer
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &handlers{o: o}
	r := chi.NewRouter()
	r.Use(middleware.RequestID, accessLog(o.Logger), recoverer(o.Logger))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "", "no such endpoint: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusMethodNotAllowed, "", "method "+r.Method+" not allowed on "+r.URL.Path)
	})
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", h.readyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(auth(o.Tokens))
		r.Get("/counts", h.counts)
		r.Get("/counts/top", h.top)
		for _, m := range o.Mount {
			m(r)
		}
	})
	return r, nil
}

// Error is the JSON body of every error response.
type Error struct {
	Error string `json:"error"`
	Param string `json:"param,omitempty"` // the bad query parameter, if any
}

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}

// WriteError writes an Error body; param names the bad parameter or is "".
func WriteError(w http.ResponseWriter, status int, param, msg string) {
	WriteJSON(w, status, Error{Error: msg, Param: param})
}

// auth accepts "Authorization: Bearer <token>" for any configured token,
// compared in constant time; with no tokens every request passes (the
// caller allowed that explicitly with InsecureNoAuth).
func auth(tokens []string) func(http.Handler) http.Handler {
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
			scheme, tok, ok := strings.Cut(h, " ")
			got := []byte(strings.TrimSpace(tok))
			match := 0
			for _, t := range toks { // no early exit: time does not tell which token matched
				match |= subtle.ConstantTimeCompare(got, t)
			}
			if !ok || !strings.EqualFold(scheme, "Bearer") || len(got) == 0 || match != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="keyalert"`)
				WriteError(w, http.StatusUnauthorized, "", "missing or invalid bearer token")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.Error("handler panicked", "path", r.URL.Path, "panic", p)
					WriteError(w, http.StatusInternalServerError, "", "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			t0 := time.Now()
			next.ServeHTTP(ww, r)
			log.Debug("http", "method", r.Method, "path", r.URL.Path, "status", ww.Status(),
				"bytes", ww.BytesWritten(), "dur", time.Since(t0), "req_id", middleware.GetReqID(r.Context()))
		})
	}
}

type handlers struct{ o Options }

func (h *handlers) readyz(w http.ResponseWriter, r *http.Request) {
	if h.o.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.o.Ready(ctx); err != nil {
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
			return
		}
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
