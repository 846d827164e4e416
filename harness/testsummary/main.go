// Command testsummary runs `go test -json` with the given arguments and
// turns its stream into what a person at a terminal needs from a long run:
// a line per package as it finishes (a heartbeat naming the packages still
// running when nothing finishes for a while), the output of each failed
// test, and at the end every skipped test with its reason. It exits with
// go test's status.
//
//	go run ./harness/testsummary -race -count=1 ./...
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// event is one line of test2json output.
type event struct {
	Action     string
	Package    string
	ImportPath string // of build-output and build-fail
	Test       string
	Elapsed    float64
	Output     string
}

// Heartbeat is how long a quiet run goes before saying what is running.
const Heartbeat = 30 * time.Second

func main() {
	args := append([]string{"test", "-json"}, os.Args[1:]...)
	cmd := exec.Command(envOr("GO", "go"), args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	fmt.Printf("go %s\n", strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	s := newSummary(os.Stdout, time.Now)
	done := make(chan struct{})
	go s.heartbeat(done, Heartbeat)
	s.read(stdout)
	close(done)
	err = cmd.Wait()
	failed := s.finish()
	if code := exitCode(err); code != 0 {
		os.Exit(code)
	}
	if failed {
		os.Exit(1)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "testsummary:", err)
	return 2
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type key struct{ pkg, test string }

type pkgState struct {
	passed, failed, skipped int
	started                 time.Time
}

// summary follows a test2json stream.
type summary struct {
	out   io.Writer
	now   func() time.Time
	start time.Time

	mu        sync.Mutex
	output    map[key][]string // output of each running test (and package)
	pkgs      map[string]*pkgState
	running   map[string]bool
	done      int
	last      time.Time // last line printed
	skips     []skip
	fails     []string // "pkg TestX"
	pkgFail   []string
	buildFail int
}

type skip struct{ pkg, test, reason string }

func newSummary(out io.Writer, now func() time.Time) *summary {
	return &summary{out: out, now: now, start: now(), last: now(), output: map[key][]string{},
		pkgs: map[string]*pkgState{}, running: map[string]bool{}}
}

func (s *summary) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Action == "" {
			// Not test2json (a build error, a panic before main): show it.
			s.mu.Lock()
			fmt.Fprintln(s.out, sc.Text())
			s.mu.Unlock()
			continue
		}
		s.event(ev)
	}
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{started: s.now()}
		s.pkgs[name] = p
	}
	return p
}

func (s *summary) event(ev event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{ev.Package, ev.Test}
	switch ev.Action {
	case "start":
		s.pkg(ev.Package)
		s.running[ev.Package] = true
	case "output":
		s.output[k] = append(s.output[k], ev.Output)
	case "build-output":
		fmt.Fprint(s.out, ev.Output) // compiler errors, shown as they come
		s.last = s.now()
	case "pass", "fail", "skip":
		p := s.pkg(ev.Package)
		if ev.Test != "" {
			switch ev.Action {
			case "pass":
				p.passed++
			case "fail":
				p.failed++
				s.fails = append(s.fails, ev.Package+" "+ev.Test)
				fmt.Fprintf(s.out, "--- FAIL %s %s\n%s", ev.Package, ev.Test, indent(s.output[k]))
			case "skip":
				p.skipped++
				s.skips = append(s.skips, skip{ev.Package, ev.Test, reason(s.output[k])})
			}
			delete(s.output, k)
			return
		}
		delete(s.running, ev.Package)
		s.done++
		status := "ok  "
		switch ev.Action {
		case "fail":
			status = "FAIL"
			s.pkgFail = append(s.pkgFail, ev.Package)
			if p.failed == 0 { // a build failure or a crash outside a test
				fmt.Fprint(s.out, indent(s.output[k]))
			}
		case "skip":
			status = "--  "
		}
		detail := fmt.Sprintf("%d passed", p.passed)
		if p.skipped > 0 {
			detail += fmt.Sprintf(", %d skipped", p.skipped)
		}
		if p.failed > 0 {
			detail += fmt.Sprintf(", %d failed", p.failed)
		}
		if ev.Action == "skip" {
			detail = "no tests"
		}
		fmt.Fprintf(s.out, "%s %-60s %6.1fs  %s\n", status, ev.Package, ev.Elapsed, detail)
		s.last = s.now()
		delete(s.output, k)
	case "build-fail":
		s.buildFail++
	}
}

// heartbeat names the packages still running when nothing was printed for
// every, so a long run never looks stuck.
func (s *summary) heartbeat(done <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.now().Sub(s.last) >= every {
			s.printRunning()
			s.last = s.now()
		}
		s.mu.Unlock()
	}
}

func (s *summary) printRunning() {
	var names []string
	for n := range s.running {
		names = append(names, fmt.Sprintf("%s (%s)", n, s.now().Sub(s.pkgs[n].started).Round(time.Second)))
	}
	sort.Strings(names)
	elapsed := s.now().Sub(s.start).Round(time.Second)
	if len(names) == 0 {
		fmt.Fprintf(s.out, "... %s: %d packages done, compiling the next ones\n", elapsed, s.done)
		return
	}
	fmt.Fprintf(s.out, "... %s: %d packages done; running %s\n", elapsed, s.done, strings.Join(names, ", "))
}

// finish prints the skip summary and the failures, and reports whether
// anything failed.
func (s *summary) finish() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.skips) > 0 {
		fmt.Fprintf(s.out, "\n%d skipped tests:\n", len(s.skips))
		sort.Slice(s.skips, func(i, j int) bool {
			a, b := s.skips[i], s.skips[j]
			return a.pkg < b.pkg || a.pkg == b.pkg && a.test < b.test
		})
		for _, sk := range s.skips {
			fmt.Fprintf(s.out, "  %s %s: %s\n", sk.pkg, sk.test, sk.reason)
		}
	}
	elapsed := s.now().Sub(s.start).Round(time.Second)
	if len(s.fails) > 0 || len(s.pkgFail) > 0 || s.buildFail > 0 {
		fmt.Fprintf(s.out, "\nFAILED after %s: %d tests, %d packages (%d did not build)\n", elapsed, len(s.fails), len(s.pkgFail), s.buildFail)
		for _, f := range s.fails {
			fmt.Fprintf(s.out, "  %s\n", f)
		}
		return true
	}
	fmt.Fprintf(s.out, "\nall %d packages passed in %s (%d tests skipped)\n", s.done, elapsed, len(s.skips))
	return false
}

// reason is what a skipped test logged, without the framework's lines.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " ")
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("    " + l)
		if !strings.HasSuffix(l, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}
