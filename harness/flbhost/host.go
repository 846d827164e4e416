// Package flbhost drives build/flbhost, the C stand-in for Fluent Bit's Go
// output proxy, which loads a plugin .so and calls it the way Fluent Bit does.
// Tests, the demo and the backend's end-to-end tests use it to run the real
// plugin in a real C process without building Fluent Bit. The line protocol it
// speaks is described in README.md.
package flbhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Return codes of the plugin's callbacks, as Fluent Bit reads them.
const (
	// Error drops the chunk (or fails the init).
	Error = 0
	// OK accepts the chunk (or the init).
	OK = 1
	// Retry asks Fluent Bit to flush the whole chunk again later.
	Retry = 2
)

// DefaultTimeout bounds every command, so a hung plugin fails a test rather
// than hanging it.
const DefaultTimeout = 30 * time.Second

// maxLog is how much plugin stderr a Host keeps for LogSince.
const maxLog = 16 << 20

// Option tunes Start.
type Option func(*options)

type options struct {
	stderr  io.Writer
	timeout time.Duration
	env     []string
}

// WithStderr copies the plugin's stderr to w as well as keeping it for
// LogSince. Without it, stderr is copied to os.Stderr.
func WithStderr(w io.Writer) Option { return func(o *options) { o.stderr = w } }

// WithTimeout sets the bound on each command (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithEnv adds KEY=VALUE pairs to the host process's environment.
func WithEnv(kv ...string) Option { return func(o *options) { o.env = append(o.env, kv...) } }

// WithFluentBitVersion makes the host mimic that Fluent Bit version's proxy
// ("5.1.0", "4.2"): the size it allocates for the plugin's definition and,
// from 5.1.1, the check of an instance's keys against the plugin's config map.
// The default mimics the newest behaviour (5.1.1).
func WithFluentBitVersion(v string) Option { return WithEnv("FLBHOST_FLUENT_BIT_VERSION=" + v) }

// Host is one running flbhost process with the plugin loaded. Its methods are
// safe for concurrent use; commands run one at a time.
type Host struct {
	cmd     *exec.Cmd
	stdin   *os.File
	lines   chan string   // response lines; closed at stdout EOF
	exited  chan struct{} // closed once the process has been reaped
	errDone chan struct{} // closed when the stderr copier has finished
	waitErr error         // valid after exited
	name    string
	tmp     string
	timeout time.Duration
	seq     int

	mu     sync.Mutex // one command at a time
	broken error      // set once the process can no longer answer

	logMu   sync.Mutex
	log     []byte
	logBase int // offset in the whole stderr stream of log[0]

	closeOnce sync.Once
	closeErr  error
}

