package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/validate"
)

// The alerting routes: rules, silences, alerts and the notification outbox.

// failed answers a non-nil err — 404 "<what> not found" when it is notFound,
// else as fail does — and reports whether it did.
func (h *handlers) failed(w http.ResponseWriter, r *http.Request, err, notFound error, what string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, notFound):
		WriteError(w, http.StatusNotFound, what+" not found")
	default:
		h.fail(w, r, err)
	}
	return true
}

// body reads a request body within the size limit; on failure it has
// answered (413 over the limit, 400 otherwise) and returns false.
func (h *handlers) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := h.o.MaxBodyBytes
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteError(w, http.StatusRequestEntityTooLarge, "request body too large",
				FieldError{Field: "body", Message: fmt.Sprintf("over the limit of %d bytes", limit)})
			return nil, false
		}
		if r.Context().Err() != nil {
			h.fail(w, r, err)
			return nil, false
		}
		WriteError(w, http.StatusBadRequest, "invalid request body", FieldError{Field: "body", Message: "reading body: " + err.Error()})
		return nil, false
	}
	return b, true
}

func (h *handlers) createRule(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	rule, errs := rules.Decode(b, rules.DecodeOptions{DefaultRoutingKey: h.o.DefaultRoutingKey, ReceiverExists: h.receiverExists(r.Context()), Limits: h.o.Rules.Limits(), Retention: h.o.Retention})
	if !h.intervalsKnown(w, r, &errs, "mute_time_intervals", rule.MuteTimeIntervals) {
		return
	}
	if errs.Err() != nil {
		invalid(w, "rule", errs)
		return
	}
	stored, err := h.o.Rules.Create(r.Context(), rule)
	var taken *rules.NameTakenError
	if errors.As(err, &taken) && r.URL.Query().Get("replace") == "true" {
		// ?replace=true: the rule of that name is replaced, as a PUT of it.
		existing, err := h.o.Rules.Get(r.Context(), taken.ID)
		if h.failed(w, r, err, rules.ErrNotFound, "rule") {
			return
		}
		rule, errs := rules.Decode(b, rules.DecodeOptions{DefaultRoutingKey: h.o.DefaultRoutingKey, ReceiverExists: h.receiverExists(r.Context()), Existing: &existing, Limits: h.o.Rules.Limits(), Retention: h.o.Retention})
		if errs.Err() != nil {
			invalid(w, "rule", errs)
			return
		}
		stored, err := h.o.Rules.Update(r.Context(), taken.ID, rule)
		if overLimit(w, err) || nameTaken(w, err) || h.failed(w, r, err, rules.ErrNotFound, "rule") {
			return
		}
		h.log.Info("rule replaced", "rule", stored)
		WriteJSON(w, http.StatusOK, stored)
		return
	}
	if overLimit(w, err) || nameTaken(w, err) {
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("rule created", "rule", stored)
	w.Header().Set("Location", "rules/"+stored.ID)
	WriteJSON(w, http.StatusCreated, stored)
}

// overLimit answers 400 when the store refused a write past a limit
// (validate.Errors naming the limit).
func overLimit(w http.ResponseWriter, err error) bool {
	var errs validate.Errors
	if !errors.As(err, &errs) {
		return false
	}
	invalid(w, "rule", errs)
	return true
}

// intervalsKnown adds to errs the names that are not stored time
// intervals; on a Redis error it has answered and returns false.
func (h *handlers) intervalsKnown(w http.ResponseWriter, r *http.Request, errs *validate.Errors, field string, names []string) bool {
	unknown, err := h.unknownIntervals(r.Context(), field, names)
	if err != nil {
		h.fail(w, r, err)
		return false
	}
	*errs = append(*errs, unknown...)
	return true
}

// nameTaken answers 409 naming the field name when another rule has it.
func nameTaken(w http.ResponseWriter, err error) bool {
	var taken *rules.NameTakenError
	if !errors.As(err, &taken) {
		return false
	}
	WriteError(w, http.StatusConflict, fmt.Sprintf("a rule called %q exists (id %s): PUT /api/v1/rules/%s to change it, or POST with ?replace=true", taken.Name, taken.ID, taken.ID),
		FieldError{Field: "name", Message: fmt.Sprintf("%q is the name of rule %s", taken.Name, taken.ID)})
	return true
}

func (h *handlers) listRules(w http.ResponseWriter, r *http.Request) {
	snap, err := h.o.Rules.Snapshot(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"rules": snap.Rules})
}

func (h *handlers) getRule(w http.ResponseWriter, r *http.Request) {
	rule, err := h.o.Rules.Get(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, rules.ErrNotFound, "rule") {
		return
	}
	WriteJSON(w, http.StatusOK, rule)
}

