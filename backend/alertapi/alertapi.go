// Package alertapi serves the alerting half of keyalertd's API: rules,
// silences, alerts and the notification outbox. Handler.Mount registers the
// routes on a chi router that the core mounts under /api/v1 behind its
// bearer-token auth. Routing keys only ever leave in redacted form, and no
// request body is logged.
package alertapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/validate"
)

// Settings of the API.
type Settings struct {
	// MaxBodyBytes bounds a request body (KEYALERT_API_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// DefaultRoutingKey says a default routing key is configured, so rules
	// may omit theirs.
	DefaultRoutingKey bool
	// DetailSamples is how many sample lines an alert's detail shows.
	DetailSamples int
}

// DefaultSettings returns the defaults.
func DefaultSettings() Settings { return Settings{MaxBodyBytes: 64 << 10, DetailSamples: 10} }

// Validate names the bad setting.
func (s Settings) Validate() error {
	if s.MaxBodyBytes < 1024 || s.MaxBodyBytes > 16<<20 {
		return fmt.Errorf("KEYALERT_API_MAX_BODY_BYTES=%d: want between 1024 and 16777216", s.MaxBodyBytes)
	}
	if s.DetailSamples < 0 || s.DetailSamples > 100 {
		return fmt.Errorf("alert detail samples %d: want between 0 and 100", s.DetailSamples)
	}
	return nil
}

// Handler serves the alerting API.
type Handler struct {
	Rules    *rules.Store
	Silences *silence.Store
	Alerts   *alert.Store
	Outbox   *outbox.Outbox
	Counts   alert.Counts
	Settings Settings
	Now      func() time.Time // nil: time.Now
	Log      *slog.Logger     // nil: slog.Default()
}

// Mount registers the routes on r (the core's /api/v1 router).
func (h *Handler) Mount(r chi.Router) {
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
	r.Get("/outbox", h.outbox)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

// errorBody is every error response: a message and, for invalid input, each
// bad field.
type errorBody struct {
	Error  string                `json:"error"`
	Fields []validate.FieldError `json:"fields,omitempty"`
}

// writeError uses api's writer: without fields, errorBody and api.Error
// encode the same {"error": ...}.
func writeError(w http.ResponseWriter, status int, msg string) { api.WriteError(w, status, "", msg) }

func (h *Handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	h.log().Error("alert api", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}

// failed answers a non-nil err — 404 "<what> not found" when it is notFound,
// 500 otherwise — and reports whether it did.
func (h *Handler) failed(w http.ResponseWriter, r *http.Request, err, notFound error, what string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, notFound):
		writeError(w, http.StatusNotFound, what+" not found")
	default:
		h.internal(w, r, err)
	}
	return true
}

// body reads a request body within the size limit; on failure it has
// answered 400 and returns false.
func (h *Handler) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := h.Settings.MaxBodyBytes
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		msg := "reading body: " + err.Error()
		if errors.As(err, &tooBig) {
			msg = fmt.Sprintf("over the limit of %d bytes", limit)
		}
		api.WriteJSON(w, http.StatusBadRequest, errorBody{Error: "invalid request body", Fields: []validate.FieldError{{Field: "body", Message: msg}}})
		return nil, false
	}
	return b, true
}

func invalid(w http.ResponseWriter, what string, errs validate.Errors) {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
	api.WriteJSON(w, http.StatusBadRequest, errorBody{Error: "invalid " + what, Fields: errs})
}

func (h *Handler) createRule(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	rule, errs := rules.Decode(b, rules.DecodeOptions{DefaultRoutingKey: h.Settings.DefaultRoutingKey})
	if errs.Err() != nil {
		invalid(w, "rule", errs)
		return
	}
	stored, err := h.Rules.Create(r.Context(), rule)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	h.log().Info("rule created", "rule", stored)
	w.Header().Set("Location", "rules/"+stored.ID)
	api.WriteJSON(w, http.StatusCreated, stored)
}

func (h *Handler) listRules(w http.ResponseWriter, r *http.Request) {
	snap, err := h.Rules.Snapshot(r.Context())
	if err != nil {
		h.internal(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"rules": snap.Rules})
}

func (h *Handler) getRule(w http.ResponseWriter, r *http.Request) {
	rule, err := h.Rules.Get(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, rules.ErrNotFound, "rule") {
		return
	}
	api.WriteJSON(w, http.StatusOK, rule)
}

func (h *Handler) updateRule(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	existing, err := h.Rules.Get(r.Context(), id)
	if h.failed(w, r, err, rules.ErrNotFound, "rule") {
		return
	}
	rule, errs := rules.Decode(b, rules.DecodeOptions{DefaultRoutingKey: h.Settings.DefaultRoutingKey, Existing: &existing})
	if errs.Err() != nil {
		invalid(w, "rule", errs)
		return
	}
	stored, err := h.Rules.Update(r.Context(), id, rule)
	if h.failed(w, r, err, rules.ErrNotFound, "rule") {
		return
	}
	h.log().Info("rule updated", "rule", stored)
	api.WriteJSON(w, http.StatusOK, stored)
}

