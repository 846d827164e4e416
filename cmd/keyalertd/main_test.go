package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/ingest"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// keyalertd returns the binary under test: $KEYALERT_BUILD/keyalertd when
// `make test` has built it, else a fresh `go build` shared by the tests.
func keyalertd(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("KEYALERT_BUILD"); dir != "" {
		if p := filepath.Join(dir, "keyalertd"); fileExists(p) {
			return p
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyalertd-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "keyalertd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// proc is one keyalertd child process.
type proc struct {
	cmd  *exec.Cmd
	addr string // HTTP host:port
	done chan struct{}
	mu   sync.Mutex
	logs strings.Builder
}

const token = "test-token"

func baseEnv(redisURL string) map[string]string {
	return map[string]string{
		"KEYALERT_REDIS_URL":      redisURL,
		"KEYALERT_LISTEN":         "127.0.0.1:0",
		"KEYALERT_API_TOKENS":     token,
		"KEYALERT_BLOCK":          "100ms",
		"KEYALERT_CLAIM_IDLE":     "1s",
		"KEYALERT_CLAIM_INTERVAL": "200ms",
		"KEYALERT_LOG_FORMAT":     "json",
	}
}

// start runs keyalertd with env and waits for its HTTP address.
func start(t testing.TB, env map[string]string) *proc {
	t.Helper()
	cmd := exec.Command(keyalertd(t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var rec struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "keyalertd starting" {
				addr <- rec.Listen
			}
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	select {
	case p.addr = <-addr:
	case <-p.done:
		t.Fatalf("keyalertd exited at start:\n%s", p.log())
	case <-time.After(15 * time.Second):
		t.Fatalf("keyalertd did not start in 15s:\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// counts asks the API for one series' total over the last two hours.
func (p *proc) total(t *testing.T, s keyword.Spec, host string) int64 {
	t.Helper()
	q := url.Values{}
	q.Set("keyword", s.Text)
	q.Set("match", s.Match.String())
	q.Set("ignore_case", strconv.FormatBool(s.IgnoreCase))
	q.Set("from", time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339))
	q.Set("to", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if host != "" {
		q.Set("host", host)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/api/v1/counts?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := apiClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r api.CountsResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("counts %s: status %d, %v", s.ID(), resp.StatusCode, err)
	}
	return r.Total
}

// metric reads one unlabelled metric from /metrics.
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := apiClient(t).Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

var specs = []keyword.Spec{
	{Text: "Exception"},
	{Text: "error", IgnoreCase: true},
	{Text: "timeout", Match: keyword.Word},
	{Text: `disk\s+full`, Match: keyword.Regex},
}

var hosts = []string{"web-1", "web-2", "db-1"}

type key struct {
	id   string
	host string
}

// workload is a deterministic set of plugin batches with ground truth.
type workload struct {
	batches [][]stream.Entry
	truth   map[key]int64
	entries int // distinct dedup ids
}

func newWorkload(seed uint64, nBatches int) *workload {
	r := rand.New(rand.NewPCG(seed, seed))
	w := &workload{truth: map[key]int64{}}
	now := time.Now().Unix() / 60 * 60
	for b := 0; b < nBatches; b++ {
		batch := fmt.Sprintf("%016x%016x", seed, b)
		var es []stream.Entry
		for _, s := range specs {
			for _, h := range hosts {
				if r.IntN(3) == 0 {
					continue
				}
				e := stream.Entry{
					Batch: batch, Keyword: s.Canonical(), Tag: "app", Host: h,
					Minute:  now - int64(r.IntN(30))*60, // late entries too
					Count:   int64(1 + r.IntN(20)),
					Samples: []string{"sample line with " + s.Text},
					SentMs:  time.Now().UnixMilli(),
				}
				if b%2 == 1 { // half the batches as today's plugin writes them (version 3)
					e.Producer, e.Attempt = fmt.Sprintf("%016x", seed), fmt.Sprintf("%016x", b)
				}
				es = append(es, e)
				w.truth[key{s.ID(), h}] += e.Count
				w.entries++
			}
		}
		w.batches = append(w.batches, es)
	}
	return w
}

// feed writes the batches, re-sending about one in eight later as a plugin
// retry would (a version 3 retry under a new attempt), over roughly d.
func (w *workload) feed(t *testing.T, rdb redis.UniversalClient, d time.Duration) {
	ctx := context.Background()
	pause := d / time.Duration(len(w.batches)+1)
	var retries [][]stream.Entry
	retry := func(es []stream.Entry) []stream.Entry {
		out := append([]stream.Entry(nil), es...)
		attempt := stream.NewAttempt()
		for i := range out {
			if out[i].Producer != "" {
				out[i].Attempt = attempt
			}
		}
		return out
	}
	send := func(es []stream.Entry) {
		pipe := rdb.Pipeline()
		for i := range es {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream.DefaultStream, Values: es[i].AppendValues(nil)})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Errorf("xadd: %v", err)
		}
	}
	for i, es := range w.batches {
		send(es)
		if i%8 == 3 {
			retries = append(retries, es)
		}
		if i%16 == 15 && len(retries) > 0 {
			send(retry(retries[0]))
			retries = retries[1:]
		}
		time.Sleep(pause)
	}
	for _, es := range retries {
		send(retry(es))
	}
}

// drained waits until the group has read and acknowledged every entry.
func drained(tb testing.TB, rdb redis.UniversalClient, limit time.Duration) {
	tb.Helper()
	drainedKey(tb, rdb, stream.DefaultStream, limit)
}

// drainedKey waits until the consumer group of stream key has nothing
// undelivered or pending (polled every 5 ms, so that benchmarks can time a
// drain by it).
func drainedKey(tb testing.TB, rdb redis.UniversalClient, key string, limit time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		gs, err := rdb.XInfoGroups(context.Background(), key).Result()
		if err == nil && len(gs) == 1 && gs[0].Lag == 0 && gs[0].Pending == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	gs, _ := rdb.XInfoGroups(context.Background(), key).Result()
	tb.Fatalf("stream %s not drained after %v: %+v", key, limit, gs)
}

func (w *workload) check(t *testing.T, p *proc, rdb redis.UniversalClient) {
	t.Helper()
	for _, s := range specs {
		var want int64
		for _, h := range hosts {
			want += w.truth[key{s.ID(), h}]
			if got := p.total(t, s, h); got != w.truth[key{s.ID(), h}] {
				t.Errorf("%s on %s: counted %d, ground truth %d", s.ID(), h, got, w.truth[key{s.ID(), h}])
			}
		}
		if got := p.total(t, s, ""); got != want {
			t.Errorf("%s: counted %d, ground truth %d", s.ID(), got, want)
		}
	}
	if n, _ := rdb.XLen(context.Background(), ingest.DeadStream(stream.DefaultStream)).Result(); n != 0 {
		dead, _ := rdb.XRange(context.Background(), ingest.DeadStream(stream.DefaultStream), "-", "+").Result()
		t.Errorf("%d dead letters, want none: %v", n, dead)
	}
}

func TestCountsExactlyAcrossSIGKILLs(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	w := newWorkload(1, 2400)
	env := baseEnv(srv.URL())
	env["KEYALERT_BATCH_SIZE"] = "64" // many batches, so kills land mid-batch

	// A backlog first, so the kills hit a busy consumer, then a steady feed.
	backlog := &workload{batches: w.batches[:1200]}
	backlog.feed(t, rdb, 0)
	fed := make(chan struct{})
	go func() { defer close(fed); (&workload{batches: w.batches[1200:]}).feed(t, rdb, 3*time.Second) }()

	r := rand.New(rand.NewPCG(7, 7))
	for kill := 0; kill < 8; kill++ {
		// Half the restarts keep the consumer name (own pending re-read at
		// start), half take a new one (the dead name's entries are claimed).
		e := maps(env, "KEYALERT_CONSUMER", "crash-"+strconv.Itoa(kill%2*kill))
		p := start(t, e)
		time.Sleep(time.Duration(20+r.IntN(400)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if gs, err := rdb.XInfoGroups(context.Background(), stream.DefaultStream).Result(); err == nil && len(gs) == 1 {
			t.Logf("killed %d: %d entries read, %d pending, lag %d", kill, gs[0].EntriesRead, gs[0].Pending, gs[0].Lag)
		}
	}
	<-fed
	p := start(t, maps(env, "KEYALERT_CONSUMER", "crash-final"))
	drained(t, rdb, 30*time.Second)
	w.check(t, p, rdb)
	if t.Failed() {
		t.Logf("last keyalertd log:\n%s", p.log())
	}
}

func maps(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

// Two processes count like one: reading by the group they share the stream
// (each applies some of it); reading by cursor one holds the stream's lease
// and reads it, the other stands by. Either way each entry is applied once.
func TestTwoProcessesCountLikeOne(t *testing.T) {
	w := newWorkload(2, 300)
	for _, tc := range []struct {
		n    int
		read string
	}{{1, "cursor"}, {2, "cursor"}, {2, "group"}} {
		t.Run(fmt.Sprintf("%d processes reading by %s", tc.n, tc.read), func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client()
			env := baseEnv(srv.URL())
			env["KEYALERT_BATCH_SIZE"] = "20"
			env["KEYALERT_INGEST_READ"] = tc.read
			var ps []*proc
			for i := 0; i < tc.n; i++ {
				ps = append(ps, start(t, maps(env, "KEYALERT_CONSUMER", fmt.Sprintf("c%d", i))))
			}
			w.feed(t, rdb, 2*time.Second)
			drained(t, rdb, 20*time.Second)
			w.check(t, ps[0], rdb)
			// Every distinct entry was applied by exactly one of them.
			var applied float64
			for _, p := range ps {
				a := p.metric(t, "keyalert_ingest_entries_applied_total")
				if a == 0 && tc.read == "group" {
					t.Errorf("a process applied nothing; the stream was not shared")
				}
				applied += a
			}
			if int(applied) != w.entries {
				t.Errorf("processes applied %v entries in total, want %d", applied, w.entries)
			}
		})
	}
}

func TestSIGTERMFinishesTheBatchAndExitsZero(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	w := newWorkload(3, 400)
	w.feed(t, rdb, 0)
	env := baseEnv(srv.URL())
	env["KEYALERT_BATCH_SIZE"] = "10"
	env["KEYALERT_BLOCK"] = "2s"
	p := start(t, env)
	time.Sleep(300 * time.Millisecond) // mid-stream
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("keyalertd did not exit 15s after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0:\n%s", code, p.log())
	}
	gs, err := rdb.XInfoGroups(context.Background(), stream.DefaultStream).Result()
	if err != nil || len(gs) != 1 {
		t.Fatalf("groups %v %v", gs, err)
	}
	if gs[0].Pending != 0 {
		t.Errorf("%d entries left pending: the batch in flight was not finished", gs[0].Pending)
	}
	// And a successor picks up exactly where it stopped.
	p2 := start(t, env)
	drained(t, rdb, 20*time.Second)
	w.check(t, p2, rdb)
}

func TestBadSettingsExitNonZeroNamingTheSetting(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		code int
		want string
	}{
		{"bad retention", map[string]string{"KEYALERT_RETENTION": "forever"}, 2, "KEYALERT_RETENTION"},
		{"bad redis url", map[string]string{"KEYALERT_REDIS_URL": "tcp://x"}, 2, "KEYALERT_REDIS_URL"},
		{"no tokens", map[string]string{"KEYALERT_API_TOKENS": ""}, 2, "KEYALERT_API_TOKENS"},
		{"listen address in use or invalid", map[string]string{"KEYALERT_LISTEN": "256.0.0.1:1"}, 1, "KEYALERT_LISTEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv("redis://127.0.0.1:1/0")
			for k, v := range tt.env {
				env[k] = v
			}
			cmd := exec.Command(keyalertd(t))
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.code || !strings.Contains(string(out), tt.want) {
				t.Errorf("exit %d, output %q; want exit %d naming %s", code, out, tt.code, tt.want)
			}
		})
	}
}

func TestNotReadyWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	p := start(t, baseEnv(srv.URL()))
	ready := func() int {
		resp, err := apiClient(t).Get("http://" + p.addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for ready() != want {
			if time.Now().After(deadline) {
				t.Fatalf("readyz never became %d", want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor(http.StatusOK)
	srv.Stop()
	waitFor(http.StatusServiceUnavailable)
	srv.Restart()
	waitFor(http.StatusOK)
	if resp, err := apiClient(t).Get("http://" + p.addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %v %v", resp, err)
	}
}

// A replica stopped (SIGSTOP) in the middle of the load, for longer than its
// lease and the claim idle time, while the other takes the stream over, then
// resumed with its batches in flight: every entry counts once, reading by
// cursor (the resumed one's batches fail the cursor check) or by the group
// (its entries were claimed, the fence moved).
func TestStoppedReplicaResumedCountsOnce(t *testing.T) {
	for _, read := range []string{"cursor", "group"} {
		t.Run(read, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client()
			w := newWorkload(7, 400)
			env := baseEnv(srv.URL())
			env["KEYALERT_BATCH_SIZE"] = "10"
			env["KEYALERT_INGEST_READ"] = read
			env["KEYALERT_LEASE_TTL"] = "600ms"
			env["KEYALERT_CLAIM_IDLE"] = "300ms"
			env["KEYALERT_CLAIM_INTERVAL"] = "100ms"
			a := start(t, maps(env, "KEYALERT_CONSUMER", "a"))
			time.Sleep(300 * time.Millisecond) // a holds the stream's lease
			b := start(t, maps(env, "KEYALERT_CONSUMER", "b"))
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				time.Sleep(500 * time.Millisecond)
				a.cmd.Process.Signal(syscall.SIGSTOP)
				time.Sleep(1500 * time.Millisecond)
				a.cmd.Process.Signal(syscall.SIGCONT)
			}()
			w.feed(t, rdb, 2*time.Second)
			<-stopped
			drained(t, rdb, 20*time.Second)
			time.Sleep(300 * time.Millisecond) // a's last batches in flight reach Redis
			drained(t, rdb, 20*time.Second)
			w.check(t, b, rdb)
			applied := a.metric(t, "keyalert_ingest_entries_applied_total") + b.metric(t, "keyalert_ingest_entries_applied_total")
			if int(applied) != w.entries {
				t.Errorf("the replicas applied %v entries in total, want %d", applied, w.entries)
			}
			if a.metric(t, "keyalert_ingest_entries_applied_total") == 0 || b.metric(t, "keyalert_ingest_entries_applied_total") == 0 {
				t.Errorf("a replica applied nothing: the stop did not fall in the middle of the load")
			}
		})
	}
}
