package redisguard_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/redisguard"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func newLogger() (*slog.Logger, *logbuf.Buffer) {
	buf := &logbuf.Buffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func TestStartChecksPersistence(t *testing.T) {
	for _, tc := range []struct {
		name          string
		p             redistest.Persistence
		allowVolatile bool
		wantErr       []string // in the error; nil: no error
		wantLog       []string // in the log
		notLog        string
	}{
		{name: "aof starts quietly", p: redistest.AOF, notLog: "level=WARN"},
		{name: "rdb only warns with the loss window", p: redistest.RDB,
			wantLog: []string{"level=WARN", "RDB snapshots only", "up to 60s of writes once 100 keys change", "up to 900s of writes once 1 keys change"}},
		{name: "volatile is refused with what to set", p: redistest.Volatile,
			wantErr: []string{"no persistence", "appendonly yes", "appendfsync everysec", "KEYALERT_ALLOW_VOLATILE_REDIS=true"}},
		{name: "volatile is allowed with a warning", p: redistest.Volatile, allowVolatile: true,
			wantLog: []string{"level=WARN", "no persistence", "KEYALERT_ALLOW_VOLATILE_REDIS=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartPersistence(t, tc.p)
			log, buf := newLogger()
			g, err := redisguard.New(srv.Client(), redisguard.Options{AllowVolatile: tc.allowVolatile, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			err = g.Start(context.Background())
			if tc.wantErr != nil {
				if !errors.Is(err, redisguard.ErrVolatile) {
					t.Fatalf("Start = %v, want ErrVolatile", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if g.Ready() == nil {
					t.Error("Ready after a refused start")
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if err := g.Ready(); err != nil {
				t.Errorf("Ready after start: %v", err)
			}
			for _, w := range tc.wantLog {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log does not say %q:\n%s", w, buf)
				}
			}
			if tc.notLog != "" && strings.Contains(buf.String(), tc.notLog) {
				t.Errorf("log says %q:\n%s", tc.notLog, buf)
			}
		})
	}
}

func TestInspectFallsBackToInfoWithoutConfig(t *testing.T) {
	srv := redistest.Start(t)
	// A managed Redis renames or disables CONFIG; an ACL user without it is
	// the same answer to the client.
	admin := srv.Client()
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "app", Password: "pw"})
	defer c.Close()
	nodes, err := redisguard.Inspect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Source != "INFO persistence" || nodes[0].Mode() != redisguard.ModeAOF {
		t.Errorf("Inspect = %+v, want one AOF node read by INFO persistence", nodes)
	}
}

func TestInspectChecksEveryClusterMaster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := cl.Client()
	ctx := context.Background()
	// One master turned volatile is enough to refuse.
	one := redis.NewClient(&redis.Options{Addr: cl.Servers[1].Addr()})
	defer one.Close()
	if err := one.ConfigSet(ctx, "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	nodes, err := redisguard.Inspect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 {
		t.Fatalf("Inspect found %d masters, want 3", len(nodes))
	}
	g, err := redisguard.New(c, redisguard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Start(ctx)
	if !errors.Is(err, redisguard.ErrVolatile) || !strings.Contains(err.Error(), cl.Servers[1].Addr()) {
		t.Errorf("Start = %v, want ErrVolatile naming %s", err, cl.Servers[1].Addr())
	}
}

func TestDataWipeIsDetectedWithinOneInterval(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    redistest.Persistence
		wipe func(t *testing.T, s *redistest.Server)
	}{
		{"flushall", redistest.AOF, func(t *testing.T, s *redistest.Server) {
			if err := s.Client().FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"restart of a volatile server", redistest.Volatile, func(t *testing.T, s *redistest.Server) { s.Restart() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartPersistence(t, tc.p)
			rdb := srv.Client()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			var mu sync.Mutex
			now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			log, buf := newLogger()
			store := rules.NewStore(rdb, rules.Options{}, clock, log)
			published, _ := keyword.EncodeSet([]keyword.Spec{{Text: "Exception"}, {Text: "Disk Full"}})
			if _, err := store.Publish(ctx, published); err != nil {
				t.Fatal(err)
			}

			reg := prometheus.NewRegistry()
			var republished atomic.Int32
			const interval = 50 * time.Millisecond
			g, err := redisguard.New(rdb, redisguard.Options{AllowVolatile: true, Interval: interval, UnreadyFor: time.Minute,
				Registerer: reg, Logger: log, Now: clock,
				OnLoss: func(ctx context.Context) error {
					_, err := store.RetainKeywords(ctx)
					if err == nil {
						republished.Add(1)
					}
					return err
				}})
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Start(ctx); err != nil {
				t.Fatal(err)
			}
			go g.Run(ctx)

			tc.wipe(t, srv)
			wiped := time.Now()
			var readyErr error
			for time.Since(wiped) < 5*time.Second {
				if readyErr = g.Ready(); readyErr != nil && republished.Load() > 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if readyErr == nil || !strings.Contains(readyErr.Error(), "redis lost its data") {
				t.Fatalf("Ready = %v, want the data loss", readyErr)
			}
			// Within one interval of Redis answering again, plus scheduling slack.
			if took := time.Since(wiped); tc.p == redistest.AOF && took > 4*interval {
				t.Errorf("detected %v after the wipe, want within about %v", took, interval)
			}
			if n := lossTotal(t, reg); n != 1 {
				t.Errorf("keyalert_redis_data_loss_total = %v, want 1", n)
			}
			if !strings.Contains(buf.String(), "level=ERROR") {
				t.Errorf("no error logged:\n%s", buf)
			}
			got, err := rdb.Get(ctx, rules.DefaultKeywordsKey).Bytes()
			if err != nil {
				t.Fatalf("keyword set not republished: %v", err)
			}
			specs, _ := keyword.DecodeSet(got)
			if len(specs) != 2 {
				t.Errorf("republished %s, want the 2 keywords published before", got)
			}
			// The engine's periodic publish of the (now empty) rules keeps them.
			empty, _ := rules.KeywordSet(nil)
			if _, err := store.Publish(ctx, empty); err != nil {
				t.Fatal(err)
			}
			got, _ = rdb.Get(ctx, rules.DefaultKeywordsKey).Bytes()
			if specs, _ := keyword.DecodeSet(got); len(specs) != 2 {
				t.Errorf("publishing the empty rule set after the loss left %s, want the 2 keywords of %s", got, published)
			}
			// The epoch is back, so the next checks find nothing new.
			time.Sleep(3 * interval)
			if n := lossTotal(t, reg); n != 1 {
				t.Errorf("keyalert_redis_data_loss_total = %v after re-establishing, want 1", n)
			}
			mu.Lock()
			now = now.Add(time.Minute + time.Second)
			mu.Unlock()
			if err := g.Ready(); err != nil {
				t.Errorf("Ready after UnreadyFor: %v", err)
			}
		})
	}
}

// lossTotal reads keyalert_redis_data_loss_total from reg.
func lossTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "keyalert_redis_data_loss_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("keyalert_redis_data_loss_total not registered")
	return 0
}

func TestEpochKeysShareTheirSlots(t *testing.T) {
	g, err := redisguard.New(nil, redisguard.Options{Slots: []string{"{alerts}", "{keyalert:events}", "{alerts}"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ka:{alerts}:epoch", "ka:{keyalert:events}:epoch"}
	if got := g.Keys(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Keys = %v, want %v", got, want)
	}
}
