package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ChangesKey is the change-marker stream: one entry per applied batch,
// naming the (keyword id, event minute) pairs it counted. The replica that
// applied the batch writes it; the owner of a rule may be another replica,
// so an in-process feed is not enough. In the {alerts} slot with the rest
// of the engine's state.
const ChangesKey = KeyPrefix + "changes"

// changesMaxLen bounds the marker stream (approximate trimming). A reader
// that falls further behind than this loses markers: it re-reads its
// counts whole (changeFeed.lost).
const changesMaxLen = 100_000

// changesReadCount is how many markers one XRANGE reads.
const changesReadCount = 1000

// marker is the body of one change-marker entry: minutes per keyword id.
type marker map[string][]int64

// writeChanges appends one marker for the batch's keyword minutes.
func writeChanges(ctx context.Context, rdb redis.UniversalClient, m marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode change marker: %w", err)
	}
	err = rdb.XAdd(ctx, &redis.XAddArgs{Stream: ChangesKey, MaxLen: changesMaxLen, Approx: true, Values: []any{"c", b}}).Err()
	if err != nil {
		return fmt.Errorf("xadd %s: %w", ChangesKey, err)
	}
	return nil
}

// changeFeed is a reader's position in the marker stream. Used by the run
// goroutine only.
type changeFeed struct {
	last string // id of the last marker read; "" before the first read
}

// read returns the keyword minutes changed since the last read. The first
// read only takes the stream's position: a starting replica reads its
// counts whole anyway. lost says markers may have been trimmed unread.
func (f *changeFeed) read(ctx context.Context, rdb redis.UniversalClient) (changed map[string]map[int64]bool, lost bool, err error) {
	if f.last == "" {
		msgs, err := rdb.XRevRangeN(ctx, ChangesKey, "+", "-", 1).Result()
		if err != nil {
			return nil, false, fmt.Errorf("xrevrange %s: %w", ChangesKey, err)
		}
		f.last = "0-0"
		if len(msgs) > 0 {
			f.last = msgs[0].ID
		}
		return nil, true, nil
	}
	changed = map[string]map[int64]bool{}
	first := true
	for {
		msgs, err := rdb.XRangeN(ctx, ChangesKey, "("+f.last, "+", changesReadCount).Result()
		if err != nil {
			return changed, lost, fmt.Errorf("xrange %s: %w", ChangesKey, err)
		}
		if first && len(msgs) > 0 && f.last != "0-0" {
			// Trimmed past our position: the stream now starts after it.
			if oldest, err := rdb.XRangeN(ctx, ChangesKey, "-", "+", 1).Result(); err == nil && len(oldest) > 0 && idLess(f.last, oldest[0].ID) {
				lost = true
			}
		}
		first = false
		for _, m := range msgs {
			f.last = m.ID
			s, _ := m.Values["c"].(string)
			var mk marker
			if json.Unmarshal([]byte(s), &mk) != nil {
				continue
			}
			for kw, mins := range mk {
				set := changed[kw]
				if set == nil {
					set = map[int64]bool{}
					changed[kw] = set
				}
				for _, mi := range mins {
					set[mi] = true
				}
			}
		}
		if len(msgs) < changesReadCount {
			return changed, lost, nil
		}
	}
}

// idLess compares two stream ids ("ms-seq").
func idLess(a, b string) bool {
	var am, as, bm, bs uint64
	fmt.Sscanf(a, "%d-%d", &am, &as)
	fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am < bm || (am == bm && as < bs)
}

// pastHorizon notes applied entries whose minute ended more than the
// lateness horizon ago: counted, and logged at most once a minute.
type pastHorizon struct {
	n        int
	oldest   int64
	loggedAt time.Time
}
