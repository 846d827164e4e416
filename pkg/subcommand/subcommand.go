// Package subcommand dispatches "prog <command> [flags] [args]" for
// keyalert's command-line tools, so every tool prints the same usage, exits
// 0 for help (also a command's -h), 2 for an unknown command and 1 for a failed one.
package subcommand

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string                    // one line for the usage text
	Run     func(args []string) error // args after the command name
}

// Usage renders the usage text of prog.
func Usage(prog string, cmds []Command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s <command> [flags] [args]\n\ncommands:\n", prog)
	width := 8 // the names line up, however long the longest
	for _, c := range cmds {
		width = max(width, len(c.Name))
	}
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %-*s %s\n", width, c.Name, c.Summary)
	}
	fmt.Fprintf(&b, "\nRun '%s <command> -h' for a command's flags.\n", prog)
	return b.String()
}

// Run dispatches args (without the program name) and returns the exit
// status; a command's error is printed as "prog command: error".
func Run(prog string, cmds []Command, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, Usage(prog, cmds))
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, Usage(prog, cmds))
		return 0
	}
	for _, c := range cmds {
		if c.Name == args[0] {
			err := c.Run(args[1:])
			if errors.Is(err, flag.ErrHelp) { // the flag set printed its usage
				return 0
			}
			if err != nil {
				fmt.Fprintf(stderr, "%s %s: %v\n", prog, c.Name, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", prog, args[0], Usage(prog, cmds))
	return 2
}
