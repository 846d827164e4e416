package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/backend/validate"
)

// The time interval routes: named recurring intervals that silences
// (time_intervals) and rules (mute_time_intervals) refer to.

func (h *handlers) intervalsOff(w http.ResponseWriter) bool {
	if h.o.TimeIntervals != nil {
		return false
	}
	WriteError(w, http.StatusNotFound, "time intervals are not configured on this server")
	return true
}

func (h *handlers) listTimeIntervals(w http.ResponseWriter, r *http.Request) {
	if h.intervalsOff(w) {
		return
	}
	list, err := h.o.TimeIntervals.List(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"time_intervals": list})
}

func (h *handlers) getTimeInterval(w http.ResponseWriter, r *http.Request) {
	if h.intervalsOff(w) {
		return
	}
	ti, err := h.o.TimeIntervals.Get(r.Context(), chi.URLParam(r, "name"))
	if h.failed(w, r, err, timeinterval.ErrNotFound, "time interval") {
		return
	}
	WriteJSON(w, http.StatusOK, ti)
}

// createTimeInterval serves POST: 201, or 409 when the name is taken (PUT
// replaces).
func (h *handlers) createTimeInterval(w http.ResponseWriter, r *http.Request) {
	h.putInterval(w, r, "")
}

// putTimeInterval serves PUT /{name}: creates (201) or replaces (200).
func (h *handlers) putTimeInterval(w http.ResponseWriter, r *http.Request) {
	h.putInterval(w, r, chi.URLParam(r, "name"))
}

func (h *handlers) putInterval(w http.ResponseWriter, r *http.Request, name string) {
	if h.intervalsOff(w) {
		return
	}
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	ti, errs := timeinterval.Decode(b, name)
	if errs.Err() != nil {
		invalid(w, "time interval", errs)
		return
	}
	if name == "" { // POST: only new names
		if _, err := h.o.TimeIntervals.Get(r.Context(), ti.Name); err == nil {
			WriteError(w, http.StatusConflict, fmt.Sprintf("a time interval called %q exists: PUT /api/v1/time_intervals/%s replaces it", ti.Name, ti.Name),
				FieldError{Field: "name", Message: "taken"})
			return
		} else if !errors.Is(err, timeinterval.ErrNotFound) {
			h.fail(w, r, err)
			return
		}
	}
	stored, created, err := h.o.TimeIntervals.Put(r.Context(), ti)
	var le *timeinterval.LimitError
	if errors.As(err, &le) {
		invalid(w, "time interval", validate.Errors{{Field: "time_intervals", Message: le.Error()}})
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "time_intervals/"+stored.Name)
	}
	h.log.Info("time interval stored", "name", stored.Name, "created", created)
	WriteJSON(w, status, stored)
}

// deleteTimeInterval refuses (409) to delete an interval a rule or an
// unexpired silence names: that would silently change what they mute.
func (h *handlers) deleteTimeInterval(w http.ResponseWriter, r *http.Request) {
	if h.intervalsOff(w) {
		return
	}
	name := chi.URLParam(r, "name")
	snap, err := h.o.Rules.Snapshot(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var users []string
	for _, rl := range snap.Rules {
		if slices.Contains(rl.MuteTimeIntervals, name) {
			users = append(users, "rule "+rl.ID)
		}
	}
	sils, err := h.o.Silences.List(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now := h.o.Now()
	for _, s := range sils {
		if now.Before(s.End) && slices.Contains(s.TimeIntervals, name) {
			users = append(users, "silence "+s.ID)
		}
	}
	if len(users) > 0 {
		WriteError(w, http.StatusConflict, fmt.Sprintf("time interval %q is in use by %v: change them first", name, users))
		return
	}
	err = h.o.TimeIntervals.Delete(r.Context(), name)
	if h.failed(w, r, err, timeinterval.ErrNotFound, "time interval") {
		return
	}
	h.log.Info("time interval deleted", "name", name)
	w.WriteHeader(http.StatusNoContent)
}

// unknownIntervals lists, under field[i], the names that are not stored
// intervals, so a rule or silence cannot refer to one that does not exist.
func (h *handlers) unknownIntervals(ctx context.Context, field string, names []string) (validate.Errors, error) {
	var errs validate.Errors
	if len(names) == 0 {
		return nil, nil
	}
	if h.o.TimeIntervals == nil {
		errs.Add(field, "time intervals are not configured on this server")
		return errs, nil
	}
	m, err := h.o.TimeIntervals.Map(ctx)
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		if _, ok := m[n]; !ok {
			errs.Add(fmt.Sprintf("%s[%d]", field, i), "no time interval called %q (PUT /api/v1/time_intervals/%s first)", n, n)
		}
	}
	return errs, nil
}
