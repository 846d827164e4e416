// Package instance is one keyalert [OUTPUT] instance — configuration, Redis
// client, keyword follower, flush path and publisher — and the registry that
// lets several instances live side by side in one Fluent Bit process. The cgo
// entry points in package main only translate C arguments and call into here,
// so everything, panic recovery included, is testable as plain Go.
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/config"
	"github.com/keyalert/keyalert/plugin/flush"
	"github.com/keyalert/keyalert/plugin/keywordsync"
	"github.com/keyalert/keyalert/plugin/publish"
	"github.com/redis/go-redis/v9"
)

// Fluent Bit's return codes (fluent-bit-go output.FLB_*); package main checks
// they agree.
const (
	FLBError = 0
	FLBOK    = 1
	FLBRetry = 2
)

// OOMLogInterval is how often an instance logs that Redis is out of memory
// while it refuses writes. A variable so tests can shorten it.
var OOMLogInterval = redisoom.DefaultInterval

// OverflowLogInterval is how often an instance at most warns that keywords
// reached Max_Series. A variable so tests can shorten it.
var OverflowLogInterval = time.Minute

// Instance is one configured output.
type Instance struct {
	Name     string
	cfg      *config.Config
	log      *slog.Logger
	rdb      redis.UniversalClient
	follower *keywordsync.Follower
	flusher  *flush.Flusher
	pub      *publish.Publisher
	oom      *redisoom.Reporter

	// overflow counts the counts sent to the overflow series since start;
	// overflowMu guards the time of the last warning about it.
	overflow       atomic.Int64
	overflowMu     sync.Mutex
	overflowWarned time.Time
	now            func() time.Time
}

// Open parses the configuration, connects the Redis client (lazily: an
// unreachable Redis is not an error here), reads the published keyword set
// once and starts following it.
func Open(name string, get config.Getter, base *slog.Logger) (*Instance, error) {
	cfg, err := config.Parse(get)
	if err != nil {
		return nil, err
	}
	log := base.With("instance", name, "stream", cfg.Stream)
	rdb := redis.NewUniversalClient(cfg.Redis)
	rdb.AddHook(redisoom.Hook{}) // an EXECABORT says it was for lack of memory
	f, err := keywordsync.New(rdb, keywordsync.Options{
		Static:   cfg.Keywords,
		Key:      cfg.RulesKey,
		Interval: cfg.RulesInterval,
		Timeout:  cfg.RedisTimeout,
		Log:      log,
	})
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("%s: %w", config.KeyKeywords, err)
	}
	in := &Instance{
		Name:     name,
		cfg:      cfg,
		log:      log,
		rdb:      rdb,
		follower: f,
		flusher: flush.New(flush.Options{
			Keys:        cfg.Keys,
			AllKeys:     cfg.AllKeys,
			HostnameKey: cfg.HostnameKey,
			Hostname:    cfg.Hostname,
			Samples:     cfg.Samples,
			// The config's bound is at least 1, so flush's zero default never applies.
			SamplesPerFlush: cfg.SamplesPerFlush,
			Identity:        cfg.Identity(),
			Labels:          flushLabels(cfg.LabelKeys),
			NoTag:           !cfg.TagLabel,
			TagRegex:        cfg.TagRegex,
			MaxSeries:       cfg.MaxSeries,
		}),
		now: time.Now,
		pub: publish.NewWith(rdb, cfg.Stream, publish.Options{MaxLen: cfg.MaxLen, Shards: f.Shards,
			WaitReplicas: cfg.WaitReplicas, WaitTimeout: cfg.WaitTimeout}),
		oom: redisoom.NewReporter(rdb, log, OOMLogInterval, nil),
	}
	f.Start()
	keys := "*"
	if !cfg.AllKeys {
		keys = fmt.Sprint(cfg.Keys)
	}
	log.Info("keyalert output started",
		"redis", cfg.RedisURL, "keywords", len(cfg.Keywords), "effective_keywords", f.Matcher().Len(),
		"rules_key", cfg.RulesKey, "keys", keys, "hostname", cfg.Hostname, "hostname_key", cfg.HostnameKey.String(),
		"samples", cfg.Samples, "samples_per_flush", cfg.SamplesPerFlush, "max_len", cfg.MaxLen,
		"labels", strings.Join(cfg.LabelNames(), ","), "tag_label", cfg.TagLabel, "max_series", cfg.MaxSeries,
		"stream_shards", f.Shards(), "wait_replicas", cfg.WaitReplicas)
	return in, nil
}

