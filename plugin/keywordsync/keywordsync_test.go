package keywordsync

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/match"
	"github.com/redis/go-redis/v9"
)

// syncBuf is a log sink safe to write from the follower goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func ids(m *match.Matcher) string {
	var out []string
	for i := 0; i < m.Len(); i++ {
		out = append(out, m.Spec(i).ID())
	}
	return strings.Join(out, ",")
}

func doc(t testing.TB, specs ...keyword.Spec) string {
	t.Helper()
	b, err := keyword.EncodeSet(specs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sub(s string) keyword.Spec { return keyword.Spec{Text: s} }

func TestPoll(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	static := []keyword.Spec{sub("ERROR"), {Text: "Warn", IgnoreCase: true}}
	tests := []struct {
		name    string
		steps   []string // documents set before each poll; "<del>" deletes the key
		want    string   // matcher IDs after the last poll
		wantLog string
	}{
		{"missing key: static only", []string{"<del>"}, "substring:ERROR,substring/i:warn", ""},
		{"union, dedup by id, static first",
			[]string{doc(t, sub("disk full"), sub("ERROR"), keyword.Spec{Text: "WARN", IgnoreCase: true})},
			"substring:ERROR,substring/i:warn,substring:disk full", "keywords updated"},
		{"set replaced",
			[]string{doc(t, sub("a")), doc(t, sub("b"))},
			"substring:ERROR,substring/i:warn,substring:b", ""},
		{"key deleted falls back to static",
			[]string{doc(t, sub("a")), "<del>"},
			"substring:ERROR,substring/i:warn", ""},
		{"bad json keeps previous",
			[]string{doc(t, sub("a")), "{not json"},
			"substring:ERROR,substring/i:warn,substring:a", "bad keyword set document"},
		{"wrong version keeps previous",
			[]string{doc(t, sub("a")), `{"v":99,"keywords":[]}`},
			"substring:ERROR,substring/i:warn,substring:a", "unsupported version"},
		{"bad regex keeps previous",
			[]string{doc(t, sub("a")), `{"v":1,"keywords":[{"text":"(x","match":"regex"}]}`},
			"substring:ERROR,substring/i:warn,substring:a", "bad keyword set document"},
		{"empty set", []string{`{"v":1,"keywords":[]}`}, "substring:ERROR,substring/i:warn", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuf
			f, err := New(rdb, Options{Static: static, Key: "ks", Interval: time.Hour, Timeout: time.Second,
				Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Stop()
			for _, d := range tt.steps {
				if d == "<del>" {
					rdb.Del(ctx, "ks")
				} else {
					rdb.Set(ctx, "ks", d, 0)
				}
				if err := f.Poll(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if got := ids(f.Matcher()); got != tt.want {
				t.Errorf("keywords %s, want %s", got, tt.want)
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, logs.String())
			}
		})
	}
}

func TestUnchangedDocumentIsNotRecompiled(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	rdb.Set(ctx, "ks", doc(t, sub("a")), 0)
	f, _ := New(rdb, Options{Static: []keyword.Spec{sub("s")}, Key: "ks", Interval: time.Hour, Timeout: time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Poll(ctx)
	m := f.Matcher()
	f.Poll(ctx)
	if f.Matcher() != m {
		t.Fatal("same document compiled again")
	}
}

// A change published in Redis reaches the matcher within the poll interval
// without restarting anything.
func TestFollowsChanges(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	f, _ := New(rdb, Options{Static: []keyword.Spec{sub("s")}, Key: "ks", Interval: 50 * time.Millisecond, Timeout: time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Start()
	defer f.Stop()
	rdb.Set(ctx, "ks", doc(t, sub("new")), 0)
	waitFor(t, 3*time.Second, func() bool { return ids(f.Matcher()) == "substring:s,substring:new" })
}

// With Redis down at start the static keywords apply and the follower keeps
// trying; once Redis is back, the published set is picked up.
func TestRedisDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Client().Set(context.Background(), "ks", doc(t, sub("pub")), 0)
	srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	var logs syncBuf
	f, _ := New(rdb, Options{Static: []keyword.Spec{sub("s")}, Key: "ks", Interval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	f.Start()
	defer f.Stop()
	if got := ids(f.Matcher()); got != "substring:s" {
		t.Fatalf("keywords %s with Redis down", got)
	}
	if !strings.Contains(logs.String(), "not read at start") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
	srv.Restart() // append-only file brings the document back
	waitFor(t, 5*time.Second, func() bool { return ids(f.Matcher()) == "substring:s,substring:pub" })
	if n := strings.Count(logs.String(), "cannot read the keyword set"); n > 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
}

func TestStopEndsGoroutine(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	base := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		f, _ := New(rdb, Options{Key: "ks", Interval: 10 * time.Millisecond, Timeout: time.Second,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		f.Start()
		time.Sleep(30 * time.Millisecond)
		f.Stop()
		f.Stop() // idempotent
	}
	rdb.Close()
	waitFor(t, 3*time.Second, func() bool { return runtime.NumGoroutine() <= base })
}

func TestNotFollowing(t *testing.T) {
	f, err := New(nil, Options{Static: []keyword.Spec{sub("x")}})
	if err != nil {
		t.Fatal(err)
	}
	f.Start()
	if err := f.Poll(context.Background()); err != nil || ids(f.Matcher()) != "substring:x" {
		t.Fatal(err, ids(f.Matcher()))
	}
	f.Stop()
}

func TestUnion(t *testing.T) {
	got := Union([]keyword.Spec{sub("a"), {Text: "B", IgnoreCase: true}}, []keyword.Spec{{Text: "b", IgnoreCase: true}, sub("a"), sub("c")})
	var s []string
	for _, k := range got {
		s = append(s, k.ID())
	}
	if strings.Join(s, ",") != "substring:a,substring/i:b,substring:c" {
		t.Fatal(s)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A Redis at maxmemory refuses writes only: the follower's plain reads (no
// MULTI, which a full Redis refuses too) still get the keyword set.
func TestReadsTheSetFromARedisOutOfMemory(t *testing.T) {
	srv := redistest.StartMaxMemory(t, 3<<20)
	rdb := srv.Client()
	ctx := context.Background()
	rdb.Set(ctx, "ks", doc(t, sub("a")), 0)
	srv.FillMemory()
	if err := rdb.Set(ctx, "probe", "x", 0).Err(); err == nil {
		t.Fatal("a write succeeded: Redis is not full")
	}
	f, err := New(rdb, Options{Static: []keyword.Spec{sub("s")}, Key: "ks", Interval: time.Hour, Timeout: time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Poll(ctx); err != nil {
		t.Fatalf("poll of a full Redis: %v", err)
	}
	if got := ids(f.Matcher()); got != "substring:s,substring:a" {
		t.Fatalf("keywords %q, want the static and the published one", got)
	}
}
