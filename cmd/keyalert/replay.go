package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/replay"
)

// inputError is bad flags: the command exits with status 2 instead of 1,
// as on any replay.ErrBadInput.
type inputError struct {
	err     error
	printed bool // the flag package has already shown it
}

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == replay.ErrBadInput }

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
	case errors.Is(err, replay.ErrBadInput):
		if !errors.As(err, &ie) || !ie.printed {
			fmt.Fprintf(os.Stderr, "keyalert replay: %v\n", err)
		}
		os.Exit(2)
	}
	return err
}

const replayUsage = `usage: keyalert replay --rules rules.json [flags] file...

Runs log files (- for stdin) through the plugin's keyword matching and counting
and the backend's rule logic, and prints the alerts that would have fired,
re-notified and resolved, at the log's own times. Nothing is sent anywhere.

flags:
`

func parseReplayFlags(args []string, stderr io.Writer) (replay.Config, error) {
	var c replay.Config
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), replayUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.RulesPath, "rules", "", "rules file: a JSON array of rules as POST /api/v1/rules takes them, or the GET /api/v1/rules answer (required)")
	fs.BoolVar(&c.Multiline, "multiline", false, "join lines starting with a tab, 4 spaces or \"Caused by:\" to the record before them (Java stack traces), as the feed command does")
	fs.StringVar(&c.TimeLayout, "time-layout", "", "Go time layout of each line's timestamp, e.g. \"2006-01-02 15:04:05,000\" (default: recognise common forms)")
	timeRegex := fs.String("time-regex", "", "regular expression finding the timestamp in a line; its first group (or the whole match) is parsed (default: the start of the line)")
	tz := fs.String("tz", "Local", "time zone of timestamps without one, and of the output: Local, UTC or an IANA name")
	start := fs.String("start", "", "time of records before the first timestamp, and the year of timestamps without one (default now)")
	fs.StringVar(&c.Host, "host", "replay", "host of the records, as the plugin's Hostname")
	fs.StringVar(&c.Tag, "tag", "replay", "Fluent Bit tag of the records")
	fs.BoolVar(&c.JSON, "json", false, "print JSON (events and totals) instead of a table")
	fs.IntVar(&c.Samples, "samples", 0, fmt.Sprintf("sample lines shown under each trigger (0-%d)", replay.MaxSamples))
	fs.DurationVar(&c.EvalDelay, "eval-delay", alert.DefaultEvalDelay, "keyalertd's KEYALERT_EVAL_DELAY: absence and resolution are judged on complete minutes this long back (whole minutes, 0s-1h; a rule's eval_delay overrides it)")

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
			c.Files = append(c.Files, rest...)
			break
		}
		c.Files = append(c.Files, rest[0])
		rest = rest[1:]
	}

	// replay.Run checks the files, samples and host too; checked here first
	// so that the message names the flag.
	if c.RulesPath == "" {
		return c, badInput("--rules is required (a JSON file of rules)")
	}
	if len(c.Files) == 0 {
		return c, badInput("no log file given (use - for stdin)")
	}
	if n := countStdin(c.Files); n > 1 {
		return c, badInput("stdin (-) given %d times", n)
	}
	if c.EvalDelay < 0 || c.EvalDelay > rules.MaxEvalDelay || c.EvalDelay%time.Minute != 0 {
		return c, badInput("--eval-delay %s: want whole minutes between 0s and 1h", c.EvalDelay)
	}
	c.NoEvalDelay = c.EvalDelay == 0
	if c.Samples < 0 || c.Samples > replay.MaxSamples {
		return c, badInput("--samples %d: want between 0 and %d", c.Samples, replay.MaxSamples)
	}
	if c.Host == "" {
		return c, badInput("--host is empty")
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return c, badInput("--tz %q: %v", *tz, err)
	}
	c.Location = loc
	if c.TimeLayout != "" {
		// A layout must at least carry the hour and minute the counts need.
		ref := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
		t, err := time.Parse(c.TimeLayout, ref.Format(c.TimeLayout))
		if err != nil || t.Hour() != 15 || t.Minute() != 4 {
			return c, badInput("--time-layout %q: want a Go time layout with hour and minute, e.g. \"2006-01-02 15:04:05\"", c.TimeLayout)
		}
	}
	if *timeRegex != "" {
		re, err := regexp.Compile(*timeRegex)
		if err != nil {
			return c, badInput("--time-regex %q: %v", *timeRegex, err)
		}
		c.TimeRegex = re
	}
	if *start != "" { // else replay.Run takes now
		if c.Start, err = parseStart(*start, loc); err != nil {
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

// runReplay is the command without its exit: flags, then replay.Run.
func runReplay(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseReplayFlags(args, stderr)
	if err != nil {
		return err
	}
	return replay.Run(context.Background(), cfg, stdin, stdout, stderr)
}
