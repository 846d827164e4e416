// Command keyalert-demo holds the demo's stand-ins, kept out of the shipped
// keyalert CLI because they drive test harnesses:
//
//	keyalert-demo loggen [-o file]     a realistic log with bursts
//	keyalert-demo feed [flags] file    follow a log through the plugin .so (the demo without Fluent Bit)
package main

import (
	"fmt"
	"os"
)

const usage = `usage: keyalert-demo <command> [flags] [args]

commands:
  loggen   write a realistic application log with bursts of "Exception" and "Disk Full"
  feed     follow a log file through build/keyalert.so the way Fluent Bit's tail input would

Run 'keyalert-demo <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "loggen":
		err = loggenCmd(args)
	case "feed":
		err = feedCmd(args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "keyalert-demo: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyalert-demo %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
