// Command keyalert is the user's tool beside the plugin and keyalertd:
//
//	keyalert replay --rules rules.json app.log   what would have fired, and when
//	keyalert watch [flags] keyword...            per-minute counts and alerts from keyalertd
package main

import (
	"os"

	"github.com/keyalert/keyalert/pkg/subcommand"
)

var commands = []subcommand.Command{
	{Name: "replay", Summary: "run a log file through the plugin's matcher and a rules file; print what would fire", Run: replayCmd},
	{Name: "watch", Summary: "print per-minute counts and firing alerts from a running keyalertd", Run: watchCmd},
}

func main() { os.Exit(subcommand.Run("keyalert", commands, os.Args[1:], os.Stdout, os.Stderr)) }
