package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/validate"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/duration"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

// Point is one minute of a counts answer, or one hour when the range
// reaches into the hourly tier.
type Point struct {
	Minute time.Time `json:"minute"` // start of the point: a minute, or an hour when Step is 3600
	Count  int64     `json:"count"`
	// Step is the point's length in seconds, 60 or 3600; set on every point
	// of an answer that reaches into the hourly tier, absent (meaning 60)
	// otherwise, so answers over recent minutes keep their shape.
	Step int64 `json:"step,omitempty"`
}

// CountsResponse is the body of GET /api/v1/counts.
type CountsResponse struct {
	Keyword string    `json:"keyword"`
	ID      string    `json:"id"` // the series' keyword ID
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Points  []Point   `json:"points"` // minutes (and hours) with a count, ascending
	Total   int64     `json:"total"`
	// Counted says an enabled rule counts this series (keyword with its
	// match and ignore_case): false with no points means nothing counts
	// it, not that it counted 0.
	Counted bool `json:"counted"`
	// By and Series answer by=<name>: the limit values of that dimension
	// (host, tag or a label) with the most matches, each with its points.
	By     string         `json:"by,omitempty"`
	Series []CountsSeries `json:"series,omitempty"`
}

// CountsSeries is the counts of one value of the by dimension.
type CountsSeries struct {
	Value string `json:"value"`
	// Labels is the series' dimension as an object: {"namespace": "shop"}.
	Labels map[string]string `json:"labels"`
	Points []Point           `json:"points"`
	Total  int64             `json:"total"`
}

// TopItem is one value of a top answer's dimension (host, tag or label).
type TopItem struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}