func flushLabels(keys []config.LabelKey) []flush.Label {
	out := make([]flush.Label, len(keys))
	for i, k := range keys {
		out[i] = flush.Label{Name: k.Name, Path: k.Path}
	}
	return out
}

// noteOverflow counts a flush's overflow and warns at most once per
// OverflowLogInterval, naming the flush's keywords and the limit.
func (in *Instance) noteOverflow(res *flush.Result, tag string) {
	if res.Overflow == 0 {
		return
	}
	total := in.overflow.Add(res.Overflow)
	in.overflowMu.Lock()
	now := in.now()
	warn := in.overflowWarned.IsZero() || now.Sub(in.overflowWarned) >= OverflowLogInterval
	if warn {
		in.overflowWarned = now
	}
	in.overflowMu.Unlock()
	if warn {
		in.log.Warn("series limit reached: further counts of these keywords in the flush went to the overflow series (host, tag and labels "+
			stream.OverflowValue+"); raise "+config.KeyMaxSeries+" or drop a label with many values",
			"keywords", strings.Join(res.OverflowKeywords, ","), "max_series", in.cfg.MaxSeries, "tag", tag,
			"overflow", res.Overflow, "overflow_total", total)
	}
}

// OverflowTotal is how many counts went to the overflow series since start.
func (in *Instance) OverflowTotal() int64 { return in.overflow.Load() }

// Flush counts the keywords in one chunk and publishes the entries. It returns
// FLBOK, FLBRetry when Redis failed (Fluent Bit retries the whole chunk; the
// backend drops entries it already has), or FLBError for a chunk that cannot
// be decoded, after publishing what decoded before the break.
func (in *Instance) Flush(data []byte, tag string) int {
	m := in.follower.Matcher()
	if m.Len() == 0 {
		in.log.Debug("no keywords in effect; chunk not scanned", "tag", tag, "bytes", len(data))
		return FLBOK
	}
	res := in.flusher.Process(m, data, tag)
	in.noteOverflow(&res, tag)
	if res.Skipped > 0 {
		in.log.Warn("skipped events that are not [timestamp, map] records", "tag", tag, "skipped", res.Skipped)
	}
	if len(res.Entries) > 0 {
		timeout := in.cfg.RedisTimeout
		if in.cfg.WaitReplicas > 0 {
			timeout += in.cfg.WaitTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := in.pub.Publish(ctx, res.Entries)
		cancel()
		// A full Redis refuses every chunk until memory is freed: one named
		// line per interval, not one per chunk. The chunk is retried.
		if in.oom.Note(context.Background(), err, "tag", tag, "entries", len(res.Entries)) {
			return FLBRetry
		}
		if errors.Is(err, publish.ErrReplicas) {
			in.log.Warn("too few replicas acknowledged the chunk; Fluent Bit will retry it (a copy already counted is dropped)",
				"tag", tag, "batch", res.Batch, "entries", len(res.Entries), "wait_replicas", in.cfg.WaitReplicas, "err", err)
			return FLBRetry
		}
		if err != nil {
			in.log.Error("publish failed; Fluent Bit will retry the chunk", "tag", tag, "batch", res.Batch,
				"entries", len(res.Entries), "err", err)
			return FLBRetry
		}
	}
	if res.Err != nil {
		in.log.Error("chunk cannot be decoded; dropping the rest of it", "tag", tag, "batch", res.Batch,
			"err", res.Err, "bytes", len(data),
			"note", fmt.Sprintf("counts of the %d events before the break were published (%d entries)", res.Events, len(res.Entries)))
		return FLBError
	}
	in.log.Debug("flushed", "tag", tag, "batch", res.Batch, "events", res.Events, "matched", res.Matched,
		"entries", len(res.Entries), "markers", res.Markers, "overflow", res.Overflow, "overflow_total", in.overflow.Load())
	return FLBOK
}

// Close stops the keyword follower and closes the Redis client; after it the
// instance leaves no goroutine behind.
func (in *Instance) Close() error {
	in.follower.Stop()
	err := in.rdb.Close()
	if errors.Is(err, redis.ErrClosed) {
		err = nil
	}
	in.log.Info("keyalert output stopped")
	return err
}
