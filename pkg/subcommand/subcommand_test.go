package subcommand

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

func TestRunDispatchesAndMapsExitStatus(t *testing.T) {
	var got []string
	cmds := []Command{
		{Name: "ok", Summary: "works", Run: func(a []string) error { got = a; return nil }},
		{Name: "bad", Summary: "fails", Run: func([]string) error { return errors.New("boom") }},
		{Name: "helped", Summary: "asks for help", Run: func([]string) error { return fmt.Errorf("parse: %w", flag.ErrHelp) }},
	}
	for _, tc := range []struct {
		name        string
		args        []string
		want        int
		out, errOut string
	}{
		{"command runs with its args", []string{"ok", "-x", "y"}, 0, "", ""},
		{"failure is printed with the command", []string{"bad"}, 1, "", "tool bad: boom"},
		{"a command's -h exits 0", []string{"helped", "-h"}, 0, "", ""},
		{"help goes to stdout", []string{"-h"}, 0, "commands:\n  ok       works", ""},
		{"no command prints usage", nil, 2, "", "usage: tool"},
		{"unknown command is named", []string{"nope"}, 2, "", `unknown command "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Run("tool", cmds, tc.args, &out, &errOut); code != tc.want {
				t.Errorf("exit %d, want %d", code, tc.want)
			}
			if !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
				t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
			}
		})
	}
	if len(got) != 2 || got[1] != "y" {
		t.Errorf("ok got args %q", got)
	}
}
