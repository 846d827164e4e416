// Package replay is the offline evaluator behind `keyalert replay`: it runs
// log files through the plugin's keyword matching and counting and the
// backend's rule logic, and reports the alerts that would have fired,
// re-notified and resolved, at the log's own times. Nothing is sent anywhere.
//
// The files are named for their part of the run: rules.go loads the rules
// file, reader.go turns log lines into timed records, stamp.go finds a line's
// timestamp, count.go counts records the way the plugin does, and report.go
// builds the report and writes it as a table or JSON.
package replay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/plugin/flush"
)

// MaxSamples bounds Config.Samples, like KEYALERT_ALERT_SAMPLE_LINES.
const MaxSamples = 50

// ErrBadInput is matched (errors.Is) by every error that the input caused:
// the Config, the rules file or a log file. The command exits with status 2
// on those and 1 on any other.
var ErrBadInput = errors.New("bad input")

// inputError is bad input; its message is the problem alone, without
// ErrBadInput's text, since it is shown to the user as it is.
type inputError struct{ err error }

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrBadInput }

func badInput(format string, args ...any) error {
	return &inputError{err: fmt.Errorf(format, args...)}
}

// Config is one replay. The command fills it from its flags.
type Config struct {
	// RulesPath is the rules file: a JSON array of rules as POST
	// /api/v1/rules takes them, the GET /api/v1/rules answer, or one rule.
	RulesPath string
	// Files are the log files in the order read; "-" is stdin, at most once.
	Files []string
	// Multiline joins continuation lines (pkg/multiline) to the record
	// before them, as the feed command does.
	Multiline bool
	// TimeLayout is the Go layout of each line's timestamp; it must hold at
	// least the hour and minute. Empty: recognise common forms.
	TimeLayout string
	// TimeRegex finds the timestamp in a line; its first group (or the
	// whole match) is parsed. Nil: the start of the line.
	TimeRegex *regexp.Regexp
	// Location is the zone of timestamps without one, and of the output.
	// Nil: time.Local.
	Location *time.Location
	// Start is the time of records before the first timestamp, and gives
	// its year to timestamps without one. Zero: now.
	Start time.Time
	// Host and Tag are the records' host (the plugin's Hostname) and Fluent
	// Bit tag: what group_by and filters see. Host must not be empty.
	Host, Tag string
	// JSON writes the report as JSON instead of a table.
	JSON bool
	// Samples is how many sample lines to show under each trigger, 0 to
	// MaxSamples.
	Samples int
	// EvalDelay is keyalertd's KEYALERT_EVAL_DELAY, the eval_delay of rules
	// without their own; 0: alert.DefaultEvalDelay. NoEvalDelay makes it 0.
	EvalDelay   time.Duration
	NoEvalDelay bool
}

// validate guards Run against any caller; the command checks the same
// before it calls Run, so that its messages name its flags.
func (c *Config) validate() error {
	switch {
	case len(c.Files) == 0:
		return badInput("no log file given (use - for stdin)")
	case stdinCount(c.Files) > 1:
		return badInput("stdin (-) given %d times", stdinCount(c.Files))
	case c.Samples < 0 || c.Samples > MaxSamples:
		return badInput("samples %d: want between 0 and %d", c.Samples, MaxSamples)
	case c.Host == "":
		return badInput("host is empty")
	}
	return nil
}

// stdinCount is how many of files are "-": stdin can be read once.
func stdinCount(files []string) int {
	n := 0
	for _, f := range files {
		if f == "-" {
			n++
		}
	}
	return n
}

// Run replays cfg's log files against its rules file and writes the report
// to stdout. A "-" file is read from stdin. Warnings (a disabled rule, no
// timestamp recognised) go to stderr, one line each, as the command shows
// them. Errors that the input caused match ErrBadInput. Run stops reading
// when ctx is done.
func Run(ctx context.Context, cfg Config, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now()
	}
	cfg.Start = cfg.Start.In(cfg.Location)

	rs, err := loadRules(cfg.RulesPath)
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
		return badInput("%s: %v", cfg.RulesPath, err)
	}
	ctr := &counter{
		m:       m,
		f:       flush.New(flush.Options{Keys: []string{"log"}, Hostname: cfg.Host, Samples: cfg.Samples, Identity: "replay"}),
		tag:     cfg.Tag,
		cells:   map[cellKey]int64{},
		samples: map[string][]window.Sample{},
	}
	rd := &recordReader{multiline: cfg.Multiline, ctr: ctr, prev: cfg.Start,
		ts: &stampParser{layout: cfg.TimeLayout, re: cfg.TimeRegex, loc: cfg.Location, year: cfg.Start.Year()}}
	for _, name := range cfg.Files {
		if err := rd.readFile(ctx, name, stdin); err != nil {
			return err
		}
	}
	if err := ctr.flush(); err != nil {
		return err
	}
	if ctr.records > 0 && rd.timed == 0 {
		fmt.Fprintf(stderr, "keyalert replay: no timestamp recognised in any line; every record is at %s (set --time-layout, and --time-regex when the time is not at the start of the line)\n",
			cfg.Start.Format("2006-01-02 15:04:05"))
	}

	cells := ctr.cellsByKeyword()
	for _, list := range ctr.samples {
		slices.SortStableFunc(list, func(a, b window.Sample) int { return cmp.Compare(a.Minute, b.Minute) })
	}
	var events []alert.ReplayEvent
	if ctr.records > 0 {
		events, err = alert.ReplayWith(rs, cells, ctr.first, ctr.last, time.Minute,
			alert.Options{EvalDelay: cfg.EvalDelay, NoEvalDelay: cfg.NoEvalDelay})
		if err != nil {
			// Only the data can make it fail: a span too long to step through.
			return badInput("%v (check the log's timestamps, or set --time-layout)", err)
		}
	}
	rep := buildReport(&cfg, rs, specs, ctr, rd, events)
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	return writeTable(stdout, &cfg, rep)
}