// Start launches hostPath with the plugin at soPath and waits for it to report
// a successful registration. The process is killed when ctx is done; call
// Close to shut it down cleanly.
func Start(ctx context.Context, soPath, hostPath string, opts ...Option) (*Host, error) {
	o := options{stderr: os.Stderr, timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	tmp, err := os.MkdirTemp("", "flbhost-")
	if err != nil {
		return nil, fmt.Errorf("flbhost: temp dir: %w", err)
	}
	h := &Host{
		lines:   make(chan string, 1),
		exited:  make(chan struct{}),
		errDone: make(chan struct{}),
		tmp:     tmp,
		timeout: o.timeout,
	}
	// Own pipes rather than exec's, so reaping the process never races the
	// readers (exec closes its pipes in Wait).
	inR, inW, err := os.Pipe()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("flbhost: pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW)
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("flbhost: pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW, outR, outW)
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("flbhost: pipe: %w", err)
	}
	h.cmd = exec.CommandContext(ctx, hostPath, soPath)
	h.cmd.Stdin, h.cmd.Stdout, h.cmd.Stderr = inR, outW, errW
	h.cmd.Env = append(os.Environ(), o.env...)
	h.cmd.WaitDelay = time.Second
	if err := h.cmd.Start(); err != nil {
		closeAll(inR, inW, outR, outW, errR, errW)
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("flbhost: start %s %s: %w", hostPath, soPath, err)
	}
	closeAll(inR, outW, errW) // the child has its copies
	h.stdin = inW

	go h.readLines(outR)
	go h.copyStderr(errR, o.stderr)
	go func() {
		h.waitErr = h.cmd.Wait()
		close(h.exited)
	}()

	h.mu.Lock()
	line, err := h.receive("start")
	h.mu.Unlock()
	if err != nil {
		h.Close()
		return nil, err
	}
	name, ok := strings.CutPrefix(line, "ready ")
	if !ok {
		h.Close()
		return nil, fmt.Errorf("flbhost: start: unexpected greeting %q", line)
	}
	h.name = name
	return h, nil
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func (h *Host) readLines(r *os.File) {
	defer r.Close()
	defer close(h.lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		h.lines <- sc.Text()
	}
}

func (h *Host) copyStderr(r *os.File, fwd io.Writer) {
	defer close(h.errDone)
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			h.logMu.Lock()
			h.log = append(h.log, buf[:n]...)
			if len(h.log) > maxLog {
				drop := len(h.log) - maxLog/2
				h.log = append(h.log[:0], h.log[drop:]...)
				h.logBase += drop
			}
			h.logMu.Unlock()
			if fwd != nil {
				fwd.Write(buf[:n])
			}
		}
		if err != nil {
			return
		}
	}
}

// Name is the name the plugin registered.
func (h *Host) Name() string { return h.name }

// LogLen is the length of the plugin's stderr so far; pass it to LogSince or
// WaitLog to look only at what comes after.
func (h *Host) LogLen() int {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	return h.logBase + len(h.log)
}

// LogSince returns the plugin's stderr from offset mark on (as much of it as
// is still kept).
func (h *Host) LogSince(mark int) string {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	i := max(mark-h.logBase, 0)
	if i > len(h.log) {
		return ""
	}
	return string(h.log[i:])
}

// WaitLog waits up to d for substr to appear in stderr after mark. Stderr is
// read concurrently with the command responses, so a line the plugin wrote
// before answering may arrive a moment after the answer.
func (h *Host) WaitLog(mark int, substr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(h.LogSince(mark), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-h.errDone:
			return strings.Contains(h.LogSince(mark), substr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Exited is closed when the host process has ended.
func (h *Host) Exited() <-chan struct{} { return h.exited }

// do sends one command line and returns what follows "ok" in the answer.
func (h *Host) do(args ...string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.broken != nil {
		return "", h.broken
	}
	what := args[0]
	line := strings.Join(args, " ") + "\n"
	h.stdin.SetWriteDeadline(time.Now().Add(h.timeout))
	if _, err := io.WriteString(h.stdin, line); err != nil {
		return "", h.fail(what, fmt.Errorf("write command: %w", err))
	}
	resp, err := h.receive(what)
	if err != nil {
		return "", err
	}
	if rest, ok := strings.CutPrefix(resp, "ok"); ok && (rest == "" || rest[0] == ' ') {
		return strings.TrimPrefix(rest, " "), nil
	}
	if reason, ok := strings.CutPrefix(resp, "err "); ok {
		return "", fmt.Errorf("flbhost: %s: %s", what, reason)
	}
	return "", h.fail(what, fmt.Errorf("unexpected answer %q", resp))
}

// receive waits for the next line; h.mu must be held.
func (h *Host) receive(what string) (string, error) {
	timer := time.NewTimer(h.timeout)
	defer timer.Stop()
	select {
	case line, ok := <-h.lines:
		if ok {
			return line, nil
		}
		select {
		case <-h.exited:
		case <-time.After(5 * time.Second):
		}
		status := "still running"
		select {
		case <-h.exited:
			status = fmt.Sprint(h.waitErr)
			if h.waitErr == nil {
				status = "exit status 0"
			}
		default:
		}
		return "", h.fail(what, fmt.Errorf("host closed stdout (%s)", status))
	case <-timer.C:
		h.cmd.Process.Kill()
		return "", h.fail(what, fmt.Errorf("no answer after %v; host killed", h.timeout))
	}
}

// fail marks the host unusable and returns err with the tail of stderr.
func (h *Host) fail(what string, err error) error {
	select {
	case <-h.errDone:
	case <-time.After(time.Second):
	}
	tail := h.LogSince(h.LogLen() - 4096)
	h.broken = fmt.Errorf("flbhost: %s: %w; stderr tail:\n%s", what, err, tail)
	return h.broken
}

func atoiList(s string, want int, what string) ([]int, error) {
	fields := strings.Fields(s)
	if len(fields) != want {
		return nil, fmt.Errorf("flbhost: %s: answer %q: want %d numbers", what, s, want)
	}
	out := make([]int, len(fields))
	for i, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("flbhost: %s: answer %q: %w", what, s, err)
		}
		out[i] = n
	}
	return out, nil
}

func (h *Host) rc(args ...string) (int, error) {
	s, err := h.do(args...)
	if err != nil {
		return 0, err
	}
	n, err := atoiList(s, 1, args[0])
	if err != nil {
		return 0, err
	}
	return n[0], nil
}

// Init creates output instance inst with cfg as its configuration (keys are
// looked up case-insensitively, as in Fluent Bit) and returns FLBPluginInit's
// code. An instance whose init failed does not exist afterwards.
func (h *Host) Init(inst string, cfg map[string]string) (int, error) {
	args := []string{"init", Escape(inst)}
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, Escape(k)+"="+Escape(cfg[k]))
	}
	return h.rc(args...)
}

