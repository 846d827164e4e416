// Package pdreceiver is a PagerDuty Events API v2 stand-in: it validates every
// event against the v2 schema, answers like PagerDuty (202 with the dedup key,
// 400 with the errors), can be told to fail the next N events with 500 or 429,
// and records what it accepted for tests (Events, WaitFor) and for the demo's
// cmd/pdreceiver, which prints each event on one line.
package pdreceiver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Rejection is an event answered with 400.
type Rejection struct {
	Received time.Time `json:"received"`
	Errors   []string  `json:"errors"`
	Body     string    `json:"body"`
}

// Receiver records events; its zero value is not usable, use New.
type Receiver struct {
	mu         sync.Mutex
	events     []Event
	rejections []Rejection
	attempts   int
	failLeft   int
	failStatus int
	changed    chan struct{} // closed and replaced on every change
	onEvent    func(Event)
	onReject   func(Rejection)
	onFail     func(status int)
	now        func() time.Time
	// Rate limit per routing key: at most rateN accepted per ratePer.
	rateN     int
	ratePer   time.Duration
	accepted  map[string][]time.Time
	throttled int
	// lateLeft requests are held lateHold, then processed: the client has
	// given up by then, as with a PagerDuty slower than its timeout.
	lateLeft int
	lateHold time.Duration
}

// RateLimit makes the receiver answer 429 with Retry-After, like PagerDuty,
// to an event beyond n accepted for its routing key in the last per
// (PagerDuty: about 120 per minute). n <= 0 removes the limit.
func (r *Receiver) RateLimit(n int, per time.Duration) {
	r.mu.Lock()
	r.rateN, r.ratePer, r.accepted = n, per, map[string][]time.Time{}
	r.mu.Unlock()
}

// Throttled counts the requests answered 429 by RateLimit.
func (r *Receiver) Throttled() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.throttled
}

// ProcessLate holds each of the next n requests for hold before processing
// (validating and recording) it, whether or not the client still waits: a
// client with a shorter timeout gives up, and the event lands late anyway.
func (r *Receiver) ProcessLate(n int, hold time.Duration) {
	r.mu.Lock()
	r.lateLeft, r.lateHold = n, hold
	r.mu.Unlock()
}

// New returns an empty receiver.
func New() *Receiver {
	return &Receiver{changed: make(chan struct{}), now: time.Now}
}

// OnEvent, OnReject and OnFail set callbacks run for each accepted, rejected
// and deliberately failed request (the cmd prints from them).
func (r *Receiver) OnEvent(fn func(Event)) {
	r.mu.Lock()
	r.onEvent = fn
	r.mu.Unlock()
}

// OnReject: see OnEvent.
func (r *Receiver) OnReject(fn func(Rejection)) {
	r.mu.Lock()
	r.onReject = fn
	r.mu.Unlock()
}

// OnFail: see OnEvent.
func (r *Receiver) OnFail(fn func(status int)) {
	r.mu.Lock()
	r.onFail = fn
	r.mu.Unlock()
}

// FailNext makes the next n requests fail with status (500, 429, ...) before
// any validation, as an overloaded PagerDuty would.
func (r *Receiver) FailNext(n, status int) {
	r.mu.Lock()
	r.failLeft, r.failStatus = n, status
	r.mu.Unlock()
}

// Events returns a snapshot of the accepted events, oldest first.
func (r *Receiver) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Rejections returns a snapshot of the events answered with 400.
func (r *Receiver) Rejections() []Rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Rejection(nil), r.rejections...)
}

// Attempts counts every POST to the enqueue endpoint, failed ones included.
func (r *Receiver) Attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}

// Reset forgets every event, rejection and programmed failure.
func (r *Receiver) Reset() {
	r.mu.Lock()
	r.events, r.rejections, r.attempts, r.failLeft = nil, nil, 0, 0
	r.notifyLocked()
	r.mu.Unlock()
}

// WaitFor waits until cond holds for the accepted events and returns them;
// it fails when ctx ends first.
func (r *Receiver) WaitFor(ctx context.Context, cond func([]Event) bool) ([]Event, error) {
	for {
		r.mu.Lock()
		evs := append([]Event(nil), r.events...)
		ch := r.changed
		r.mu.Unlock()
		if cond(evs) {
			return evs, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return evs, fmt.Errorf("waiting for events (have %d): %w", len(evs), ctx.Err())
		}
	}
}

