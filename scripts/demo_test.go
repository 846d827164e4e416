// Package scripts holds the demo that `make run` starts. Its test runs the
// demo as a user would — the same script, the same binaries — waits for the
// page to reach the PagerDuty-compatible receiver, presses Ctrl-C, and checks
// that nothing it started is left running; twice, as `make run` twice in a
// row would.
package scripts

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/keyalert/keyalert/harness/redistest"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var pageRE = regexp.MustCompile(`202 trigger .*dedup=keyalert-`)

func TestDemoPagesThenStopsCleanlyTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("demo test skipped in -short mode")
	}
	if _, err := redistest.Binary(); err != nil {
		if os.Getenv("KEYALERT_REQUIRE_REDIS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	build, err := flbhost.BuildDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"keyalert.so", "flbhost", "keyalertd", "keyalert", "keyalert-demo", "pdreceiver"} {
		if _, err := os.Stat(filepath.Join(build, bin)); err != nil {
			if os.Getenv("KEYALERT_REQUIRE_REDIS") == "1" {
				t.Fatalf("%s missing: run `make build` first", bin)
			}
			t.Skipf("%s missing: run `make build` first", bin)
		}
	}
	varDir := t.TempDir() // shared by both runs, as var/ is by two `make run`s
	for run := 1; run <= 2; run++ {
		runDemo(t, run, varDir)
	}
}

func runDemo(t *testing.T, run int, varDir string) {
	ports := []int{freePort(t), freePort(t), freePort(t)}
	cmd := exec.Command("bash", "demo.sh")
	cmd.Env = append(os.Environ(),
		"FLUENT_BIT=", "PAGERDUTY_ROUTING_KEY=",
		"KEYALERT_DEMO_VAR="+varDir,
		"KEYALERT_DEMO_REDIS_PORT="+strconv.Itoa(ports[0]),
		"KEYALERT_DEMO_LISTEN=127.0.0.1:"+strconv.Itoa(ports[1]),
		"KEYALERT_DEMO_RECEIVER=127.0.0.1:"+strconv.Itoa(ports[2]),
		"KEYALERT_DEMO_BURST_EVERY=2s",
	)
	// Its own process group, as a terminal's foreground job: Ctrl-C reaches all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out logbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { // never leave a demo behind, whatever failed
		syscall.Kill(-pgid, syscall.SIGKILL)
	}()

	deadline := time.After(120 * time.Second)
	for !pageRE.MatchString(out.String()) {
		select {
		case err := <-done:
			t.Fatalf("run %d: demo exited before a page arrived (%v):\n%s", run, err, out.String())
		case <-deadline:
			t.Fatalf("run %d: no page at the receiver within 120s:\n%s", run, out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("run %d: page arrived", run)

	syscall.Kill(-pgid, syscall.SIGINT) // Ctrl-C
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("run %d: demo still running 30s after Ctrl-C:\n%s", run, out.String())
	}
	// Nothing of the group may remain, and every port must be free again.
	for i := 0; i < 50; i++ {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		ps, _ := exec.Command("ps", "-o", "pid,args", "-g", strconv.Itoa(pgid)).CombinedOutput()
		t.Fatalf("run %d: processes left after Ctrl-C:\n%s", run, ps)
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("run %d: port %d still in use after Ctrl-C: %v", run, p, err)
		}
		l.Close()
	}
}
