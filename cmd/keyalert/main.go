// Command keyalert is the user's tool beside the plugin and keyalertd:
//
//	keyalert alerts [-state firing]                  list alerts
//	keyalert ack ID / keyalert resolve ID             act on one
//	keyalert silence add -match host=web-12 -for 2h   mute, with a comment
//	keyalert silences [apply -f f.yaml | export]      list silences; silences as code
//	keyalert intervals [apply -f f.yaml | export]     named mute windows
//	keyalert counts KEYWORD -since 1h [-by host]      what a rule counts
//	keyalert rules apply -f rules.yaml [-dry-run]     rules as code
//	keyalert watch [keyword...]                       counts and alerts as they change
//	keyalert replay --rules rules.json app.log        what would have fired, and when
//
// The server and token come from KEYALERT_URL and KEYALERT_TOKEN (or -url
// and -token); -o json prints the API's answers for scripts.
package main

import (
	"io"
	"os"

	"github.com/keyalert/keyalert/pkg/subcommand"
)

func commands(stdout, stderr io.Writer) []subcommand.Command {
	w := func(f func([]string, io.Writer, io.Writer) error) func([]string) error {
		return func(args []string) error { return f(args, stdout, stderr) }
	}
	return []subcommand.Command{
		{Name: "alerts", Summary: "list alerts (-state firing)", Run: w(alertsCmd)},
		{Name: "ack", Summary: "acknowledge alerts: keyalert ack ID...", Run: w(transitionCmd("ack"))},
		{Name: "resolve", Summary: "resolve alerts: keyalert resolve ID...", Run: w(transitionCmd("resolve"))},
		{Name: "silence", Summary: `mute alerts: keyalert silence add -match host=web-12 -for 2h -comment "..."`, Run: w(silenceCmd)},
		{Name: "silences", Summary: "list the active silences (-all: every one)", Run: w(silencesCmd)},
		{Name: "receivers", Summary: "notification targets: list | apply -f receivers.yaml | export", Run: w(receiversCmd)},
		{Name: "intervals", Summary: "named mute windows: list | apply -f intervals.yaml | export", Run: w(intervalsCmd)},
		{Name: "counts", Summary: "a keyword's counts as a rule counts it: keyalert counts KEYWORD -since 1h [-by host]", Run: w(countsCmd)},
		{Name: "rules", Summary: "rules as code: keyalert rules apply -f rules.yaml [-dry-run] [-prune] | export", Run: w(rulesCmd)},
		{Name: "watch", Summary: "print per-minute counts and alert changes from a running keyalertd", Run: w(watchCmd)},
		{Name: "replay", Summary: "run a log file through the plugin's matcher and a rules file; print what would fire", Run: replayCmd},
	}
}

func main() {
	os.Exit(subcommand.Run("keyalert", commands(os.Stdout, os.Stderr), os.Args[1:], os.Stdout, os.Stderr))
}