// TopResponse is the body of GET /api/v1/counts/top.
type TopResponse struct {
	Keyword string    `json:"keyword"`
	ID      string    `json:"id"`
	By      string    `json:"by"`
	Window  string    `json:"window"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Items   []TopItem `json:"items"`   // highest count first, then by value
	Total   int64     `json:"total"`   // over all values, not only the listed ones
	Counted bool      `json:"counted"` // as in CountsResponse
}

// bad is one bad query parameter.
func bad(param, format string, args ...any) error {
	var errs validate.Errors
	errs.Add(param, format, args...)
	return errs
}

// writeErr answers err: 400 naming the parameter for a bad query
// parameter, else as fail does.
func (h *handlers) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var ve validate.Errors
	if errors.As(err, &ve) {
		invalid(w, "query", ve)
		return
	}
	h.fail(w, r, err)
}

// spec reads keyword, match and ignore_case.
func spec(q url.Values) (keyword.Spec, error) {
	var s keyword.Spec
	s.Text = q.Get("keyword")
	if s.Text == "" {
		return s, bad("keyword", "required")
	}
	if m := q.Get("match"); m != "" {
		mode, err := keyword.ParseMode(m)
		if err != nil {
			return s, bad("match", "%q: want substring, word or regex", m)
		}
		s.Match = mode
	}
	if ic := q.Get("ignore_case"); ic != "" {
		b, err := strconv.ParseBool(ic)
		if err != nil {
			return s, bad("ignore_case", "%q: want true or false", ic)
		}
		s.IgnoreCase = b
	}
	if err := s.Validate(); err != nil {
		return s, bad("keyword", "%v", err)
	}
	return s, nil
}

func timeParam(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, bad(name, "required (RFC 3339, e.g. 2024-05-01T10:00:00Z)")
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, bad(name, "%q is not an RFC 3339 time", v)
	}
	return t, nil
}

// counts serves GET /api/v1/counts: the keyword's per-minute counts for the
// minutes overlapping [from, to), optionally for one host and/or tag.
func (h *handlers) counts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s, err := spec(q)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	from, err := timeParam(q, "from")
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	to, err := timeParam(q, "to")
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	if !to.After(from) {
		h.writeErr(w, r, bad("to", "must be after from"))
		return
	}
	if span := h.maxSpan(); to.Sub(from) > span {
		h.writeErr(w, r, bad("to", "range over %d days", span/(24*time.Hour)))
		return
	}
	f, err := seriesFilter(q)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	by, limit, err := splitParams(q)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}

	// Minutes overlapping [from, to); nothing older than the retention
	// exists, so that part is not read.
	first := from.Unix() - ((from.Unix()%60)+60)%60
	lo, split := h.tiers(first)
	if to.Unix()-max(lo, split) > window.MaxMinutes*60 {
		h.writeErr(w, r, bad("to", "over %d days of minutes", window.MaxMinutes/(24*60)))
		return
	}
	if !h.acquire(w) {
		return
	}
	defer h.release()
	mcs, err := h.o.Counts.CountsTiered(r.Context(), s.ID(), lo, to.Unix(), split, f, h.o.MaxCellsPerQuery)
	if err != nil {
		h.writeCountsErr(w, r, err, "to")
		return
	}
	counted, err := h.o.Rules.Counted(r.Context(), s.ID())
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	resp := CountsResponse{Keyword: s.Text, ID: s.ID(), From: from.UTC(), To: to.UTC(), Points: make([]Point, 0, len(mcs)), Counted: counted}
	tiered := lo < split
	points := func(ps []window.Point) ([]Point, int64) {
		out, total := make([]Point, 0, len(ps)), int64(0)
		for _, c := range ps {
			p := Point{Minute: time.Unix(c.Start, 0).UTC(), Count: c.Count}
			if tiered {
				p.Step = c.Step
			}
			out = append(out, p)
			total += c.Count
		}
		return out, total
	}
	resp.Points, resp.Total = points(mcs)
	if by != "" {
		split, err := h.o.Counts.SplitTiered(r.Context(), s.ID(), lo, to.Unix(), split, by, f, limit, h.o.MaxCellsPerQuery)
		if err != nil {
			h.writeCountsErr(w, r, err, "to")
			return
		}
		resp.By, resp.Series = by, make([]CountsSeries, 0, len(split))
		for _, d := range split {
			ps, total := points(d.Points)
			resp.Series = append(resp.Series, CountsSeries{Value: d.Value, Labels: map[string]string{by: d.Value}, Points: ps, Total: total})
		}
	}
	WriteJSON(w, http.StatusOK, resp)
}

// splitParams reads by (host, tag or a label name; "" for none) and limit
// (default 10, 1–1000) of a counts call split by a dimension.
func splitParams(q url.Values) (by string, limit int, err error) {
	by = q.Get("by")
	if by != "" && by != stream.LabelHost && by != stream.LabelTag && stream.ValidLabelName(by) != nil {
		return "", 0, bad("by", "%q: want host, tag or a label name (letters, digits and _, not starting with a digit)", by)
	}
	limit = 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, bad("limit", "%q: want an integer from 1 to 1000", v)
		}
		limit = n
	}
	return by, limit, nil
}

// LabelParam is the prefix of a label filter parameter: label.<name>=<glob>.
const LabelParam = "label."

// seriesFilter reads host= and tag= (exact values) and label.<name>=<glob>
// (repeatable: every one must match; a series lacking the label has the
// empty value for it).
func seriesFilter(q url.Values) (window.Filter, error) {
	f := window.Filter{Host: q.Get("host"), HostSet: q.Has("host"), Tag: q.Get("tag"), TagSet: q.Has("tag")}
	globs := map[string]string{}
	for p, vs := range q {
		name, ok := strings.CutPrefix(p, LabelParam)
		if !ok {
			continue
		}
		if err := stream.ValidLabelName(name); err != nil {
			return f, bad(p, "%q is not a label name (letters, digits and _, not starting with a digit; host and tag have their own parameters)", name)
		}
		if len(vs) != 1 {
			return f, bad(p, "given %d times: give each label once", len(vs))
		}
		if len(vs[0]) > rules.MaxFilterLen {
			return f, bad(p, "%d bytes, over the limit of %d", len(vs[0]), rules.MaxFilterLen)
		}
		globs[name] = vs[0]
	}
	if len(globs) > 0 {
		// An empty glob selects the series whose label is empty (or absent).
		f.Series = func(_, _ string, labels []stream.Label) bool {
			for name, g := range globs {
				if !rules.MatchGlob(g, window.LabelValue(labels, name)) {
					return false
				}
			}
			return true
		}
	}
	return f, nil
}

// hourlyTier says whether reads reach past the minute retention.
func (h *handlers) hourlyTier() bool { return h.o.HourlyRetention > h.o.Retention }

// maxSpan is the longest range a counts call may ask for: 31 days, or the
// hourly retention when that is longer (at most window.MaxHours).
func (h *handlers) maxSpan() time.Duration {
	span := window.MaxMinutes * time.Minute
	if h.hourlyTier() {
		span = max(span, min(h.o.HourlyRetention, window.MaxHours*time.Hour))
	}
	return span
}

// tiers clamps the first second a read needs (from) to what is still kept
// and says where the minute tier starts (split): the first whole hour whose
// minutes are all still kept. Hours before it are read from the hourly tier,
// whose roll-up's final pass ran before their first minute expired. Without
// an hourly tier split is below every time.
func (h *handlers) tiers(from int64) (lo, split int64) {
	now := h.o.Now().Unix()
	if !h.hourlyTier() {
		return max(from, now-int64((h.o.Retention+time.Minute)/time.Second)), math.MinInt64
	}
	split = window.HourStart(now - int64(h.o.Retention/time.Second) + 3599)
	return max(from, window.HourStart(now-int64(h.o.HourlyRetention/time.Second))), split
}

// acquire takes a query slot, or answers 503 and returns false: a counts or
// top call holds Redis replies and sums in memory while it runs, so their
// number in flight bounds what they can cost together.
func (h *handlers) acquire(w http.ResponseWriter) bool {
	select {
	case h.queries <- struct{}{}:
		return true
	default:
		w.Header().Set("Retry-After", "1")
		WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf(
			"too many counts queries in flight (limit %d, KEYALERT_MAX_CONCURRENT_QUERIES); retry shortly", h.o.MaxConcurrentQueries))
		return false
	}
}

func (h *handlers) release() { <-h.queries }

// writeCountsErr answers a read over the cell limit with 400 naming param
// and the limit, anything else as writeErr does.
func (h *handlers) writeCountsErr(w http.ResponseWriter, r *http.Request, err error, param string) {
	var le *window.LimitError
	if errors.As(err, &le) {
		h.writeErr(w, r, bad(param, "%v", le))
		return
	}
	h.writeErr(w, r, err)
}

// top serves GET /api/v1/counts/top: the hosts or tags with the most matches
// over the last window (the current minute included).
func (h *handlers) top(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s, err := spec(q)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	win := 15 * time.Minute
	winText := "15m"
	if v := q.Get("window"); v != "" {
		d, err := duration.Parse(v)
		if err != nil || d < time.Minute {
			h.writeErr(w, r, bad("window", "%q: want a duration of at least 1m, like 15m, 2h or 1d", v))
			return
		}
		keep := h.o.Retention
		if h.hourlyTier() {
			keep = min(h.o.HourlyRetention, window.MaxHours*time.Hour)
		}
		if d > keep || (!h.hourlyTier() && d > window.MaxMinutes*time.Minute) {
			h.writeErr(w, r, bad("window", "%q is longer than the retention (%s)", v, duration.Format(keep)))
			return
		}
		win, winText = d, v
	}
	by := "host"
	if v := q.Get("by"); v != "" {
		if v != stream.LabelHost && v != stream.LabelTag && stream.ValidLabelName(v) != nil {
			h.writeErr(w, r, bad("by", "%q: want host, tag or a label name (letters, digits and _, not starting with a digit)", v))
			return
		}
		by = v
	}
	f, err := seriesFilter(q)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			h.writeErr(w, r, bad("limit", "%q: want an integer from 1 to 1000", v))
			return
		}
		limit = n
	}
	// Whole minutes: the current one plus the ones before it; past the
	// minute retention, whole hours from the hourly tier.
	now := h.o.Now().Unix()
	to := now - now%60 + 60
	from := to - int64((win+time.Minute-1)/time.Minute)*60
	split := from
	if h.hourlyTier() {
		if _, split = h.tiers(from); from < split {
			from = window.HourStart(from)
		} else {
			split = from
		}
	}
	if to-max(from, split) > window.MaxMinutes*60 {
		h.writeErr(w, r, bad("window", "over %d days of minutes", window.MaxMinutes/(24*60)))
		return
	}
	if !h.acquire(w) {
		return
	}
	defer h.release()
	groups, total, err := h.o.Counts.TopFiltered(r.Context(), s.ID(), from, to, split, by, f, limit, h.o.MaxCellsPerQuery)
	if err != nil {
		h.writeCountsErr(w, r, err, "window")
		return
	}
	counted, err := h.o.Rules.Counted(r.Context(), s.ID())
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	items := make([]TopItem, len(groups))
	for i, g := range groups {
		items[i] = TopItem{Value: g.Value, Count: g.Count}
	}
	WriteJSON(w, http.StatusOK, TopResponse{
		Keyword: s.Text, ID: s.ID(), By: by, Window: winText,
		From: time.Unix(from, 0).UTC(), To: time.Unix(to, 0).UTC(), Items: items, Total: total, Counted: counted,
	})
}
