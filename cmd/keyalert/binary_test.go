package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/client"
)

// startKeyalertd runs the built keyalertd (make build) on a fresh Redis and
// points KEYALERT_URL and KEYALERT_TOKEN at it.
func startKeyalertd(t *testing.T) {
	t.Helper()
	build, err := flbhost.BuildDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(build, "keyalertd")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("KEYALERT_REQUIRE_REDIS") == "1" {
			t.Fatalf("%s missing: run `make build` first", bin)
		}
		t.Skipf("%s missing: run `make build` first", bin)
	}
	rs := redistest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KEYALERT_REDIS_URL=" + rs.URL(), "KEYALERT_LISTEN=" + addr,
		"KEYALERT_API_TOKENS=" + testToken, "KEYALERT_EVAL_INTERVAL=200ms"}
	logs, err := os.CreateTemp(t.TempDir(), "keyalertd-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("keyalertd log:\n%s", b)
		}
	})
	url := "http://" + addr
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("keyalertd on %s not ready in 15s (%v)", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Setenv("KEYALERT_URL", url)
	t.Setenv("KEYALERT_TOKEN", testToken)
}

// TestCLIAgainstTheKeyalertdBinary runs the commands against keyalertd as
// shipped: rules as code with a mute time interval, export, alerts, counts.
func TestCLIAgainstTheKeyalertdBinary(t *testing.T) {
	startKeyalertd(t)
	t.Setenv("KA_TEST_ROUTING_KEY", testKey)
	cl := client.New(os.Getenv("KEYALERT_URL"), testToken)
	if _, err := cl.Do(context.Background(), http.MethodPut, "/api/v1/time_intervals/nights",
		[]byte(`{"time_intervals":[{"times":[{"start_time":"22:00","end_time":"24:00"}],"location":"Europe/Berlin"}]}`)); err != nil {
		t.Fatalf("put a time interval: %v", err)
	}
	file := writeFile(t, "rules.yaml", strings.Replace(rulesYAML, "    severity: critical", "    severity: critical\n    mute_time_intervals: [nights]", 1))
	if out := mustRun(t, "rules", "apply", "-f", file); !strings.Contains(out, "2 created") {
		t.Fatalf("apply:\n%s", out)
	}
	if out := mustRun(t, "rules", "apply", "-f", file); !strings.Contains(out, "no changes") {
		t.Errorf("re-apply:\n%s", out)
	}
	exported := mustRun(t, "rules", "export")
	if !strings.Contains(exported, "mute_time_intervals:\n      - nights") || strings.Contains(exported, testKey) {
		t.Errorf("export:\n%s", exported)
	}
	if out := mustRun(t, "rules", "apply", "-f", writeFile(t, "exported.yaml", exported)); !strings.Contains(out, "no changes") {
		t.Errorf("apply of the export:\n%s", out)
	}
	if out := mustRun(t, "alerts"); !strings.Contains(out, "no alerts") {
		t.Errorf("alerts:\n%s", out)
	}
	if out := mustRun(t, "counts", "Disk Full", "-since", "5m"); !strings.Contains(out, `"Disk Full" (substring, ignore case) over the last 5m, counted for rule disk full: 0`) {
		t.Errorf("counts:\n%s", out)
	}
	if code, _, errOut := run("counts", "-rule", "r"+strconv.Itoa(0)); code != 1 || !strings.Contains(errOut, "no such rule") {
		t.Errorf("counts of an unknown rule: exit %d, %s", code, errOut)
	}
}

func TestCLIIntervalsApplyAndExport(t *testing.T) {
	startServer(t)
	file := writeFile(t, "intervals.yaml", `intervals:
  - name: nights
    time_intervals:
      - times: [{start_time: "22:00", end_time: "24:00"}, {start_time: "00:00", end_time: "06:00"}]
        location: Europe/Berlin
  - name: weekends
    time_intervals: [{weekdays: ["saturday:sunday"]}]
`)
	if out := mustRun(t, "intervals", "apply", "-f", file); !strings.Contains(out, `+ create "nights"`) || !strings.Contains(out, "2 changes applied") {
		t.Fatalf("apply:\n%s", out)
	}
	if out := mustRun(t, "intervals", "apply", "-f", file); !strings.Contains(out, "no changes") {
		t.Errorf("re-apply:\n%s", out)
	}
	exported := mustRun(t, "intervals", "export")
	if out := mustRun(t, "intervals", "apply", "-f", writeFile(t, "exported.yaml", exported)); !strings.Contains(out, "no changes") {
		t.Errorf("apply of the export:\n%s\n%s", out, exported)
	}
	if out := mustRun(t, "intervals"); !strings.Contains(out, "weekends") || !strings.Contains(out, "Europe/Berlin") {
		t.Errorf("intervals:\n%s", out)
	}
	code, _, errOut := run("intervals", "apply", "-f", writeFile(t, "bad.yaml", "- name: n\n  time_intervals:\n    - weekdays: [funday]\n"))
	if code != 1 || !strings.Contains(errOut, `bad.yaml:3: interval "n": time_intervals[0].weekdays[0]: `) {
		t.Errorf("bad weekday: exit %d, %s", code, errOut)
	}
}
