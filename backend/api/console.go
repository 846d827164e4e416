package api

// The web console's part of the API: signing in and out (the session cookie
// of package session), and two read-only views the console needs that the
// other endpoints do not give: ingest health and a rule preview over stored
// counts.

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/session"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/redis/go-redis/v9"
)

const (
	// ingestRecentEntries bounds the newest stream entries read to tell when
	// each host was last heard from.
	ingestRecentEntries = 2000
	// ingestRateWindow is the span entries per second are measured over;
	// at most ingestRecentEntries of it are read.
	ingestRateWindow = 10 * time.Second
	// maxLabelNames bounds the label names ingest health lists (the
	// console's series explorer offers them).
	maxLabelNames = 64
	// previewSpan is how far back a rule preview replays.
	previewSpan = 24 * time.Hour
)

// IngestSource is what GET /api/v1/health/ingest reads: the stream, its
// dead-letter stream and the consumer group. A nil Redis answers 404.
type IngestSource struct {
	Redis  redis.UniversalClient
	Stream string
	Dead   string
	Group  string
	// Shards, if set, is how many stream shards to sum (streamshard.Keys
	// of Stream, each with its own dead-letter stream); nil: Stream alone.
	Shards func() int
}

func (h *handlers) consoleRoutes(r chi.Router) {
	r.Post("/session", h.signIn)
	r.Get("/session", h.whoAmI)
	r.Delete("/session", h.signOut)
	r.Get("/health/ingest", h.ingestHealth)
	r.Post("/rules/preview", h.previewRule)
}

// sessionAuth authenticates a request without an Authorization header by its
// session cookie, and answers it (false) when that does not pass. Sign-in is
// the one call that needs neither.
func (h *handlers) sessionAuth(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost && strings.TrimSuffix(r.URL.Path, "/") == "/api/v1/session" {
		return true
	}
	id := session.FromRequest(r)
	if h.o.Sessions == nil || id == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyalert"`)
		WriteError(w, http.StatusUnauthorized, "missing or invalid bearer token")
		return false
	}
	s, err := h.o.Sessions.Lookup(r.Context(), id)
	if errors.Is(err, session.ErrNotFound) || (err == nil && !h.tokenLive(s.Token)) {
		session.ClearCookie(w, r)
		WriteError(w, http.StatusUnauthorized, "session expired or signed out: sign in again")
		return false
	}
	if err != nil {
		h.fail(w, r, err)
		return false
	}
	if !session.SafeMethod(r.Method) && !session.CSRFValid(r, s) {
		WriteError(w, http.StatusForbidden, "missing or invalid CSRF token",
			FieldError{Field: session.CSRFHeader, Message: "send the session's CSRF token (GET /api/v1/session) with every change"})
		return false
	}
	return true
}

// tokenLive reports whether the API token a session was opened with is
// still configured.
func (h *handlers) tokenLive(fp string) bool {
	for _, t := range h.o.Tokens {
		if session.Fingerprint(t) == fp {
			return true
		}
	}
	return false
}

