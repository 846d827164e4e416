// Package scripts holds the demo that `make run` starts. Its test runs the
// demo as a user would — the same script, the same binaries — waits for the
// page to reach the PagerDuty-compatible receiver, checks the terminal shows
// every demo rule's series and marks an alert silenced once a silence covers
// it, presses Ctrl-C, and checks that the demo exits 0 (no "Error 130" from
// make) with nothing it started left running; twice, as `make run` twice in
// a row would.
package scripts

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// What the watch line shows of the two demo rules' series, and of an alert
// under a silence.
var (
	seriesRE   = regexp.MustCompile(`per minute \(oldest→now\): "Exception" \(substring\) \[.*\| "Disk Full" \(substring, ignore case\) \[`)
	silencedRE = regexp.MustCompile(`ALERT a[0-9a-f]+ FIRING \(silenced by s[0-9a-f]+\): rule "java exceptions"`)
)

// waitFor waits until re matches the demo's output.
func waitFor(t *testing.T, run int, out *logbuf.Buffer, done <-chan error, re *regexp.Regexp, what string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for !re.MatchString(out.String()) {
		select {
		case err := <-done:
			t.Fatalf("run %d: demo exited before %s (%v):\n%s", run, what, err, out.String())
		case <-deadline:
			t.Fatalf("run %d: no %s within %s:\n%s", run, what, d, out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

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

	waitFor(t, run, &out, done, pageRE, "page at the receiver", 120*time.Second)
	t.Logf("run %d: page arrived", run)
	waitFor(t, run, &out, done, seriesRE, "watch line with both demo rules' series", 30*time.Second)

	// A silence of the host, as an operator would add it during the demo.
	body := `{"host":"web-12","end":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `","author":"demo test","comment":"maintenance"}`
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(ports[1])+"/api/v1/silences", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer demo-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("run %d: create a silence: %v", run, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("run %d: create a silence: %s", run, resp.Status)
	}
	waitFor(t, run, &out, done, silencedRE, "alert marked silenced", 30*time.Second)

	syscall.Kill(-pgid, syscall.SIGINT) // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run %d: demo ended with %v after Ctrl-C, want exit 0 (make would print an error):\n%s", run, err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run %d: demo still running 30s after Ctrl-C:\n%s", run, out.String())
	}
	if testing.Verbose() {
		t.Logf("run %d: the demo's terminal:\n%s", run, out.String())
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
