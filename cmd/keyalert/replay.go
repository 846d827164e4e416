package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/validate"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/pkg/multiline"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/keyalert/keyalert/plugin/flush"
)

// replayChunkRecords is how many records go into one chunk, about what
// Fluent Bit's tail input puts in a chunk of short lines.
const replayChunkRecords = 1000

// maxReplaySamples bounds --samples, like KEYALERT_ALERT_SAMPLE_LINES.
const maxReplaySamples = 50

// inputError is bad input (flags, rules file, log file): the command exits
// with status 2 instead of 1.
type inputError struct {
	err     error
	printed bool // the flag package has already shown it
}

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

func badInput(format string, args ...any) error {
	return &inputError{err: fmt.Errorf(format, args...)}
}

// replayCmd runs a log through the plugin's matcher and counting code and
// the engine's rule logic, and prints what would have fired and when.
func replayCmd(args []string) error {
	err := runReplay(args, os.Stdin, os.Stdout, os.Stderr)
	var ie *inputError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case errors.As(err, &ie):
		if !ie.printed {
			fmt.Fprintf(os.Stderr, "keyalert replay: %v\n", err)
		}
		os.Exit(2)
	}
	return err
}

type replayConfig struct {
	rulesPath  string
	timeLayout string
	timeRegex  *regexp.Regexp
	loc        *time.Location
	start      time.Time
	host, tag  string
	multiline  bool
	json       bool
	samples    int
	files      []string
}

const replayUsage = `usage: keyalert replay --rules rules.json [flags] file...

Runs log files (- for stdin) through the plugin's keyword matching and counting
and the backend's rule logic, and prints the alerts that would have fired,
re-notified and resolved, at the log's own times. Nothing is sent anywhere.

flags:
`

func parseReplayFlags(args []string, stderr io.Writer) (replayConfig, error) {
	var c replayConfig
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), replayUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.rulesPath, "rules", "", "rules file: a JSON array of rules as POST /api/v1/rules takes them, or the GET /api/v1/rules answer (required)")
	fs.BoolVar(&c.multiline, "multiline", false, "join lines starting with a tab, 4 spaces or \"Caused by:\" to the record before them (Java stack traces), as the feed command does")
	fs.StringVar(&c.timeLayout, "time-layout", "", "Go time layout of each line's timestamp, e.g. \"2006-01-02 15:04:05,000\" (default: recognise common forms)")
	timeRegex := fs.String("time-regex", "", "regular expression finding the timestamp in a line; its first group (or the whole match) is parsed (default: the start of the line)")
	tz := fs.String("tz", "Local", "time zone of timestamps without one, and of the output: Local, UTC or an IANA name")
	start := fs.String("start", "", "time of records before the first timestamp, and the year of timestamps without one (default now)")
	fs.StringVar(&c.host, "host", "replay", "host of the records, as the plugin's Hostname")
	fs.StringVar(&c.tag, "tag", "replay", "Fluent Bit tag of the records")
	fs.BoolVar(&c.json, "json", false, "print JSON (events and totals) instead of a table")
	fs.IntVar(&c.samples, "samples", 0, "sample lines shown under each trigger (0-50)")

	// Flags may come after the files too: parse again after each file name.
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return c, err
			}
			return c, &inputError{err: err, printed: true}
		}
		consumed := len(rest) - fs.NArg()
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed > 0 && (args[len(args)-len(rest)-1] == "--") {
			c.files = append(c.files, rest...)
			break
		}
		c.files = append(c.files, rest[0])
		rest = rest[1:]
	}

	if c.rulesPath == "" {
		return c, badInput("--rules is required (a JSON file of rules)")
	}
	if len(c.files) == 0 {
		return c, badInput("no log file given (use - for stdin)")
	}
	if n := countStdin(c.files); n > 1 {
		return c, badInput("stdin (-) given %d times", n)
	}
	if c.samples < 0 || c.samples > maxReplaySamples {
		return c, badInput("--samples %d: want between 0 and %d", c.samples, maxReplaySamples)
	}
	if c.host == "" {
		return c, badInput("--host is empty")
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return c, badInput("--tz %q: %v", *tz, err)
	}
	c.loc = loc
	if c.timeLayout != "" {
		// A layout must at least carry the hour and minute the counts need.
		ref := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
		t, err := time.Parse(c.timeLayout, ref.Format(c.timeLayout))
		if err != nil || t.Hour() != 15 || t.Minute() != 4 {
			return c, badInput("--time-layout %q: want a Go time layout with hour and minute, e.g. \"2006-01-02 15:04:05\"", c.timeLayout)
		}
	}
	if *timeRegex != "" {
		re, err := regexp.Compile(*timeRegex)
		if err != nil {
			return c, badInput("--time-regex %q: %v", *timeRegex, err)
		}
		c.timeRegex = re
	}
	c.start = time.Now().In(loc)
	if *start != "" {
		if c.start, err = parseStart(*start, loc); err != nil {
			return c, err
		}
	}
	return c, nil
}

