// Package amtest starts a real Prometheus Alertmanager (Debian's
// prometheus-alertmanager) on a free loopback port for a test, gossip off,
// with one route to a webhook URL. Tests skip, with the reason, when the
// binary is missing (`make alertmanager` installs it).
package amtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Binary finds the alertmanager binary: $ALERTMANAGER, then PATH, then
// Debian's path.
func Binary() (string, error) {
	if p := os.Getenv("ALERTMANAGER"); p != "" {
		return p, nil
	}
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	if _, err := os.Stat("/usr/bin/prometheus-alertmanager"); err == nil {
		return "/usr/bin/prometheus-alertmanager", nil
	}
	return "", fmt.Errorf("prometheus-alertmanager not found (sudo apt-get install -y prometheus-alertmanager, or make alertmanager)")
}

// Server is a running Alertmanager.
type Server struct {
	URL string // e.g. http://127.0.0.1:41234
}

// Start runs an Alertmanager routing every alert to webhookURL, grouping
// by alertname and rule_id with short waits so a test sees posts within
// seconds, and stops it when the test ends.
func Start(t testing.TB, webhookURL string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  resolve_timeout: 5m
route:
  receiver: keyalert-test
  group_by: [alertname, rule_id]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: keyalert-test
    webhook_configs:
      - url: %q
        send_resolved: true
`, webhookURL)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.path="+dir, "--web.listen-address="+addr,
		"--cluster.listen-address=", "--log.level=warn")
	logf, _ := os.Create(filepath.Join(dir, "alertmanager.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	s := &Server{URL: "http://" + addr}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "alertmanager.log"))
			t.Fatalf("alertmanager at %s not ready: %v\n%s", addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