func (h *Handler) deleteRule(w http.ResponseWriter, r *http.Request) {
	err := h.Rules.Delete(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, rules.ErrNotFound, "rule") {
		return
	}
	h.log().Info("rule deleted", "rule_id", chi.URLParam(r, "id"))
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) createSilence(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	s, errs := silence.Decode(b, h.now())
	if errs.Err() != nil {
		invalid(w, "silence", errs)
		return
	}
	stored, err := h.Silences.Create(r.Context(), s)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	h.log().Info("silence created", "silence_id", stored.ID, "author", stored.Author, "end", stored.End)
	w.Header().Set("Location", "silences/"+stored.ID)
	api.WriteJSON(w, http.StatusCreated, stored)
}

type silenceView struct {
	silence.Silence
	Active bool `json:"active"`
}

func (h *Handler) listSilences(w http.ResponseWriter, r *http.Request) {
	activeOnly := false
	if v := r.URL.Query().Get("active"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			api.WriteJSON(w, http.StatusBadRequest, errorBody{Error: "invalid query", Fields: []validate.FieldError{{Field: "active", Message: "want true or false"}}})
			return
		}
		activeOnly = b
	}
	list, err := h.Silences.List(r.Context())
	if err != nil {
		h.internal(w, r, err)
		return
	}
	now := h.now()
	out := make([]silenceView, 0, len(list))
	for _, s := range list {
		if v := (silenceView{s, s.Active(now)}); v.Active || !activeOnly {
			out = append(out, v)
		}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"silences": out})
}

func (h *Handler) getSilence(w http.ResponseWriter, r *http.Request) {
	s, err := h.Silences.Get(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, silence.ErrNotFound, "silence") {
		return
	}
	api.WriteJSON(w, http.StatusOK, silenceView{s, s.Active(h.now())})
}

func (h *Handler) deleteSilence(w http.ResponseWriter, r *http.Request) {
	err := h.Silences.Delete(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, silence.ErrNotFound, "silence") {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs validate.Errors
	var state alert.State
	if v := q.Get("state"); v != "" {
		st, err := alert.ParseState(v)
		if err != nil {
			errs.Add("state", "%q: want firing, acknowledged or resolved", v)
		}
		state = st
	}
	limit := 500
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			errs.Add("limit", "%q: want an integer between 1 and 10000", v)
		}
		limit = n
	}
	if errs.Err() != nil {
		api.WriteJSON(w, http.StatusBadRequest, errorBody{Error: "invalid query", Fields: errs})
		return
	}
	list, err := h.Alerts.List(r.Context(), state, limit)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if list == nil {
		list = []*alert.Alert{}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"alerts": list})
}

func (h *Handler) getAlert(w http.ResponseWriter, r *http.Request) {
	a, err := h.Alerts.Get(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, alert.ErrNotFound, "alert") {
		return
	}
	var rule *rules.Rule
	if rl, err := h.Rules.Get(r.Context(), a.RuleID); err == nil {
		rule = &rl
	} else if !errors.Is(err, rules.ErrNotFound) {
		h.internal(w, r, err)
		return
	}
	d, err := alert.BuildDetail(r.Context(), h.Counts, rule, a, h.now(), h.Settings.DetailSamples)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, d)
}

// actor reads the optional {"by": "...", "comment": "..."} of ack and
// resolve; an empty body is fine.
func (h *Handler) actor(w http.ResponseWriter, r *http.Request) (string, bool) {
	b, ok := h.body(w, r)
	if !ok {
		return "", false
	}
	if len(b) == 0 {
		return "", true
	}
	var by, comment string
	var errs validate.Errors
	validate.Object(b, "", map[string]any{"by": &by, "comment": &comment}, &errs)
	if len(by) > 256 {
		errs.Add("by", "over the limit of 256 bytes")
	}
	if errs.Err() != nil {
		invalid(w, "request", errs)
		return "", false
	}
	return by, true
}

func (h *Handler) ackAlert(w http.ResponseWriter, r *http.Request) {
	h.transition(w, r, h.Alerts.Ack, "acknowledge")
}

func (h *Handler) resolveAlert(w http.ResponseWriter, r *http.Request) {
	h.transition(w, r, h.Alerts.Resolve, "resolve")
}

func (h *Handler) transition(w http.ResponseWriter, r *http.Request, fn func(context.Context, string, string) (*alert.Alert, error), what string) {
	by, ok := h.actor(w, r)
	if !ok {
		return
	}
	a, err := fn(r.Context(), chi.URLParam(r, "id"), by)
	switch {
	case errors.Is(err, alert.ErrNotFound):
		writeError(w, http.StatusNotFound, "alert not found")
	case errors.Is(err, alert.ErrConflict):
		writeError(w, http.StatusConflict, "cannot "+what+" a resolved alert")
	case err != nil:
		h.internal(w, r, err)
	default:
		api.WriteJSON(w, http.StatusOK, a)
	}
}

func (h *Handler) outbox(w http.ResponseWriter, r *http.Request) {
	pending, err := h.Outbox.ListPending(r.Context())
	if err != nil {
		h.internal(w, r, err)
		return
	}
	failed, err := h.Outbox.Failed(r.Context())
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if pending == nil {
		pending = []outbox.Pending{}
	}
	if failed == nil {
		failed = []outbox.Failure{}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"pending": pending, "failed": failed})
}