func (h *handlers) signIn(w http.ResponseWriter, r *http.Request) {
	if h.o.Sessions == nil || len(h.o.Tokens) == 0 {
		WriteError(w, http.StatusNotFound, "sessions are not enabled")
		return
	}
	// Only JSON: a page on another site can post a form or text/plain
	// here without asking, but not application/json, so it cannot sign a
	// browser into a session of its choosing.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		WriteError(w, http.StatusUnsupportedMediaType, "sign-in takes application/json",
			FieldError{Field: "Content-Type", Message: "want application/json"})
		return
	}
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	var in struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &in); err != nil || in.Token == "" {
		WriteError(w, http.StatusBadRequest, "invalid sign-in", FieldError{Field: "token", Message: "the API token is required"})
		return
	}
	// Counted before the token is compared, so concurrent guesses stay
	// within the budget too; a sign-in that passes gives its attempt back.
	addr, at := session.ClientAddress(r), h.o.Now()
	retry, err := h.o.Sessions.Attempt(r.Context(), addr, at)
	if errors.Is(err, session.ErrTooManyAttempts) {
		h.log.Warn("console sign-in rate limited", "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", strconv.Itoa(int(retry/time.Second)))
		WriteError(w, http.StatusTooManyRequests, "too many failed sign-ins from this address: wait for the next minute",
			FieldError{Field: "token", Message: "too many failed sign-ins from " + addr + " (KEYALERT_SESSION_SIGNIN_RATE a minute): try again in " +
				strconv.Itoa(int(retry/time.Second)) + " s"})
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var tok string
	for _, t := range h.o.Tokens { // no early exit: time does not tell which token matched
		if subtle.ConstantTimeCompare([]byte(in.Token), []byte(t)) == 1 {
			tok = t
		}
	}
	if tok == "" {
		h.log.Info("console sign-in refused", "remote", r.RemoteAddr)
		WriteError(w, http.StatusUnauthorized, "invalid sign-in", FieldError{Field: "token", Message: "not one of the API tokens"})
		return
	}
	if err := h.o.Sessions.Succeeded(r.Context(), addr, at); err != nil {
		h.fail(w, r, err)
		return
	}
	id, csrf, ended, err := h.o.Sessions.Create(r.Context(), session.Fingerprint(tok))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.o.Sessions.SetCookie(w, r, id)
	// signed_out_oldest: sessions of the same token ended by
	// KEYALERT_SESSION_MAX_PER_TOKEN.
	h.log.Info("console sign-in", "remote", r.RemoteAddr, "token", session.Fingerprint(tok)[:8], "signed_out_oldest", ended)
	WriteJSON(w, http.StatusOK, map[string]any{"csrf_token": csrf, "expires_at": h.o.Now().Add(h.o.Sessions.TTL()).UTC()})
}