func (h *handlers) updateRule(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	existing, err := h.o.Rules.Get(r.Context(), id)
	if h.failed(w, r, err, rules.ErrNotFound, "rule") {
		return
	}
	rule, errs := rules.Decode(b, rules.DecodeOptions{DefaultRoutingKey: h.o.DefaultRoutingKey, ReceiverExists: h.receiverExists(r.Context()), Existing: &existing, Limits: h.o.Rules.Limits(), Retention: h.o.Retention})
	if !h.intervalsKnown(w, r, &errs, "mute_time_intervals", rule.MuteTimeIntervals) {
		return
	}
	if errs.Err() != nil {
		invalid(w, "rule", errs)
		return
	}
	stored, err := h.o.Rules.Update(r.Context(), id, rule)
	if overLimit(w, err) || nameTaken(w, err) {
		return
	}
	if h.failed(w, r, err, rules.ErrNotFound, "rule") {
		return
	}
	h.log.Info("rule updated", "rule", stored)
	WriteJSON(w, http.StatusOK, stored)
}

func (h *handlers) deleteRule(w http.ResponseWriter, r *http.Request) {
	err := h.o.Rules.Delete(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, rules.ErrNotFound, "rule") {
		return
	}
	h.log.Info("rule deleted", "rule_id", chi.URLParam(r, "id"))
	w.WriteHeader(http.StatusNoContent)
}

func (h *handlers) createSilence(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	s, errs := silence.Decode(b, h.o.Now())
	if !h.intervalsKnown(w, r, &errs, "time_intervals", s.TimeIntervals) {
		return
	}
	if errs.Err() != nil {
		invalid(w, "silence", errs)
		return
	}
	stored, err := h.o.Silences.Create(r.Context(), s)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("silence created", "silence_id", stored.ID, "author", stored.Author, "end", stored.End)
	w.Header().Set("Location", "silences/"+stored.ID)
	WriteJSON(w, http.StatusCreated, stored)
}

type silenceView struct {
	silence.Silence
	Active bool `json:"active"`
}

func (h *handlers) listSilences(w http.ResponseWriter, r *http.Request) {
	activeOnly := false
	if v := r.URL.Query().Get("active"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			invalid(w, "query", validate.Errors{{Field: "active", Message: fmt.Sprintf("%q: want true or false", v)}})
			return
		}
		activeOnly = b
	}
	list, err := h.o.Silences.List(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now := h.o.Now()
	out := make([]silenceView, 0, len(list))
	for _, s := range list {
		if v := (silenceView{s, s.Active(now)}); v.Active || !activeOnly {
			out = append(out, v)
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"silences": out})
}

func (h *handlers) getSilence(w http.ResponseWriter, r *http.Request) {
	s, err := h.o.Silences.Get(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, silence.ErrNotFound, "silence") {
		return
	}
	WriteJSON(w, http.StatusOK, silenceView{s, s.Active(h.o.Now())})
}

func (h *handlers) deleteSilence(w http.ResponseWriter, r *http.Request) {
	err := h.o.Silences.Delete(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, silence.ErrNotFound, "silence") {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handlers) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs validate.Errors
	var state alert.State
	if v := q.Get("state"); v != "" {
		st, err := alert.ParseState(v)
		if err != nil {
			errs.Add("state", "%q: want pending, firing, acknowledged or resolved", v)
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
		invalid(w, "query", errs)
		return
	}
	list, err := h.o.Alerts.List(r.Context(), state, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if list == nil {
		list = []*alert.Alert{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"alerts": list})
}

func (h *handlers) getAlert(w http.ResponseWriter, r *http.Request) {
	a, err := h.o.Alerts.Get(r.Context(), chi.URLParam(r, "id"))
	if h.failed(w, r, err, alert.ErrNotFound, "alert") {
		return
	}
	var rule *rules.Rule
	if rl, err := h.o.Rules.Get(r.Context(), a.RuleID); err == nil {
		rule = &rl
	} else if !errors.Is(err, rules.ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	d, err := alert.BuildDetail(r.Context(), h.o.Counts, rule, a, h.o.Now(), h.o.DetailSamples)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, d)
}

// actor reads the optional {"by": "...", "comment": "..."} of ack and
// resolve; an empty body is fine.
func (h *handlers) actor(w http.ResponseWriter, r *http.Request) (string, bool) {
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

func (h *handlers) ackAlert(w http.ResponseWriter, r *http.Request) {
	h.transition(w, r, h.o.Alerts.Ack, "acknowledge")
}

func (h *handlers) resolveAlert(w http.ResponseWriter, r *http.Request) {
	h.transition(w, r, h.o.Alerts.Resolve, "resolve")
}

func (h *handlers) transition(w http.ResponseWriter, r *http.Request, fn func(context.Context, string, string) (*alert.Alert, error), what string) {
	by, ok := h.actor(w, r)
	if !ok {
		return
	}
	a, err := fn(r.Context(), chi.URLParam(r, "id"), by)
	switch {
	case errors.Is(err, alert.ErrNotFound):
		WriteError(w, http.StatusNotFound, "alert not found")
	case errors.Is(err, alert.ErrConflict):
		WriteError(w, http.StatusConflict, "cannot "+what+" a resolved alert")
	case err != nil:
		h.fail(w, r, err)
	default:
		WriteJSON(w, http.StatusOK, a)
	}
}

func (h *handlers) outbox(w http.ResponseWriter, r *http.Request) {
	pending, err := h.o.Outbox.ListPending(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	failed, err := h.o.Outbox.Failed(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if pending == nil {
		pending = []outbox.Pending{}
	}
	if failed == nil {
		failed = []outbox.Failure{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"pending": pending, "failed": failed})
}
