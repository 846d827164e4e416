// Package redistest starts real redis-server processes for tests, each on its
// own loopback port and data directory, with stop, kill and restart controls
// for failure tests. `make test` installs redis-server (Debian package) and sets
// KEYALERT_REQUIRE_REDIS=1, so a missing server fails the run there; a bare
// `go test` without redis-server skips with a message instead.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Server is one redis-server child process.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	Port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	args []string      // added to the command line
}

// Binary finds redis-server: $KEYALERT_REDIS_SERVER, then PATH, then /usr/bin.
func Binary() (string, error) {
	if p := os.Getenv("KEYALERT_REDIS_SERVER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("redis-server not found: install it with `make redis` (apt-get install redis-server) or set KEYALERT_REDIS_SERVER")
}

// Start launches a fresh, empty redis-server on a free loopback port with
// append-only persistence in a temp dir; it is killed when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return startWith(tb)
}

// Persistence is how a server started by StartPersistence keeps its data.
type Persistence int

const (
	// AOF is Start's append-only file (appendfsync always).
	AOF Persistence = iota
	// RDB is snapshots only (save 900 1 60 100), no append-only file.
	RDB
	// Volatile is no persistence at all (appendonly no, save ""): a restart
	// comes back empty, as with a cache-style redis.conf.
	Volatile
)

// StartPersistence is Start with the given persistence, for tests of what
// keyalertd does with a Redis that can lose its data.
func StartPersistence(tb testing.TB, p Persistence) *Server {
	tb.Helper()
	switch p {
	case RDB:
		// The later directives override start's AOF defaults.
		return startWith(tb, "--appendonly", "no", "--save", "900 1", "--save", "60 100")
	case Volatile:
		return startWith(tb, "--appendonly", "no", "--save", "")
	}
	return startWith(tb)
}

// StartMaxMemory is Start with a memory limit and the noeviction policy, so
// that writes beyond it fail with "OOM command not allowed" while reads
// still work, as a full production Redis behaves.
func StartMaxMemory(tb testing.TB, bytes int64) *Server {
	tb.Helper()
	return startWith(tb, "--maxmemory", strconv.FormatInt(bytes, 10), "--maxmemory-policy", "noeviction")
}

func startWith(tb testing.TB, args ...string) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("KEYALERT_REQUIRE_REDIS") == "1" {
			tb.Fatal(err)
		}
		tb.Skip(err.Error())
	}
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir(), args: args}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = freePort(tb)
		if lastErr = s.start(); lastErr == nil {
			tb.Cleanup(s.Kill)
			return s
		}
	}
	tb.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always",
		// No background AOF rewrite: its forked child would outlive a Kill and
		// keep writing into the test's temp dir.
		"--auto-aof-rewrite-percentage", "0",
		"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	done := make(chan struct{})
	s.done = done
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.cmd = nil
			return fmt.Errorf("redis-server exited: %s", strings.TrimSpace(string(log)))
		default:
		}
		c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, MaintNotificationsConfig: noMaint})
		err := c.Ping(context.Background()).Err()
		c.Close()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	return fmt.Errorf("redis-server on %s not ready after 10s", s.Addr())
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the redis:// URL of database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a client closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaintNotificationsConfig: noMaint})
	s.tb.Cleanup(func() { c.Close() })
	return c
}

// Stop shuts the server down cleanly (SIGTERM); data persists for Restart.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart starts the server again on the same port with the same data.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.cmd != nil {
		s.Stop()
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("restart redis-server: %v", err)
}

// SetAOF switches persistence for a benchmark: "off" turns the append-only
// file off (Debian's default redis.conf has none), anything else is an
// appendfsync policy ("everysec", "always").
func (s *Server) SetAOF(mode string) {
	s.tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaintNotificationsConfig: noMaint})
	defer c.Close()
	key, val := "appendfsync", mode
	if mode == "off" {
		key, val = "appendonly", "no"
	}
	if err := c.ConfigSet(context.Background(), key, val).Err(); err != nil {
		s.tb.Fatalf("config set %s %s: %v", key, val, err)
	}
}

// FillMemory writes until the server refuses writes for lack of memory (a
// server from StartMaxMemory), so a test can check what happens when Redis is
// full.
func (s *Server) FillMemory() {
	s.tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaintNotificationsConfig: noMaint})
	defer c.Close()
	val := strings.Repeat("x", 64<<10)
	for i := 0; i < 100000; i++ {
		err := c.Set(context.Background(), "redistest:fill:"+strconv.Itoa(i), val, 0).Err()
		if err != nil && strings.HasPrefix(err.Error(), "OOM ") {
			// The refused write's buffers are freed when it fails, which can
			// bring memory back under the limit: lower the limit below what
			// is used so every later write is refused too.
			info, err2 := c.InfoMap(context.Background(), "memory").Result()
			if err2 != nil {
				s.tb.Fatalf("fill memory: info: %v", err2)
			}
			n, _ := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
			if err := c.ConfigSet(context.Background(), "maxmemory", strconv.FormatInt(n-(512<<10), 10)).Err(); err != nil {
				s.tb.Fatalf("fill memory: lower maxmemory: %v", err)
			}
			return
		}
		if err != nil {
			s.tb.Fatalf("fill memory: %v", err)
		}
	}
	s.tb.Fatal("fill memory: the server never refused a write; was it started with StartMaxMemory?")
}

// noMaint turns off go-redis's maintenance-notification handshake, which
// Redis 7 refuses: its fallback writes options shared by a node client's
// connections without a lock (a data race when several start at once).
var noMaint = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

// CPU is the CPU time (user + system, INFO cpu) the server behind rdb has
// used so far: benchmarks report Redis's share of the work as its change.
func CPU(tb testing.TB, rdb redis.UniversalClient) time.Duration {
	tb.Helper()
	info, err := rdb.InfoMap(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatalf("info cpu: %v", err)
	}
	var sum float64
	for _, f := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(info["CPU"][f], 64)
		if err != nil {
			tb.Fatalf("info cpu: %s = %q: %v", f, info["CPU"][f], err)
		}
		sum += v
	}
	return time.Duration(sum * float64(time.Second))
}
