package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/replay"
)

func replayTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// replayBurstLog is a log4j log from 10:00 to 10:20 with six exceptions at
// 10:05 and 10:06: burstRule fires at 10:06 (package replay tests it).
func replayBurstLog() string {
	var s strings.Builder
	line := func(min, sec int, msg string) {
		at := time.Date(2025, 3, 1, 10, min, sec, 0, time.UTC)
		fmt.Fprintf(&s, "%s %s\n", at.Format("2006-01-02 15:04:05,000"), msg)
	}
	for m := 0; m <= 20; m++ {
		line(m, 5, "INFO [main] request served")
		line(m, 10, "INFO [main] request served")
		if m == 5 || m == 6 {
			for _, sec := range []int{10, 30, 50} {
				line(m, sec, "ERROR [main] java.lang.IllegalStateException: stock went negative")
			}
		}
	}
	return s.String()
}

const burstRule = `[{"name":"burst","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"resolve_after":"5m"}]`

func runReplayArgs(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = runReplay(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestReplayFlagsFillTheConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the Config's fields, as config below prints them
	}{
		{"defaults", []string{"--rules", "r.json", "a.log"},
			`rules=r.json files=["a.log"] multiline=false layout="" regex="" tz=Local start=0001-01-01T00:00:00Z host=replay tag=replay json=false samples=0`},
		{"every flag", []string{"--rules", "r.json", "--multiline", "--time-layout", "2006-01-02 15:04", "--time-regex", `\[(.*)\]`,
			"--tz", "UTC", "--start", "2025-03-01 10:00:00", "--host", "web-7", "--tag", "app", "--json", "--samples", "3", "a.log"},
			`rules=r.json files=["a.log"] multiline=true layout="2006-01-02 15:04" regex="\\[(.*)\\]" tz=UTC start=2025-03-01T10:00:00Z host=web-7 tag=app json=true samples=3`},
		{"flags after the file names", []string{"a.log", "--rules", "r.json", "-", "--tz", "UTC", "b.log"},
			`rules=r.json files=["a.log" "-" "b.log"] multiline=false layout="" regex="" tz=UTC start=0001-01-01T00:00:00Z host=replay tag=replay json=false samples=0`},
		{"-- ends the flags", []string{"--rules", "r.json", "a.log", "--", "--json"},
			`rules=r.json files=["a.log" "--json"] multiline=false layout="" regex="" tz=Local start=0001-01-01T00:00:00Z host=replay tag=replay json=false samples=0`},
	}
	config := func(c replay.Config) string {
		regex := ""
		if c.TimeRegex != nil {
			regex = c.TimeRegex.String()
		}
		return fmt.Sprintf("rules=%s files=%q multiline=%t layout=%q regex=%q tz=%s start=%s host=%s tag=%s json=%t samples=%d",
			c.RulesPath, c.Files, c.Multiline, c.TimeLayout, regex, c.Location, c.Start.Format(time.RFC3339), c.Host, c.Tag, c.JSON, c.Samples)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseReplayFlags(tt.args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if got := config(c); got != tt.want {
				t.Fatalf("config\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestReplayBadFlagsNameTheFlag(t *testing.T) {
	logPath := replayTemp(t, "app.log", replayBurstLog())
	tests := []struct {
		name    string
		rules   string // "" for no --rules flag
		args    []string
		want    []string
		notWant string
	}{
		{"missing --rules", "", nil, []string{"--rules is required"}, ""},
		{"bad --tz", burstRule, []string{"--tz", "Mars/Olympus"}, []string{`--tz "Mars/Olympus"`}, ""},
		{"bad --time-regex", burstRule, []string{"--time-regex", "("}, []string{`--time-regex "("`}, ""},
		{"bad --time-layout", burstRule, []string{"--time-layout", "yesterday"}, []string{`--time-layout "yesterday"`}, ""},
		{"bad --start", burstRule, []string{"--start", "soon"}, []string{`--start "soon"`}, ""},
		{"bad --samples", burstRule, []string{"--samples", "99"}, []string{"--samples 99"}, ""},
		{"empty --host", burstRule, []string{"--host", ""}, []string{"--host is empty"}, ""},
		{"stdin twice", burstRule, []string{"-", "-"}, []string{"stdin (-) given 2 times"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args []string
			if tt.rules != "" {
				args = append(args, "--rules", replayTemp(t, "rules.json", tt.rules))
			}
			args = append(args, tt.args...)
			args = append(args, logPath)
			_, _, err := runReplayArgs(t, "", args...)
			var ie *inputError
			if !errors.As(err, &ie) {
				t.Fatalf("err %v (%T), want bad input", err, err)
			}
			if !errors.Is(err, replay.ErrBadInput) {
				t.Errorf("err %v is not replay.ErrBadInput: the command would exit 1", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q echoes %q", err, tt.notWant)
			}
		})
	}
}

// TestReplayCommandExitCodes runs the command itself (this test binary
// re-executed as keyalert): 0 whether or not anything fired, 2 on bad input.
func TestReplayCommandExitCodes(t *testing.T) {
	if args := os.Getenv("KEYALERT_TEST_REPLAY_ARGS"); args != "" {
		os.Args = append([]string{"keyalert", "replay"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	logPath := replayTemp(t, "app.log", replayBurstLog())
	good := replayTemp(t, "good.json", burstRule)
	quiet := replayTemp(t, "quiet.json", `[{"name":"never","keywords":["nothing like this"],"condition":{"type":"threshold","count":1,"window":"1m"}}]`)
	bad := replayTemp(t, "bad.json", `[{"name":"x","keywords":[],"condition":{"type":"threshold","count":5,"window":"5m"}}]`)
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderrRe string
	}{
		{"fires", []string{"--rules", good, "--tz", "UTC", logPath}, 0, "2025-03-01 10:06  TRIGGER  burst", ""},
		{"nothing fires", []string{"--rules", quiet, logPath}, 0, "no alert would have fired", ""},
		{"invalid rule", []string{"--rules", bad, logPath}, 2, "", `rules[0] "x": keywords: at least one keyword is required`},
		{"unknown flag", []string{"--rulez", good, logPath}, 2, "", "flag provided but not defined: -rulez"},
		{"help", []string{"-h"}, 0, "", "usage: keyalert replay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestReplayCommandExitCodes$")
			cmd.Env = append(os.Environ(), "KEYALERT_TEST_REPLAY_ARGS="+strings.Join(tt.args, "\x1f"))
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderrRe) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errb.String())
			}
		})
	}
}
