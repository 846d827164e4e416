package ingest

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// trimScanMax bounds the entries the trim check lists when the group is
// neither caught up nor behind the stream's first entry: past it the check
// waits for a later round (it costs Redis a few microseconds per entry).
const trimScanMax = 1000

// trimCheckScript finds the entries that left the stream (trimmed by the
// plugin's XADD MAXLEN, or deleted) before the group read them, and resets
// the group's entries-read counter so that Redis's lag counts only the
// entries still there to read. One atomic step, so replicas checking the
// same stream count each loss once.
//
// Redis 7 keeps entries-added (every entry ever added) and the group's
// entries-read (exact while the group reads in order with no XDEL tombstone
// ahead of it); its lag is their difference, which trimming does not
// change: a trim does not even move max-deleted-entry-id. So the entries
// lost unread are entries-added - entries-read - the entries still in the
// stream after the group's last-delivered-id. Those are counted cheaply in
// three cases: none (last-delivered-id is the stream's last id), all of them
// (last-delivered-id is before the first entry), or up to ARGV[2] listed;
// otherwise the check answers "behind" and is tried again later. It answers
// "unknown" when entries-read is (Redis after an XDEL ahead of the group, or
// a group created on a non-empty stream that has not read yet), and "old"
// on Redis before 7.0, which has no counters.
//
// KEYS[1] stream; ARGV[1] group, ARGV[2] most entries to list.
// Returns {lost, lag (-1 unknown), pending, state, last-delivered-id,
// first-entry-id}; state is "ok", "behind", "unknown", "old" or "nogroup".
var trimCheckScript = redis.NewScript(`
local function field(t, name)
  for i = 1, #t, 2 do
    if t[i] == name then return t[i + 1] end
  end
end
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local g
for _, x in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  if field(x, 'name') == ARGV[1] then g = x break end
end
if not g then return {0, -1, 0, 'nogroup', '', ''} end
local pending, lag, last = field(g, 'pending'), field(g, 'lag') or -1, field(g, 'last-delivered-id')
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local added, length, lastGen, first = field(info, 'entries-added'), field(info, 'length'), field(info, 'last-generated-id'), field(info, 'first-entry')
local firstID = ''
if first then firstID = first[1] end
if not added then return {0, lag, pending, 'old', last, firstID} end
local read = field(g, 'entries-read')
if not read and last == '0-0' then read = 0 end
if not read then return {0, lag, pending, 'unknown', last, firstID} end
local unread
if length == 0 or last == lastGen then
  unread = 0
elseif firstID ~= '' and before(last, firstID) then
  unread = length
else
  local cap = tonumber(ARGV[2])
  local after = redis.call('XREVRANGE', KEYS[1], '+', '(' .. last, 'COUNT', cap + 1)
  if #after > cap then return {0, lag, pending, 'behind', last, firstID} end
  unread = #after
end
local lost = added - read - unread
if lost <= 0 then return {0, lag, pending, 'ok', last, firstID} end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', added - unread)
return {lost, unread, pending, 'ok', last, firstID}
`)

// trimCheck is one answer of trimCheckScript.
type trimCheck struct {
	lost, lag, pending int64
	state              string
	lastDelivered      string
	firstEntry         string
}

func (c *Consumer) checkTrimmed(ctx context.Context) (trimCheck, error) {
	v, err := trimCheckScript.Run(ctx, c.o.Client, []string{c.o.Stream}, c.o.Group, trimScanMax).Slice()
	if err != nil {
		return trimCheck{}, fmt.Errorf("trim check %s %s: %w", c.o.Stream, c.o.Group, err)
	}
	if len(v) != 6 {
		return trimCheck{}, fmt.Errorf("trim check %s %s: %d values in the reply, want 6", c.o.Stream, c.o.Group, len(v))
	}
	var r trimCheck
	for i, p := range []*int64{&r.lost, &r.lag, &r.pending} {
		n, ok := v[i].(int64)
		if !ok {
			return trimCheck{}, fmt.Errorf("trim check %s %s: value %d is %T, want an integer", c.o.Stream, c.o.Group, i, v[i])
		}
		*p = n
	}
	r.state, _ = v[3].(string)
	r.lastDelivered, _ = v[4].(string)
	r.firstEntry, _ = v[5].(string)
	return r, nil
}

// refreshGauges checks for entries trimmed unread, reports them, and sets
// the lag and pending gauges.
func (c *Consumer) refreshGauges(ctx context.Context) {
	r, err := c.checkTrimmed(ctx)
	if err != nil {
		c.m.errors.WithLabelValues("info").Inc()
		return
	}
	if r.lost > 0 {
		c.m.trimmed.WithLabelValues(c.o.Stream).Add(float64(r.lost))
		c.log.Error("stream entries were trimmed before the consumer group read them: their counts are lost; raise the plugin's Max_Len, add stream shards (KEYALERT_STREAM_SHARDS), or keep keyalertd up",
			"lost", r.lost, "lost_is", "exact unless entries were XDELed from the stream",
			"last_delivered_id", r.lastDelivered, "first_entry_id", r.firstEntry)
	}
	if r.state == "nogroup" {
		return
	}
	c.m.setGauges(c, float64(r.lag), float64(r.pending))
}