func countStdin(files []string) int {
	n := 0
	for _, f := range files {
		if f == "-" {
			n++
		}
	}
	return n
}

func parseStart(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.In(loc), nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badInput("--start %q: want RFC 3339 or \"2006-01-02 15:04:05\"", s)
}

func runReplay(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseReplayFlags(args, stderr)
	if err != nil {
		return err
	}
	rs, err := loadReplayRules(cfg.rulesPath)
	if err != nil {
		return err
	}
	for i, r := range rs {
		if !r.Enabled {
			fmt.Fprintf(stderr, "keyalert replay: rules[%d] %q is disabled: not evaluated (its keywords are still counted)\n", i, r.Name)
		}
	}

	// The union of the rules' keywords, as the backend publishes it to the
	// plugin, compiled by the plugin's own matcher.
	var specs []keyword.Spec
	seen := map[string]bool{}
	for i := range rs {
		for _, s := range rs[i].Specs() {
			if !seen[s.ID()] {
				seen[s.ID()] = true
				specs = append(specs, s)
			}
		}
	}
	m, err := match.Compile(specs)
	if err != nil {
		return badInput("%s: %v", cfg.rulesPath, err)
	}
	ctr := &replayCounter{
		m:       m,
		f:       flush.New(flush.Options{Keys: []string{"log"}, Hostname: cfg.host, Samples: cfg.samples, Identity: "replay"}),
		tag:     cfg.tag,
		cells:   map[cellKey]int64{},
		samples: map[string][]window.Sample{},
	}
	rd := &recordReader{cfg: &cfg, ctr: ctr, prev: cfg.start,
		ts: &stampParser{layout: cfg.timeLayout, re: cfg.timeRegex, loc: cfg.loc, year: cfg.start.Year()}}
	for _, name := range cfg.files {
		if err := rd.readFile(name, stdin); err != nil {
			return err
		}
	}
	if err := ctr.flush(); err != nil {
		return err
	}
	if ctr.records > 0 && rd.timed == 0 {
		fmt.Fprintf(stderr, "keyalert replay: no timestamp recognised in any line; every record is at %s (set --time-layout, and --time-regex when the time is not at the start of the line)\n",
			cfg.start.Format("2006-01-02 15:04:05"))
	}

	cells := ctr.cellsByKeyword()
	for _, list := range ctr.samples {
		slices.SortStableFunc(list, func(a, b window.Sample) int { return cmp.Compare(a.Minute, b.Minute) })
	}
	var events []alert.ReplayEvent
	if ctr.records > 0 {
		events, err = alert.Replay(rs, cells, ctr.first, ctr.last, time.Minute)
		if err != nil {
			// Only the data can make it fail: a span too long to step through.
			return badInput("%v (check the log's timestamps, or set --time-layout)", err)
		}
	}
	rep := buildReport(&cfg, rs, specs, ctr, rd, events)
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	return writeTable(stdout, &cfg, rep)
}

// loadReplayRules reads and validates the rules file; every bad rule is
// reported with its index and fields.
func loadReplayRules(path string) ([]rules.Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, badInput("rules file: %v", err)
	}
	items, err := splitRulesDoc(b)
	if err != nil {
		return nil, badInput("%s: %v", path, err)
	}
	if len(items) == 0 {
		return nil, badInput("%s: no rules in the file", path)
	}
	var problems []string
	out := make([]rules.Rule, 0, len(items))
	for i, raw := range items {
		r, errs := decodeReplayRule(raw)
		if len(errs) > 0 {
			name := ""
			if r.Name != "" {
				name = fmt.Sprintf(" %q", r.Name)
			}
			for _, fe := range errs {
				problems = append(problems, fmt.Sprintf("%s: rules[%d]%s: %s: %s", path, i, name, fe.Field, fe.Message))
			}
			continue
		}
		out = append(out, r)
	}
	if len(problems) > 0 {
		return nil, badInput("%s", strings.Join(problems, "\n"))
	}
	return out, nil
}

