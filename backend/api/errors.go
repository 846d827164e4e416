package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"syscall"

	"github.com/keyalert/keyalert/backend/validate"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/redis/go-redis/v9"
)

// FieldError names one bad input: a query parameter, a JSON field of the
// body ("condition.window", "keywords[2]"), or "body" for the body as a whole.
type FieldError = validate.FieldError

// Error is the JSON body of every 4xx and 5xx answer:
//
//	{"error": "...", "fields": [{"field": "...", "message": "..."}]}
//
// Fields is present when specific inputs are wrong.
type Error struct {
	Error  string       `json:"error"`
	Fields []FieldError `json:"fields,omitempty"`
}

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}

// WriteError writes an Error body with msg and the bad fields, if any.
func WriteError(w http.ResponseWriter, status int, msg string, fields ...FieldError) {
	WriteJSON(w, status, Error{Error: msg, Fields: fields})
}

// invalid answers 400 listing every bad input of what ("query", "rule",
// "silence", "request"); the message repeats them for people reading logs.
func invalid(w http.ResponseWriter, what string, errs validate.Errors) {
	errs = append(validate.Errors(nil), errs...)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
	parts := make([]string, len(errs))
	for i, f := range errs {
		parts[i] = f.Field + ": " + f.Message
	}
	WriteError(w, http.StatusBadRequest, "invalid "+what+": "+strings.Join(parts, "; "), errs...)
}

// fail answers a failed store call: 503 when Redis is unreachable, does not
// answer within the request's deadline or cannot serve (loading, failing
// over), 500 for anything else. A request whose client has gone gets no
// answer.
func (h *handlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	if errors.Is(ctx.Err(), context.Canceled) {
		return // the client went away
	}
	// A full Redis refuses writes while reads still work: say so, as 503
	// (retry later), and log it once per interval rather than per request.
	if h.o.OOM.Note(ctx, err, "method", r.Method, "path", r.URL.Path) || redisoom.Is(err) {
		WriteError(w, http.StatusServiceUnavailable, "redis out of memory: writes are refused until memory is freed")
		return
	}
	if reason, ok := unavailable(ctx, err, h.o.RequestTimeout.String()); ok {
		h.log.Warn("api: redis unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		WriteError(w, http.StatusServiceUnavailable, "redis unavailable: "+reason)
		return
	}
	h.log.Error("api: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	WriteError(w, http.StatusInternalServerError, "internal error")
}

// unavailable reports whether err means Redis could not serve the request,
// and why in a few words.
func unavailable(ctx context.Context, err error, timeout string) (string, bool) {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout() || errors.Is(err, redis.ErrPoolTimeout):
		return "no answer within " + timeout, true
	case errors.As(err, &ne), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return innermost(err, ne), true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed", true
	case errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolExhausted):
		return "client: " + strings.TrimPrefix(err.Error(), "redis: "), true
	case redis.IsLoadingError(err), redis.IsClusterDownError(err), redis.IsTryAgainError(err),
		redis.IsMasterDownError(err), redis.IsReadOnlyError(err):
		var re redis.Error
		if errors.As(err, &re) {
			return re.Error(), true
		}
		return err.Error(), true
	}
	return "", false
}

// innermost is the network error's own message ("dial tcp 127.0.0.1:6379:
// connect: connection refused"), without the callers' wrapping.
func innermost(err error, ne net.Error) string {
	if ne != nil {
		return ne.Error()
	}
	return err.Error()
}
