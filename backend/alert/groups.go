package alert

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Group memory: every group an absence rule (grouped by host or tag) has
// seen, with the first and last event minute it had a count in, until
// forget_after passes without a count. It lives in Redis, so a group that
// falls silent while keyalertd is down (or before this replica took the
// rule's shard) is still missed afterwards. A group never seen is never
// missed: nothing says it should exist.
const groupsPrefix = KeyPrefix + "groups:"

// groupKeys are the rule's last-seen and first-seen sorted sets (member:
// group, score: Unix minute), in the {alerts} slot so one script updates both.
func groupKeys(ruleID string) []string {
	return []string{groupsPrefix + ruleID + ":last", groupsPrefix + ruleID + ":first"}
}

// rememberScript adds the seen groups (a new one only while the rule has
// fewer than max), seeds groups of tracked alerts missing from memory, drops
// groups last seen before the forget minute, refreshes the keys' TTL (so a
// deleted rule's memory goes too) and returns {dropped, forgotten, last
// (member, score pairs), first (pairs)}.
//
// ARGV: max, forgetBefore, ttl ms, n seen, n × (first, last, group), then
// (minute, group) seeds.
var rememberScript = redis.NewScript(`
local last, first = KEYS[1], KEYS[2]
local max, before, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local card = redis.call('ZCARD', last)
local dropped = 0
local i = 5
for _ = 1, n do
  local f, l, g = tonumber(ARGV[i]), tonumber(ARGV[i+1]), ARGV[i+2]
  i = i + 3
  local s = redis.call('ZSCORE', last, g)
  if s then
    if tonumber(s) < l then redis.call('ZADD', last, l, g) end
    local fs = redis.call('ZSCORE', first, g)
    if not fs or tonumber(fs) > f then redis.call('ZADD', first, f, g) end
  elseif card < max then
    redis.call('ZADD', last, l, g)
    redis.call('ZADD', first, f, g)
    card = card + 1
  else
    dropped = dropped + 1
  end
end
while i < #ARGV do
  local m, g = ARGV[i], ARGV[i+1]
  i = i + 2
  if not redis.call('ZSCORE', last, g) then
    redis.call('ZADD', last, m, g)
    redis.call('ZADD', first, m, g)
  end
end
local gone = redis.call('ZRANGEBYSCORE', last, '-inf', '(' .. before)
for _, g in ipairs(gone) do
  redis.call('ZREM', last, g)
  redis.call('ZREM', first, g)
end
redis.call('PEXPIRE', last, ttl)
redis.call('PEXPIRE', first, ttl)
return {dropped, gone, redis.call('ZRANGE', last, 0, -1, 'WITHSCORES'), redis.call('ZRANGE', first, 0, -1, 'WITHSCORES')}
`)

// memReq is one rule's update of its group memory.
type memReq struct {
	ruleID       string
	seen         map[string]seen
	seeds        map[string]int64 // tracked alerts' groups: minute to assume if not remembered
	forgetBefore int64
	ttl          time.Duration
}

// memResult is a rule's group memory after the update.
type memResult struct {
	groups    map[string]seen
	forgotten []string
	dropped   int // new groups not remembered: the rule is at max groups
}

// remember updates the group memory of each request in one pipeline.
func remember(ctx context.Context, rdb redis.UniversalClient, reqs []memReq, maxGroups int) ([]memResult, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	run := func(useSha bool) ([]*redis.Cmd, error) {
		cmds := make([]*redis.Cmd, len(reqs))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range reqs {
				args := make([]any, 0, 4+3*len(r.seen)+2*len(r.seeds))
				args = append(args, maxGroups, r.forgetBefore, r.ttl.Milliseconds(), len(r.seen))
				for g, s := range r.seen {
					args = append(args, s.first, s.last, g)
				}
				for g, m := range r.seeds {
					if _, ok := r.seen[g]; !ok {
						args = append(args, m, g)
					}
				}
				if useSha {
					cmds[i] = rememberScript.EvalSha(ctx, p, groupKeys(r.ruleID), args...)
				} else {
					cmds[i] = rememberScript.Eval(ctx, p, groupKeys(r.ruleID), args...)
				}
			}
			return nil
		})
		return cmds, err
	}
	cmds, err := run(true)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		cmds, err = run(false)
	}
	if err != nil {
		return nil, fmt.Errorf("update group memory: %w", err)
	}
	out := make([]memResult, len(reqs))
	for i, c := range cmds {
		res, err := parseMem(c.Val())
		if err != nil {
			return nil, fmt.Errorf("group memory of rule %s: %w", reqs[i].ruleID, err)
		}
		out[i] = res
	}
	return out, nil
}

func parseMem(v any) (memResult, error) {
	var res memResult
	parts, ok := v.([]any)
	if !ok || len(parts) != 4 {
		return res, errors.New("unexpected script reply")
	}
	d, _ := parts[0].(int64)
	res.dropped = int(d)
	gone, _ := parts[1].([]any)
	for _, g := range gone {
		s, _ := g.(string)
		res.forgotten = append(res.forgotten, s)
	}
	res.groups = map[string]seen{}
	pairs := func(x any, set func(g string, m int64)) error {
		l, _ := x.([]any)
		for j := 0; j+1 < len(l); j += 2 {
			g, _ := l[j].(string)
			sc, _ := l[j+1].(string)
			m, err := strconv.ParseFloat(strings.TrimSpace(sc), 64)
			if err != nil {
				return fmt.Errorf("score of %q: %w", g, err)
			}
			set(g, int64(m))
		}
		return nil
	}
	if err := pairs(parts[2], func(g string, m int64) { s := res.groups[g]; s.last = m; res.groups[g] = s }); err != nil {
		return res, err
	}
	err := pairs(parts[3], func(g string, m int64) { s := res.groups[g]; s.first = m; res.groups[g] = s })
	return res, err
}

// rememberLocal is remember for replay, on an in-memory map: the same rules
// as rememberScript.
func rememberLocal(mem map[string]seen, seenNow map[string]seen, forgetBefore int64, maxGroups int) (forgotten []string, dropped int) {
	for g, s := range seenNow {
		if cur, ok := mem[g]; ok {
			mem[g] = seen{min(cur.first, s.first), max(cur.last, s.last)}
		} else if len(mem) < maxGroups {
			mem[g] = s
		} else {
			dropped++
		}
	}
	for g, s := range mem {
		if s.last < forgetBefore {
			forgotten = append(forgotten, g)
			delete(mem, g)
		}
	}
	return forgotten, dropped
}

// seedMinute is the minute a tracked alert's group is remembered from when
// memory lacks it: when its episode (or pending spell) started.
func seedMinute(a *Alert) int64 {
	start := a.StartedAt
	if a.State == Pending || start.IsZero() {
		start = a.PendingSince
	}
	if start.IsZero() {
		start = a.UpdatedAt
	}
	return floorMinute(start.Unix())
}
