package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

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