// decodeReplayRule validates one rule as POST /api/v1/rules does, except
// that the routing key is optional and may be the redacted form an export
// of the live rules carries: a replay never pages.
func decodeReplayRule(raw json.RawMessage) (rules.Rule, validate.Errors) {
	r, errs := rules.Decode(raw, rules.DecodeOptions{DefaultRoutingKey: true})
	var probe struct {
		ID        string `json:"id"`
		PagerDuty struct {
			RoutingKey string `json:"routing_key"`
		} `json:"pagerduty"`
	}
	_ = json.Unmarshal(raw, &probe) // fields of the wrong type are already in errs
	if strings.HasPrefix(probe.PagerDuty.RoutingKey, "*") {
		errs = slices.DeleteFunc(errs, func(fe validate.FieldError) bool { return fe.Field == "pagerduty.routing_key" })
	}
	r.ID = probe.ID
	r.PagerDuty = rules.PagerDuty{} // never needed, never kept
	return r, errs
}

// splitRulesDoc accepts a JSON array of rules, the {"rules": [...]} answer of
// GET /api/v1/rules, or a single rule object.
func splitRulesDoc(b []byte) ([]json.RawMessage, error) {
	const want = `want a JSON array of rules, {"rules": [...]} or one rule object`
	trim := bytes.TrimSpace(b)
	if len(trim) == 0 {
		return nil, errors.New("empty file; " + want)
	}
	var items []json.RawMessage
	switch trim[0] {
	case '[':
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, jsonError(b, err)
		}
		return items, nil
	case '{':
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, jsonError(b, err)
		}
		list, ok := doc["rules"]
		if !ok {
			return []json.RawMessage{json.RawMessage(trim)}, nil
		}
		if err := json.Unmarshal(list, &items); err != nil {
			return nil, fmt.Errorf(`"rules": want an array of rule objects`)
		}
		return items, nil
	}
	return nil, errors.New(want)
}

// jsonError places a JSON syntax or type error at its line and column.
func jsonError(b []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(b[:off], '\n')
	return fmt.Errorf("line %d, column %d: invalid JSON: %v", line, col, err)
}

// cellKey is one counted series minute.
type cellKey struct {
	kw        string
	minute    int64
	host, tag string
}

// replayCounter feeds records through the plugin's flush path, a chunk at a
// time, and sums what it produces the way the backend's windows would.
type replayCounter struct {
	m       *match.Matcher
	f       *flush.Flusher
	tag     string
	data    []byte
	n       int // records in data
	cells   map[cellKey]int64
	samples map[string][]window.Sample

	records     int
	matched     int
	first, last time.Time
	rec         map[string]any // reused record
}

func (c *replayCounter) add(at time.Time, text string) error {
	if c.rec == nil {
		c.rec = map[string]any{}
	}
	c.rec["log"] = text
	var err error
	if c.data, err = chunk.AppendEvent(c.data, chunk.FormatV2, at, chunk.EventTime, c.rec); err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	c.n++
	c.records++
	if c.first.IsZero() || at.Before(c.first) {
		c.first = at
	}
	if at.After(c.last) {
		c.last = at
	}
	if c.n == replayChunkRecords {
		return c.flush()
	}
	return nil
}

func (c *replayCounter) flush() error {
	if c.n == 0 {
		return nil
	}
	res := c.f.Process(c.m, c.data, c.tag)
	if res.Err != nil {
		return fmt.Errorf("count a chunk of %d records: %w", c.n, res.Err)
	}
	if res.Events != c.n {
		return fmt.Errorf("count a chunk: the plugin read %d of %d records", res.Events, c.n)
	}
	c.matched += res.Matched
	for _, e := range res.Entries {
		id := e.Keyword.ID()
		c.cells[cellKey{id, e.Minute, e.Host, e.Tag}] += e.Count
		for _, s := range e.Samples {
			c.samples[id] = append(c.samples[id], window.Sample{Minute: e.Minute, Host: e.Host, Tag: e.Tag, Line: s})
		}
	}
	c.data, c.n = c.data[:0], 0
	return nil
}

func (c *replayCounter) cellsByKeyword() map[string][]window.Cell {
	out := map[string][]window.Cell{}
	for k, n := range c.cells {
		out[k.kw] = append(out[k.kw], window.Cell{Minute: k.minute, Host: k.host, Tag: k.tag, Count: n})
	}
	return out
}

func (c *replayCounter) total(kwID string) int64 {
	var n int64
	for k, v := range c.cells {
		if k.kw == kwID {
			n += v
		}
	}
	return n
}

