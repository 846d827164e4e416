package flbhost

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEscapeKeepsArgumentsWhole(t *testing.T) {
	cases := map[string]string{
		"plain":           "plain",
		"a b":             "a%20b",
		"x=y,z%":          "x%3Dy%2Cz%25",
		"tab\there\nnl":   "tab%09here%0Anl",
		"redis://h:1/0":   "redis://h:1/0",
		"caf\xc3\xa9\x7f": "caf%C3%A9%7F",
	}
	for in, want := range cases {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func hostBinary(t *testing.T) string {
	t.Helper()
	_, host, err := Paths()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(host); err != nil {
		if os.Getenv("KEYALERT_REQUIRE_REDIS") == "1" {
			t.Fatalf("%s missing: run `make build` first", host)
		}
		t.Skipf("%s missing: run `make build` first", host)
	}
	return host
}

func TestStartReportsAPluginThatDoesNotLoad(t *testing.T) {
	host := hostBinary(t)
	bogus := filepath.Join(t.TempDir(), "not-a-plugin.so")
	if err := os.WriteFile(bogus, []byte("not an ELF file"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := Start(context.Background(), bogus, host, WithStderr(nil))
	if err == nil {
		h.Close()
		t.Fatal("Start succeeded with a file that is not a shared library")
	}
	if !strings.Contains(err.Error(), "dlopen") {
		t.Errorf("error does not carry the host's dlopen message: %v", err)
	}
}

// A plugin path that is a FIFO makes dlopen block forever: the command
// timeout must end the wait and kill the host.
func TestHungHostTimesOutAndIsKilled(t *testing.T) {
	host := hostBinary(t)
	fifo := filepath.Join(t.TempDir(), "hang.so")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	start := time.Now()
	h, err := Start(context.Background(), fifo, host, WithTimeout(300*time.Millisecond), WithStderr(nil))
	if err == nil {
		h.Close()
		t.Fatal("Start succeeded against a host stuck in dlopen")
	}
	if !strings.Contains(err.Error(), "no answer") {
		t.Errorf("error %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Start took %v to give up", d)
	}
}

func TestProtocolErrorsLeaveHostUsable(t *testing.T) {
	h := StartForTest(t)
	for _, args := range [][]string{
		{"bogus"},
		{"flush", "nobody", "tag", "/nonexistent"},
		{"exit", "nobody"},
		{"init"},
		{"init", "x", "novalue"},
		{"init", "x", "Keywords=%zz"},
		{"pflush", "nobody", "tag"},
	} {
		if _, err := h.do(args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if _, err := h.Goroutines(); err != nil {
		t.Fatalf("goroutines after protocol errors: %v", err)
	}
	if h.Name() == "" {
		t.Error("plugin registered no name")
	}
}
