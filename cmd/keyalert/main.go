// Command keyalert is the user's tool beside the plugin and keyalertd:
//
//	keyalert replay --rules rules.json app.log   what would have fired, and when
//	keyalert watch [flags] keyword...            per-minute counts and alerts from keyalertd
package main

import (
	"fmt"
	"os"
)

const usage = `usage: keyalert <command> [flags] [args]

commands:
  replay   run a log file through the plugin's matcher and a rules file; print what would fire
  watch    print per-minute counts and firing alerts from a running keyalertd

Run 'keyalert <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "replay":
		err = replayCmd(args)
	case "watch":
		err = watchCmd(args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "keyalert: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyalert %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
