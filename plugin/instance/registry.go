package instance

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"github.com/keyalert/keyalert/pkg/redislog"
	"github.com/keyalert/keyalert/plugin/config"
)

// Registry holds the live instances of one process by id. Fluent Bit gets the
// id as the instance's context and hands it back on every flush and exit, so
// the id, not a pointer into Go memory, is what crosses into C.
//
// Every method recovers panics: none may cross into Fluent Bit.
type Registry struct {
	log *slog.Logger

	mu    sync.Mutex
	next  uint64
	live  map[uint64]*Instance
	inits int // instances ever opened, for names
}

// NewRegistry returns an empty registry logging to log.
func NewRegistry(log *slog.Logger) *Registry {
	return &Registry{log: log, live: map[uint64]*Instance{}, next: 1}
}

// DefaultLogger is the plugin's logger: text to stderr, level from
// $KEYALERT_LOG_LEVEL (debug, info, warn, error; default info).
func DefaultLogger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(os.Getenv("KEYALERT_LOG_LEVEL"))); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("plugin", "keyalert")
}

var redisLogOnce sync.Once

// Init opens an instance from the properties get returns and registers it.
// It returns the instance id (0 on failure) and FLBOK or FLBError.
func (r *Registry) Init(get config.Getter) (id uint64, code int) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic in init", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			id, code = 0, FLBError
		}
	}()
	redisLogOnce.Do(func() { redislog.Route(r.log, slog.LevelDebug) })
	r.mu.Lock()
	name := fmt.Sprintf("keyalert.%d", r.inits)
	r.inits++
	r.mu.Unlock()
	in, err := Open(name, get, r.log)
	if err != nil {
		// Each line of a joined error is one bad key; log them one by one so
		// they read well in Fluent Bit's log.
		for _, line := range strings.Split(err.Error(), "\n") {
			r.log.Error("invalid configuration", "instance", name, "err", line)
		}
		return 0, FLBError
	}
	r.mu.Lock()
	id = r.next
	r.next++
	r.live[id] = in
	r.mu.Unlock()
	return id, FLBOK
}

// Flush flushes a chunk through instance id. A panic is logged and answered
// with FLBRetry: the chunk is kept, and Fluent Bit's Retry_Limit bounds how
// often it comes back.
func (r *Registry) Flush(id uint64, data []byte, tag string) (code int) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic in flush; asking Fluent Bit to retry", "id", id, "tag", tag,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			code = FLBRetry
		}
	}()
	r.mu.Lock()
	in := r.live[id]
	r.mu.Unlock()
	if in == nil {
		r.log.Error("flush for an unknown or closed instance; dropping the chunk", "id", id, "tag", tag)
		return FLBError
	}
	return in.Flush(data, tag)
}

// FlushAny serves FLBPluginFlush, which carries no context: with exactly one
// live instance the chunk goes there; otherwise it is refused, since it
// cannot be told which instance it belongs to.
func (r *Registry) FlushAny(data []byte, tag string) (code int) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic in flush; asking Fluent Bit to retry", "tag", tag,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			code = FLBRetry
		}
	}()
	ids := r.IDs()
	switch len(ids) {
	case 1:
		return r.Flush(ids[0], data, tag)
	case 0:
		r.log.Error("flush without context and no instance open; dropping the chunk", "tag", tag)
	default:
		r.log.Error("flush without context but several instances are open; dropping the chunk (use a Fluent Bit with FLBPluginFlushCtx)",
			"tag", tag, "instances", len(ids))
	}
	return FLBError
}

// Exit closes instance id: stops its goroutines and closes its Redis client.
func (r *Registry) Exit(id uint64) (code int) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic in exit", "id", id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			code = FLBError
		}
	}()
	r.mu.Lock()
	in := r.live[id]
	delete(r.live, id)
	r.mu.Unlock()
	if in == nil {
		r.log.Warn("exit for an unknown or already closed instance", "id", id)
		return FLBOK
	}
	if err := in.Close(); err != nil {
		r.log.Warn("closing the Redis client", "instance", in.Name, "err", err)
	}
	return FLBOK
}

// ExitAll closes every instance (FLBPluginExit, which carries no context).
func (r *Registry) ExitAll() (code int) {
	code = FLBOK
	for _, id := range r.IDs() {
		if c := r.Exit(id); c != FLBOK {
			code = c
		}
	}
	return code
}

// IDs lists the live instance ids in opening order.
func (r *Registry) IDs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]uint64, 0, len(r.live))
	for id := range r.live {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