// WaitForN waits until at least n events were accepted.
func (r *Receiver) WaitForN(ctx context.Context, n int) ([]Event, error) {
	return r.WaitFor(ctx, func(evs []Event) bool { return len(evs) >= n })
}

func (r *Receiver) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Handler serves the receiver:
//
//	POST   /v2/enqueue  the Events API v2 endpoint
//	GET    /events      accepted events as JSON (?rejected=1 for rejections)
//	DELETE /events      Reset
//	POST   /fail?n=N&status=S   FailNext(N, S)
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/enqueue", r.enqueue)
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Query().Get("rejected") != "" {
			writeJSON(w, http.StatusOK, r.Rejections())
			return
		}
		writeJSON(w, http.StatusOK, r.Events())
	})
	mux.HandleFunc("DELETE /events", func(w http.ResponseWriter, _ *http.Request) {
		r.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, req *http.Request) {
		n, err1 := strconv.Atoi(req.URL.Query().Get("n"))
		status, err2 := strconv.Atoi(req.URL.Query().Get("status"))
		if err1 != nil || err2 != nil || n < 0 || status < 400 || status > 599 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want ?n=<count>&status=<4xx or 5xx>"})
			return
		}
		r.FailNext(n, status)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func (r *Receiver) enqueue(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.attempts++
	fail := 0
	if r.failLeft > 0 {
		r.failLeft--
		fail = r.failStatus
	}
	onEvent, onReject, onFail := r.onEvent, r.onReject, r.onFail
	var hold time.Duration
	if fail == 0 && r.lateLeft > 0 {
		r.lateLeft--
		hold = r.lateHold
	}
	r.mu.Unlock()
	if fail != 0 {
		io.Copy(io.Discard, io.LimitReader(req.Body, MaxEventBytes+1))
		if onFail != nil {
			onFail(fail)
		}
		if fail == http.StatusTooManyRequests {
			writeJSON(w, fail, map[string]string{"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."})
		} else {
			writeJSON(w, fail, map[string]string{"status": "unavailable", "message": "Programmed failure"})
		}
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxEventBytes+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, invalid([]string{"reading body: " + err.Error()}))
		return
	}
	if hold > 0 {
		time.Sleep(hold) // processed below even if the client is gone
	}
	ev, errs := Validate(body)
	now := r.now().UTC()
	if len(errs) > 0 {
		rej := Rejection{Received: now, Errors: errs, Body: truncate(string(body), 4096)}
		r.mu.Lock()
		r.rejections = append(r.rejections, rej)
		r.notifyLocked()
		r.mu.Unlock()
		if onReject != nil {
			onReject(rej)
		}
		writeJSON(w, http.StatusBadRequest, invalid(errs))
		return
	}
	if ev.DedupKey == "" {
		ev.DedupKey = newDedupKey() // PagerDuty makes one up for a trigger without
	}
	ev.Received = now
	r.mu.Lock()
	if retry := r.throttleLocked(ev.RoutingKey, now); retry > 0 {
		r.throttled++
		r.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."})
		return
	}
	r.events = append(r.events, ev)
	r.notifyLocked()
	r.mu.Unlock()
	if onEvent != nil {
		onEvent(ev)
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
}

// throttleLocked records an accepted event of key at now, or returns how
// long until the limit admits one more.
func (r *Receiver) throttleLocked(key string, now time.Time) time.Duration {
	if r.rateN <= 0 {
		return 0
	}
	list := r.accepted[key]
	for len(list) > 0 && now.Sub(list[0]) >= r.ratePer {
		list = list[1:]
	}
	if len(list) >= r.rateN {
		r.accepted[key] = list
		return r.ratePer - now.Sub(list[0])
	}
	r.accepted[key] = append(list, now)
	return 0
}

func invalid(errs []string) map[string]any {
	return map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": errs}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func newDedupKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Server is a receiver listening on a loopback port.
type Server struct {
	*Receiver
	// URL is the enqueue endpoint, e.g. http://127.0.0.1:41234/v2/enqueue.
	URL  string
	Addr string
	srv  *http.Server
}

// Listen serves a new receiver on addr ("127.0.0.1:0" for a free port).
func Listen(addr string) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	r := New()
	s := &Server{Receiver: r, Addr: l.Addr().String(), srv: &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 10 * time.Second}}
	s.URL = "http://" + s.Addr + "/v2/enqueue"
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Start serves a receiver on a free loopback port for the test's lifetime.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatalf("start pdreceiver: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
