// Package multiline is the Java-style multiline rule that keyalert's own
// tools apply when they read a log file without Fluent Bit (keyalert replay,
// the demo's feed): an indented line or a "Caused by:" line continues the
// record before it, as conf/parsers.conf's multiline parser does in Fluent Bit.
package multiline

import "strings"

// Continues reports whether line belongs to the record before it.
func Continues(line string) bool {
	return strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "Caused by:")
}