// whoAmI gives the console its CSRF token after a reload (it keeps it only
// in memory).
func (h *handlers) whoAmI(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" || h.o.Sessions == nil {
		WriteJSON(w, http.StatusOK, map[string]any{"auth": "bearer", "now": h.o.Now().UTC()})
		return
	}
	s, err := h.o.Sessions.Lookup(r.Context(), session.FromRequest(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// now lets the console query ranges on keyalertd's clock.
	WriteJSON(w, http.StatusOK, map[string]any{"auth": "session", "csrf_token": s.CSRF, "now": h.o.Now().UTC()})
}

func (h *handlers) signOut(w http.ResponseWriter, r *http.Request) {
	if h.o.Sessions != nil {
		if err := h.o.Sessions.Delete(r.Context(), session.FromRequest(r)); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	session.ClearCookie(w, r)
	h.log.Info("console sign-out", "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

// hostHeard is when a host's newest entry was written.
type hostHeard struct {
	Host      string    `json:"host"`
	LastHeard time.Time `json:"last_heard"`
}

// ingestHealth answers what the overview shows of ingest: the group's lag
// and pending entries, entries per second over the last 10 s, dead letters,
// and when each host was last heard from among the newest 2,000 entries (and
// the label names those entries carry, for the series explorer).
func (h *handlers) ingestHealth(w http.ResponseWriter, r *http.Request) {
	src := h.o.Ingest
	if src.Redis == nil {
		WriteError(w, http.StatusNotFound, "ingest health is not available")
		return
	}
	ctx := r.Context()
	out := map[string]any{"stream": src.Stream, "group": src.Group}
	streams, deads := []string{src.Stream}, []string{src.Dead}
	if src.Shards != nil && src.Shards() > 1 {
		streams = streamshard.Keys(src.Stream, src.Shards())
		deads = deads[:0]
		for _, k := range streams {
			deads = append(deads, stream.HashTag(k)+":dead")
		}
		out["shards"] = len(streams)
	}
	// With stream shards every figure is the sum over them, and the hosts
	// are taken from each shard's newest entries.
	var length, dead, lag, pending int64
	var recentN int
	var newest []redis.XMessage
	capped, grouped := false, false
	now := time.Now() // stream ids are the real clock of Redis, not event time
	since := strconv.FormatInt(now.Add(-ingestRateWindow).UnixMilli(), 10) + "-0"
	for i, key := range streams {
		n, err := src.Redis.XLen(ctx, key).Result()
		if err != nil {
			h.fail(w, r, err)
			return
		}
		length += n
		d, err := src.Redis.XLen(ctx, deads[i]).Result()
		if err != nil {
			h.fail(w, r, err)
			return
		}
		dead += d
		groups, err := src.Redis.XInfoGroups(ctx, key).Result()
		if err != nil && !isNoStream(err) {
			h.fail(w, r, err)
			return
		}
		for _, g := range groups {
			if g.Name == src.Group {
				lag, pending, grouped = lag+g.Lag, pending+g.Pending, true
			}
		}
		recent, err := src.Redis.XRangeN(ctx, key, since, "+", ingestRecentEntries).Result()
		if err != nil {
			h.fail(w, r, err)
			return
		}
		recentN += len(recent)
		capped = capped || len(recent) == ingestRecentEntries
		ms, err := src.Redis.XRevRangeN(ctx, key, "+", "-", ingestRecentEntries).Result()
		if err != nil {
			h.fail(w, r, err)
			return
		}
		newest = append(newest, ms...)
	}
	out["length"], out["dead_letters"] = length, dead
	if grouped {
		out["lag"], out["pending"] = lag, pending
	}
	out["entries_per_second"] = float64(recentN) / ingestRateWindow.Seconds()
	out["entries_per_second_capped"] = capped
	heard := map[string]time.Time{}
	names := map[string]bool{}
	for _, m := range newest {
		e, err := stream.Parse(m.Values)
		if err != nil {
			continue // dead-lettered by the consumer; counted there
		}
		for _, l := range e.Labels {
			if len(names) < maxLabelNames {
				names[l.Name] = true
			}
		}
		at := streamTime(m.ID)
		if at.After(heard[e.Host]) {
			heard[e.Host] = at
		}
	}
	hosts := make([]hostHeard, 0, len(heard))
	for host, at := range heard {
		hosts = append(hosts, hostHeard{host, at.UTC()})
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].LastHeard.After(hosts[j].LastHeard) })
	out["hosts"] = hosts
	out["hosts_from_entries"] = len(newest)
	labelNames := make([]string, 0, len(names))
	for n := range names {
		labelNames = append(labelNames, n)
	}
	sort.Strings(labelNames)
	out["label_names"] = labelNames
	WriteJSON(w, http.StatusOK, out)
}

func isNoStream(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}

// streamTime is the time a stream id was written (its milliseconds part).
func streamTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n)
}

// previewRule replays a rule (the body of POST /rules, not stored) over
// the last 24 hours of stored counts and answers the pages it would have
// sent, as `keyalert replay` does. Its counts are bounded like a counts call.
func (h *handlers) previewRule(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	rule, errs := rules.Decode(b, rules.DecodeOptions{DefaultRoutingKey: true, Limits: h.o.Rules.Limits(), Retention: h.o.Retention})
	if errs.Err() != nil {
		invalid(w, "rule", errs)
		return
	}
	rule.Enabled = true
	if !h.acquire(w) {
		return
	}
	defer h.release()
	to := h.o.Now().UTC().Truncate(time.Minute)
	from := to.Add(-previewSpan)
	lookFrom := from.Add(-rule.Condition.Lookback())
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	cells, err := h.o.Counts.CellsMany(ctx, rule.KeywordIDs(), lookFrom.Unix(), to.Add(time.Minute).Unix())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	n := 0
	for _, cs := range cells {
		n += len(cs)
	}
	if int64(n) > h.o.MaxCellsPerQuery {
		WriteError(w, http.StatusBadRequest, "preview over KEYALERT_MAX_CELLS_PER_QUERY",
			FieldError{Field: "keywords", Message: "the rule's keywords have " + strconv.Itoa(n) + " cells in 24 hours, over the limit of " + strconv.FormatInt(h.o.MaxCellsPerQuery, 10)})
		return
	}
	events, err := alert.Replay([]rules.Rule{rule}, cells, from, to, time.Minute)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "preview: "+err.Error())
		return
	}
	if events == nil {
		events = []alert.ReplayEvent{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "events": events})
}