// ConfigMap returns the key names of the config map the plugin registered,
// as `fluent-bit -o NAME -h` would list them; an error when the mimicked
// version has none or the plugin registered none.
func (h *Host) ConfigMap() ([]string, error) {
	out, err := h.do("help")
	if err != nil {
		return nil, err
	}
	return strings.Split(out, ","), nil
}

func (h *Host) writeChunk(chunk []byte) (string, error) {
	h.mu.Lock()
	h.seq++
	p := filepath.Join(h.tmp, fmt.Sprintf("chunk-%d.bin", h.seq))
	h.mu.Unlock()
	if err := os.WriteFile(p, chunk, 0o600); err != nil {
		return "", fmt.Errorf("flbhost: write chunk: %w", err)
	}
	return p, nil
}

// Flush hands chunk to instance inst under tag and returns FLBPluginFlushCtx's
// code.
func (h *Host) Flush(inst, tag string, chunk []byte) (int, error) {
	p, err := h.writeChunk(chunk)
	if err != nil {
		return 0, err
	}
	defer os.Remove(p)
	return h.rc("flush", Escape(inst), Escape(tag), Escape(p))
}

// FlushConcurrent flushes every chunk at once, each on its own thread in the
// host (as Fluent Bit's output workers do), and returns their codes in order.
func (h *Host) FlushConcurrent(inst, tag string, chunks [][]byte) ([]int, error) {
	if len(chunks) == 0 {
		return nil, nil
	}
	args := []string{"pflush", Escape(inst), Escape(tag)}
	for _, c := range chunks {
		p, err := h.writeChunk(c)
		if err != nil {
			return nil, err
		}
		defer os.Remove(p)
		args = append(args, Escape(p))
	}
	s, err := h.do(args...)
	if err != nil {
		return nil, err
	}
	return atoiList(s, len(chunks), "pflush")
}

// Exit calls FLBPluginExitCtx for inst and forgets the instance.
func (h *Host) Exit(inst string) (int, error) {
	return h.rc("exit", Escape(inst))
}

// Goroutines asks the plugin how many goroutines its Go runtime has (through
// its KeyalertGoroutines export).
func (h *Host) Goroutines() (int, error) {
	return h.rc("goroutines")
}

// Close exits the remaining instances, unregisters the plugin and waits for
// the process to end, killing it if it does not within the timeout.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		_, qerr := h.do("quit")
		h.stdin.Close()
		go func() { // unblock the reader if answers are left after a failure
			for range h.lines {
			}
		}()
		select {
		case <-h.exited:
		case <-time.After(h.timeout):
			h.cmd.Process.Kill()
			<-h.exited
		}
		select {
		case <-h.errDone:
		case <-time.After(5 * time.Second):
		}
		os.RemoveAll(h.tmp)
		switch {
		case qerr != nil:
			h.closeErr = qerr
		case h.waitErr != nil:
			h.closeErr = fmt.Errorf("flbhost: quit: %w", h.waitErr)
		}
	})
	return h.closeErr
}

// Escape percent-encodes s for one protocol argument: bytes that would split
// or end it, '%', '=' and ','. An empty argument cannot be sent (the host
// splits on runs of blanks), except as the value in key=value.
func Escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '=' || c == ',' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ErrNoRepo is returned by Paths when no go.mod is found above the working
// directory and $KEYALERT_BUILD is unset.
var ErrNoRepo = errors.New("no go.mod above the working directory; set KEYALERT_BUILD")

// BuildDir is $KEYALERT_BUILD, or build/ in the repository root (the
// directory of the go.mod found walking up from the working directory).
func BuildDir() (string, error) {
	if d := os.Getenv("KEYALERT_BUILD"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "build"), nil
}

// RepoRoot is the directory of the go.mod found walking up from the working
// directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoRepo
		}
		dir = parent
	}
}

// Paths returns where `make build` puts the plugin and the host.
func Paths() (soPath, hostPath string, err error) {
	dir, err := BuildDir()
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "keyalert.so"), filepath.Join(dir, "flbhost"), nil
}