// recordReader turns log lines into timed records.
type recordReader struct {
	cfg   *replayConfig
	ctr   *replayCounter
	ts    *stampParser
	prev  time.Time // time of the record before; a line without one takes it
	lines int
	timed int // records with their own timestamp
}

func (rd *recordReader) readFile(name string, stdin io.Reader) error {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return badInput("log file: %v", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var (
		rec   strings.Builder
		recAt time.Time
	)
	emit := func() error {
		if rec.Len() == 0 {
			return nil
		}
		err := rd.ctr.add(recAt, rec.String())
		rec.Reset()
		return err
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if line == "" && err == io.EOF {
			break
		}
		rd.lines++
		line = strings.TrimRight(line, "\r\n")
		if rd.cfg.multiline && rec.Len() > 0 && multiline.Continues(line) {
			rec.WriteByte('\n')
			rec.WriteString(line)
		} else {
			if err := emit(); err != nil {
				return err
			}
			if t, ok := rd.ts.parse(line); ok {
				rd.prev = t
				rd.timed++
			}
			recAt = rd.prev
			if line == "" {
				// An empty line is still a record, as tail sends it.
				if err := rd.ctr.add(recAt, ""); err != nil {
					return err
				}
			}
			rec.WriteString(line)
		}
		if err == io.EOF {
			break
		}
	}
	return emit()
}

// stampFormat is a timestamp form recognised at the start of a line: group 1
// of re is parsed with layout.
type stampFormat struct {
	re     *regexp.Regexp
	layout string
}

// stampFormats are tried in order; the one that matched last is tried first.
// The fractional seconds are parsed by time.Parse without being in the
// layout (with '.' or ',').
var stampFormats = []stampFormat{
	{regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:\d{2}))`), time.RFC3339},
	{regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?[+-]\d{4})`), "2006-01-02T15:04:05Z0700"},
	{regexp.MustCompile(`^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:[.,]\d+)?)`), "2006-01-02 15:04:05"}, // Hadoop, ZooKeeper, log4j
	{regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)`), "2006-01-02T15:04:05"},
	{regexp.MustCompile(`^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:[.,]\d+)?)`), "2006/01/02 15:04:05"},                                  // Go log, nginx error log
	{regexp.MustCompile(`^\[?([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\]?`), "Mon Jan _2 15:04:05 2006"}, // Apache error log
	{regexp.MustCompile(`^([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2})`), "Jan _2 15:04:05"},                                              // syslog
	{regexp.MustCompile(`^(\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?)`), "01-02 15:04:05"},                                               // Android logcat
	{regexp.MustCompile(`^(\d{6} \d{6})\b`), "060102 150405"},                                                                          // HDFS
	{regexp.MustCompile(`^(\d{8}-\d{1,2}:\d{1,2}:\d{1,2})`), "20060102-15:4:5"},                                                        // HealthApp
}

// stampParser finds a record's event time in its first line.
type stampParser struct {
	layout string         // --time-layout; empty: stampFormats
	re     *regexp.Regexp // --time-regex; nil: the start of the line
	loc    *time.Location
	year   int       // for forms without a year
	last   time.Time // the last time parsed, to notice a year rolling over
	hint   int
}

func (p *stampParser) parse(line string) (time.Time, bool) {
	text := line
	if p.re != nil {
		m := p.re.FindStringSubmatch(line)
		if m == nil {
			return time.Time{}, false
		}
		text = m[0]
		if len(m) > 1 && m[1] != "" {
			text = m[1]
		}
	}
	var t time.Time
	var ok bool
	switch {
	case p.layout != "" && p.re != nil:
		var err error
		t, err = time.ParseInLocation(p.layout, text, p.loc)
		ok = err == nil
	case p.layout != "":
		t, ok = p.prefix(text)
	default:
		t, ok = p.auto(text)
	}
	if !ok {
		return time.Time{}, false
	}
	if t.Year() == 0 {
		t = p.withYear(t)
	}
	// The chunk format holds seconds as uint32.
	if t.Unix() < 0 || t.Unix() > math.MaxUint32 {
		return time.Time{}, false
	}
	p.last = t
	return t, true
}

// withYear gives a time parsed without a year the year of --start, moving
// to the next year when the log runs over New Year.
func (p *stampParser) withYear(t time.Time) time.Time {
	at := func(y int) time.Time {
		return time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	}
	out := at(p.year)
	if !p.last.IsZero() && out.Before(p.last.AddDate(0, -6, 0)) {
		p.year++
		out = at(p.year)
	}
	return out
}

// prefix parses the line's start with --time-layout: the timestamp is about
// as long as the layout (names and padding may differ by a few bytes).
func (p *stampParser) prefix(line string) (time.Time, bool) {
	n := len(p.layout)
	try := func(k int) (time.Time, bool) {
		if k < 1 || k > len(line) {
			return time.Time{}, false
		}
		t, err := time.ParseInLocation(p.layout, line[:k], p.loc)
		return t, err == nil
	}
	if t, ok := try(n); ok {
		return t, true
	}
	for d := 1; d <= 12; d++ {
		if t, ok := try(n + d); ok {
			return t, true
		}
		if d <= 4 {
			if t, ok := try(n - d); ok {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

func (p *stampParser) auto(text string) (time.Time, bool) {
	if text == "" {
		return time.Time{}, false
	}
	// Every form starts with a digit, a capital or '['; continuation lines
	// and most messages are turned away here.
	if c := text[0]; !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || c == '[') {
		return time.Time{}, false
	}
	if t, ok := p.try(p.hint, text); ok {
		return t, true
	}
	for i := range stampFormats {
		if i == p.hint {
			continue
		}
		if t, ok := p.try(i, text); ok {
			p.hint = i
			return t, true
		}
	}
	return time.Time{}, false
}

func (p *stampParser) try(i int, text string) (time.Time, bool) {
	f := &stampFormats[i]
	m := f.re.FindStringSubmatch(text)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(f.layout, m[1], p.loc)
	return t, err == nil
}

// replayReport is the --json output; the table shows the same.
type replayReport struct {
	Files   []string `json:"files"`
	Lines   int      `json:"lines"`
	Records int      `json:"records"`
	// TimedRecords had a timestamp of their own; the others took the time
	// of the record before them (the first: --start).
	TimedRecords int              `json:"timed_records"`
	From         time.Time        `json:"from,omitzero"`
	To           time.Time        `json:"to,omitzero"`
	Host         string           `json:"host"`
	Tag          string           `json:"tag"`
	Rules        []replayRuleOut  `json:"rules"`
	Events       []replayEventOut `json:"events"`
	// Open are the alerts still firing when the replay ended.
	Open   []replayOpen  `json:"open"`
	Totals []replayTotal `json:"totals"`
}

type replayRuleOut struct {
	Index   int    `json:"index"`
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

type replayEventOut struct {
	alert.ReplayEvent
	Samples []string `json:"samples,omitempty"`
}

type replayOpen struct {
	Rule      int           `json:"rule"`
	RuleName  string        `json:"rule_name"`
	GroupBy   rules.GroupBy `json:"group_by"`
	Group     string        `json:"group"`
	StartedAt time.Time     `json:"started_at"`
}

type replayTotal struct {
	Keyword keyword.Spec `json:"keyword"`
	ID      string       `json:"id"`
	Records int64        `json:"records"`
}

func buildReport(cfg *replayConfig, rs []rules.Rule, specs []keyword.Spec, ctr *replayCounter, rd *recordReader, events []alert.ReplayEvent) *replayReport {
	rep := &replayReport{Files: cfg.files, Lines: rd.lines, Records: ctr.records, TimedRecords: rd.timed,
		Host: cfg.host, Tag: cfg.tag, Events: []replayEventOut{}, Open: []replayOpen{}, Totals: []replayTotal{}}
	if ctr.records > 0 {
		rep.From, rep.To = ctr.first.In(cfg.loc), ctr.last.In(cfg.loc)
	}
	for i, r := range rs {
		rep.Rules = append(rep.Rules, replayRuleOut{Index: i, ID: r.ID, Name: r.Name, Enabled: r.Enabled})
	}
	type akey struct {
		rule  int
		group string
	}
	open := map[akey]alert.ReplayEvent{}
	for _, ev := range events {
		ev.At, ev.StartedAt = ev.At.In(cfg.loc), ev.StartedAt.In(cfg.loc)
		out := replayEventOut{ReplayEvent: ev}
		if ev.Kind != alert.ReplayResolve && cfg.samples > 0 {
			out.Samples = pickSamples(&rs[ev.Rule], ev, ctr.samples, cfg.samples)
		}
		rep.Events = append(rep.Events, out)
		k := akey{ev.Rule, ev.Group}
		if ev.Kind == alert.ReplayResolve {
			delete(open, k)
		} else {
			open[k] = ev
		}
	}
	for _, ev := range open {
		rep.Open = append(rep.Open, replayOpen{Rule: ev.Rule, RuleName: ev.RuleName, GroupBy: ev.GroupBy, Group: ev.Group, StartedAt: ev.StartedAt})
	}
	slices.SortFunc(rep.Open, func(a, b replayOpen) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Group, b.Group))
	})
	for _, s := range specs {
		rep.Totals = append(rep.Totals, replayTotal{Keyword: s, ID: s.ID(), Records: ctr.total(s.ID())})
	}
	return rep
}

// pickSamples chooses the newest sample lines up to the event's minute that
// the rule's alert would show: its keywords, its filters, its group.
func pickSamples(r *rules.Rule, ev alert.ReplayEvent, samples map[string][]window.Sample, n int) []string {
	evMin := ev.At.Unix() - ev.At.Unix()%60
	var out []string
	for _, kw := range r.KeywordIDs() {
		list := samples[kw]
		for i := len(list) - 1; i >= 0 && len(out) < n; i-- {
			s := list[i]
			if s.Minute > evMin || !r.Filters.Match(s.Host, s.Tag) {
				continue
			}
			if (r.GroupBy == rules.GroupHost && s.Host != ev.Group) || (r.GroupBy == rules.GroupTag && s.Tag != ev.Group) {
				continue
			}
			out = append(out, s.Line)
		}
	}
	return out
}

func groupLabel(by rules.GroupBy, group string) string {
	switch by {
	case rules.GroupHost:
		return "host=" + group
	case rules.GroupTag:
		return "tag=" + group
	}
	return "fleet"
}

// keywordLabel writes a keyword as the rule has it, with its match options
// when they are not the default.
func keywordLabel(s keyword.Spec) string {
	if s.Match == keyword.Substring && !s.IgnoreCase {
		return s.Text
	}
	return s.ID()
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

const replayMinute = "2006-01-02 15:04"

// maxTableSample is where the table cuts a sample line (--json keeps it whole).
const maxTableSample = 160

// shorten cuts s to at most n bytes at a UTF-8 boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func writeTable(w io.Writer, cfg *replayConfig, rep *replayReport) error {
	bw := bufio.NewWriter(w)
	clean := strings.NewReplacer("\n", " ", "\t", " ", "\r", " ").Replace
	var nameW, groupW, kindW int
	for _, ev := range rep.Events {
		nameW = max(nameW, len(clean(ev.RuleName)))
		groupW = max(groupW, len(groupLabel(ev.GroupBy, ev.Group)))
		kindW = max(kindW, len(ev.Kind))
	}
	for _, ev := range rep.Events {
		fmt.Fprintf(bw, "%s  %-*s  %-*s  %-*s  %s\n", ev.At.Format(replayMinute), kindW, strings.ToUpper(ev.Kind),
			nameW, clean(ev.RuleName), groupW, groupLabel(ev.GroupBy, ev.Group), ev.Summary)
		for _, s := range ev.Samples {
			fmt.Fprintf(bw, "    | %s\n", shorten(strings.TrimRight(clean(s), " "), maxTableSample))
		}
	}
	if len(rep.Events) == 0 {
		fmt.Fprintln(bw, "no alert would have fired")
	}
	for _, o := range rep.Open {
		fmt.Fprintf(bw, "still firing at the end: %s (%s) since %s\n", clean(o.RuleName), groupLabel(o.GroupBy, o.Group), o.StartedAt.In(cfg.loc).Format(replayMinute))
	}
	fmt.Fprintln(bw)
	for _, t := range rep.Totals {
		fmt.Fprintf(bw, "%s: %s\n", keywordLabel(t.Keyword), plural(t.Records, "record", "records"))
	}
	span := ""
	if rep.Records > 0 {
		span = fmt.Sprintf(", %s to %s", rep.From.Format("2006-01-02 15:04:05"), rep.To.Format("2006-01-02 15:04:05"))
	}
	fmt.Fprintf(bw, "\n%s from %s%s; %s, %s.\n", plural(int64(rep.Records), "record", "records"), plural(int64(rep.Lines), "line", "lines"),
		span, plural(int64(len(rep.Rules)), "rule", "rules"), plural(int64(len(rep.Events)), "event", "events"))
	if untimed := rep.Records - rep.TimedRecords; untimed > 0 && rep.TimedRecords > 0 {
		fmt.Fprintf(bw, "%s without a timestamp took the time of the record before.\n", plural(int64(untimed), "record", "records"))
	}
	return bw.Flush()
}
