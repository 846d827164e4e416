package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/keyalert/keyalert/cmd/keyalert/internal/rulesfile"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyalert/keyalert/pkg/client"
)

// The flags every command that talks to keyalertd shares, named the same
// everywhere: -url and -token (env KEYALERT_URL, KEYALERT_TOKEN) and -o.

// DefaultURL is keyalertd's address when neither -url nor KEYALERT_URL say.
const DefaultURL = "http://127.0.0.1:8080"

type common struct {
	url, token, output string
	api                string // deprecated alias of -url
}

// apiFlags adds -url, -token and -o (when withOutput) to fs.
func apiFlags(fs *flag.FlagSet, withOutput bool) *common {
	c := &common{}
	fs.StringVar(&c.url, "url", envOr("KEYALERT_URL", DefaultURL), "keyalertd base URL (env KEYALERT_URL)")
	fs.StringVar(&c.token, "token", os.Getenv("KEYALERT_TOKEN"), "API bearer token (env KEYALERT_TOKEN)")
	fs.StringVar(&c.api, "api", "", "deprecated: use -url")
	if withOutput {
		fs.StringVar(&c.output, "o", "table", "output: table (for people) or json (for scripts)")
	}
	return c
}

// client checks the flags and returns the API client.
func (c *common) client(stderr io.Writer) (*client.Client, error) {
	if c.api != "" {
		fmt.Fprintln(stderr, "keyalert: -api is deprecated, use -url (or KEYALERT_URL)")
		c.url = c.api
	} else if old := os.Getenv("KEYALERT_API"); old != "" && os.Getenv("KEYALERT_URL") == "" && c.url == DefaultURL {
		fmt.Fprintln(stderr, "keyalert: KEYALERT_API is deprecated, use KEYALERT_URL")
		c.url = old
	}
	if c.output != "" && c.output != "table" && c.output != "json" {
		return nil, fmt.Errorf("-o %q: want table or json", c.output)
	}
	if c.url == "" {
		return nil, errors.New("-url is empty: set it or KEYALERT_URL")
	}
	return client.New(c.url, c.token), nil
}

func (c *common) json() bool { return c.output == "json" }

// parse parses flags anywhere among the arguments ("counts Exception
// -since 1h" as well as "counts -since 1h Exception") and returns the
// positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newFlagSet returns a flag set whose usage starts with usage.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\nflags:\n", strings.TrimRight(usage, "\n"))
		fs.PrintDefaults()
	}
	return fs
}

// printJSON writes raw indented, for scripts (and people piping into jq).
func printJSON(w io.Writer, raw json.RawMessage) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes rows under a header, columns aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// namedStep is one change of an apply to objects identified by name
// (receivers, time intervals): op is create, update, delete, keep (in
// keyalertd, not in the file, no -prune) or same; detail follows an update.
type namedStep struct {
	op, name, detail string
}

// printSteps prints an apply's plan and its outcome line; it returns how
// many changes there are and whether the caller should apply them (some,
// and not a dry run).
func printSteps(w io.Writer, steps []namedStep, file, what string, dry bool) (int, bool) {
	n := 0
	for _, st := range steps {
		switch st.op {
		case "create":
			n++
			fmt.Fprintf(w, "+ create %q\n", st.name)
		case "update":
			n++
			fmt.Fprintf(w, "~ update %q%s\n", st.name, st.detail)
		case "delete":
			n++
			fmt.Fprintf(w, "- delete %q\n", st.name)
		case "keep":
			fmt.Fprintf(w, "  keep %q: not in the file; -prune deletes it\n", st.name)
		}
	}
	switch {
	case n == 0:
		fmt.Fprintf(w, "no changes: keyalertd's %s match %s\n", what, file)
		return 0, false
	case dry:
		fmt.Fprintf(w, "dry run: %d changes; nothing changed\n", n)
		return n, false
	}
	return n, true
}

// applyArgs are the flags every "apply" command takes, and its file read.
type applyArgs struct {
	c          *common
	file       string
	dry, prune bool
	items      []*rulesfile.Item
}

// parseApply parses an apply command's flags (-f, -dry-run, -prune and the
// API's) and reads the file: a list of nouns under key (or a bare list).
func parseApply(args []string, cmd, usage, key, noun, pruneDoc string, stderr io.Writer) (*applyArgs, error) {
	fs := newFlagSet(cmd, usage, stderr)
	a := &applyArgs{c: apiFlags(fs, false)}
	fs.StringVar(&a.file, "f", "", "the "+key+" file, YAML or JSON (- for stdin)")
	fs.BoolVar(&a.dry, "dry-run", false, "print what would change, change nothing")
	fs.BoolVar(&a.prune, "prune", false, pruneDoc)
	if _, err := parse(fs, args); err != nil {
		return nil, err
	}
	if a.file == "" {
		return nil, fmt.Errorf("-f: name the %s file", key)
	}
	var err error
	a.items, err = rulesfile.ReadList(a.file, key, noun)
	return a, err
}

// exportNamed is an "export" command of objects listed by list and written
// by write (YAML, or JSON with -o json) under a header naming the server.
func exportNamed(args []string, cmd, usage, note string, stdout, stderr io.Writer,
	list func(context.Context, *common, io.Writer) ([]json.RawMessage, error),
	write func([]json.RawMessage, bool, string) ([]byte, error)) error {
	fs := newFlagSet(cmd, usage, stderr)
	c := apiFlags(fs, false)
	format := fs.String("o", "yaml", "yaml or json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *format != "yaml" && *format != "json" {
		return fmt.Errorf("-o %q: want yaml or json", *format)
	}
	raws, err := list(context.Background(), c, stderr)
	if err != nil {
		return err
	}
	header := fmt.Sprintf("keyalert %s of %s, %s.%s", cmd, c.url, time.Now().UTC().Format(time.RFC3339), note)
	out, err := write(raws, *format == "json", header)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// listNamed reads the list under key of the API's path.
func listNamed(ctx context.Context, c *common, stderr io.Writer, path, key string) ([]json.RawMessage, error) {
	cl, err := c.client(stderr)
	if err != nil {
		return nil, err
	}
	var res map[string][]json.RawMessage
	if _, err = cl.Get(ctx, path, &res); err != nil {
		return nil, err
	}
	return res[key], nil
}

// namedCmd is a command over objects kept as code: "apply" and "export"
// go to their functions; without them it lists the API's path as a table
// (rows from the decoded answer in res) or, with -o json, as the answer.
func namedCmd(args []string, name, usage string, stdout, stderr io.Writer,
	apply, export func([]string, io.Writer, io.Writer) error, path string, res any, rows func() ([]string, [][]string)) error {
	if len(args) > 0 {
		switch args[0] {
		case "apply":
			return apply(args[1:], stdout, stderr)
		case "export":
			return export(args[1:], stdout, stderr)
		}
	}
	fs := newFlagSet(name, usage, stderr)
	c := apiFlags(fs, true)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	raw, err := cl.Get(context.Background(), path, res)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(stdout, raw)
	}
	header, rs := rows()
	if len(rs) == 0 {
		fmt.Fprintln(stdout, "no "+name)
		return nil
	}
	return table(stdout, header, rs)
}
