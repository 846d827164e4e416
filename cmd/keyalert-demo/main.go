// Command keyalert-demo holds the demo's stand-ins, kept out of the shipped
// keyalert CLI because they drive test harnesses:
//
//	keyalert-demo loggen [-o file]     a realistic log with bursts
//	keyalert-demo feed [flags] file    follow a log through the plugin .so (the demo without Fluent Bit)
package main

import (
	"os"

	"github.com/keyalert/keyalert/pkg/subcommand"
)

var commands = []subcommand.Command{
	{Name: "loggen", Summary: `write a realistic application log with bursts of "Exception" and "Disk Full"`, Run: loggenCmd},
	{Name: "feed", Summary: "follow a log file through build/keyalert.so the way Fluent Bit's tail input would", Run: feedCmd},
}

func main() { os.Exit(subcommand.Run("keyalert-demo", commands, os.Args[1:], os.Stdout, os.Stderr)) }
