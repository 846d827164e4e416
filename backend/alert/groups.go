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
// group, score: Unix minute) and the memory's version (INCR on every
// update), in the {alerts} slot so one script updates them.
func groupKeys(ruleID string) []string {
	return []string{groupsPrefix + ruleID + ":last", groupsPrefix + ruleID + ":first", groupsPrefix + ruleID + ":v"}
}

// rememberScript adds the seen groups (a new one only while the rule has
// fewer than max), seeds groups of tracked alerts missing from memory, drops
// groups last seen before the forget minute, refreshes the keys' TTL (so a
// deleted rule's memory goes too) and bumps the version. It returns
// {dropped groups, forgotten groups, new version} and, unless the version
// before the update was the caller's (its copy is current, and it applies
// its own update to it), the whole memory: {…, last (member, score pairs),
// first (pairs)}. So a replica that keeps owning the rule sends and reads
// only what changed, however many groups are remembered.
//
// ARGV: max, forgetBefore, ttl ms, expected version (-1: read it all), n
// seen, n × (first, last, group), then (minute, group) seeds.
var rememberScript = redis.NewScript(`
local last, first, ver = KEYS[1], KEYS[2], KEYS[3]
local max, before, ttl, expect, n = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local v = tonumber(redis.call('GET', ver) or '0')
local card = redis.call('ZCARD', last)
local dropped = {}
local i = 6
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
    dropped[#dropped+1] = g
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
local nv = redis.call('INCR', ver)
redis.call('PEXPIRE', last, ttl)
redis.call('PEXPIRE', first, ttl)
redis.call('PEXPIRE', ver, ttl)
if expect == v then
  return {dropped, gone, nv}
end
return {dropped, gone, nv, redis.call('ZRANGE', last, 0, -1, 'WITHSCORES'), redis.call('ZRANGE', first, 0, -1, 'WITHSCORES')}
`)

// memReq is one rule's update of its group memory.
type memReq struct {
	ruleID       string
	seen         map[string]seen
	seeds        map[string]int64 // tracked alerts' groups: minute to assume if not remembered
	forgetBefore int64
	ttl          time.Duration
	// version is the memory version the caller's copy reflects; -1 to
	// read the whole memory back.
	version int64
}

// memResult is a rule's group memory after the update: groups is nil when
// the caller's copy was current (full false); it then applies the update
// to its copy (memEntry.apply).
type memResult struct {
	full      bool
	groups    map[string]seen
	version   int64
	forgotten []string
	dropped   []string // new groups not remembered: the rule is at max groups
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
				args := make([]any, 0, 5+3*len(r.seen)+2*len(r.seeds))
				args = append(args, maxGroups, r.forgetBefore, r.ttl.Milliseconds(), r.version, len(r.seen))
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
	if !ok || (len(parts) != 3 && len(parts) != 5) {
		return res, errors.New("unexpected script reply")
	}
	names := func(x any) []string {
		l, _ := x.([]any)
		out := make([]string, 0, len(l))
		for _, g := range l {
			s, _ := g.(string)
			out = append(out, s)
		}
		return out
	}
	res.dropped = names(parts[0])
	res.forgotten = names(parts[1])
	res.version, _ = parts[2].(int64)
	if len(parts) == 3 {
		return res, nil
	}
	res.full = true
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
	if err := pairs(parts[3], func(g string, m int64) { s := res.groups[g]; s.last = m; res.groups[g] = s }); err != nil {
		return res, err
	}
	err := pairs(parts[4], func(g string, m int64) { s := res.groups[g]; s.first = m; res.groups[g] = s })
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
