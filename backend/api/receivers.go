package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/validate"
)

// receiverRoutes mounts /receivers when a receiver store is configured.
func (h *handlers) receiverRoutes(r chi.Router) {
	if h.o.Receivers == nil {
		return
	}
	r.Route("/receivers", func(r chi.Router) {
		r.Post("/", h.createReceiver)
		r.Get("/", h.listReceivers)
		r.Get("/{name}", h.getReceiver)
		r.Put("/{name}", h.updateReceiver)
		r.Delete("/{name}", h.deleteReceiver)
	})
}

// receiverExists checks rule receivers against the store (nil: not
// checked, no store configured).
func (h *handlers) receiverExists(ctx context.Context) func(string) bool {
	if h.o.Receivers == nil {
		return nil
	}
	return func(name string) bool { return h.o.Receivers.Exists(ctx, name) }
}

func (h *handlers) createReceiver(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	rc, errs := receiver.Decode(b, nil, h.o.Receivers.Options().TemplateMaxBytes)
	if errs.Err() != nil {
		invalid(w, "receiver", errs)
		return
	}
	stored, err := h.o.Receivers.Create(r.Context(), rc)
	switch {
	case errors.Is(err, receiver.ErrExists):
		WriteError(w, http.StatusConflict, fmt.Sprintf("receiver %q exists: PUT /api/v1/receivers/%s replaces it", rc.Name, rc.Name))
		return
	case errors.Is(err, receiver.ErrFull):
		invalid(w, "receiver", validate.Errors{{Field: "name", Message: err.Error()}})
		return
	case err != nil:
		h.fail(w, r, err)
		return
	}
	h.log.Info("receiver created", "receiver", stored.Name, "type", stored.Type)
	w.Header().Set("Location", "receivers/"+stored.Name)
	WriteJSON(w, http.StatusCreated, stored)
}

func (h *handlers) listReceivers(w http.ResponseWriter, r *http.Request) {
	list, err := h.o.Receivers.List(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"receivers": list})
}

func (h *handlers) getReceiver(w http.ResponseWriter, r *http.Request) {
	rc, err := h.o.Receivers.Get(r.Context(), chi.URLParam(r, "name"))
	if errors.Is(err, receiver.ErrNotFound) {
		WriteError(w, http.StatusNotFound, "receiver not found")
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, rc)
}

func (h *handlers) updateReceiver(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	existing, err := h.o.Receivers.Get(r.Context(), name)
	if errors.Is(err, receiver.ErrNotFound) {
		WriteError(w, http.StatusNotFound, "receiver not found")
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	rc, errs := receiver.Decode(b, &existing, h.o.Receivers.Options().TemplateMaxBytes)
	if errs.Err() != nil {
		invalid(w, "receiver", errs)
		return
	}
	stored, err := h.o.Receivers.Replace(r.Context(), rc, existing.CreatedAt)
	if errors.Is(err, receiver.ErrNotFound) {
		WriteError(w, http.StatusNotFound, "receiver not found")
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("receiver updated", "receiver", stored.Name, "type", stored.Type)
	WriteJSON(w, http.StatusOK, stored)
}

// deleteReceiver refuses (409) to delete a receiver a rule names: its
// alerts would have nowhere to go.
func (h *handlers) deleteReceiver(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	snap, err := h.o.Rules.Snapshot(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var users []string
	for _, rule := range snap.Rules {
		if slices.Contains(rule.Receivers, name) {
			users = append(users, rule.ID)
		}
	}
	if len(users) > 0 {
		WriteError(w, http.StatusConflict, fmt.Sprintf("receiver %q is named by rules %v: change them first", name, users))
		return
	}
	err = h.o.Receivers.Delete(r.Context(), name)
	if errors.Is(err, receiver.ErrNotFound) {
		WriteError(w, http.StatusNotFound, "receiver not found")
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("receiver deleted", "receiver", name)
	w.WriteHeader(http.StatusNoContent)
}
