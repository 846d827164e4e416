-- Applies one batch of stream entries exactly once and acknowledges it, in one
-- atomic step. Redis does not roll a script back on error, so writes that can
-- fail on foreign data are pcalls, and an entry whose count cannot be written
-- keeps no dedup id and no acknowledgement: it is reported, not half-applied.
-- Commands go per key, not per entry, and the common batch (no duplicates, no
-- failures) takes their arguments straight from ARGV: the per-entry cost of
-- Lua dominates otherwise.
--
-- The calling convention (which KEYS and ARGV slot holds what) is defined in
-- protocol.go; the loader prepends its constants (KEY_*, ARG_*, and the field
-- offsets SEEN_*, COUNT_*, SAMPLE_*, PICK_*, DEAD_*, EXPIRE_*) as locals, so
-- this file names every slot and numbers none. ARGV refers to the batch's
-- keys by their KEYS index. The caller sends each dedup id once per batch.
--
-- Returns {flags, failures}: flags has one byte per entry, '1' counted,
-- '0' duplicate, 'x' failed (not acknowledged; failures lists index, error);
-- dead entries that could not be written are listed as "d<index>", error,
-- and stay pending.
local ARGV, KEYS, tonumber, rpcall, unpack = ARGV, KEYS, tonumber, redis.pcall, unpack
local stream, dead, group = KEYS[KEY_STREAM], KEYS[KEY_DEAD], ARGV[ARG_GROUP]
local n, nseen = tonumber(ARGV[ARG_ENTRIES]), tonumber(ARGV[ARG_SEEN_GROUPS])
local ncount, nsample = tonumber(ARGV[ARG_COUNT_GROUPS]), tonumber(ARGV[ARG_SAMPLE_GROUPS])
local ndead, nexp, nack = tonumber(ARGV[ARG_DEAD]), tonumber(ARGV[ARG_EXPIRES]), tonumber(ARGV[ARG_ACK_ONLY])
local cap, sttl, dmax = tonumber(ARGV[ARG_SAMPLE_CAP]), ARGV[ARG_SAMPLE_TTL], ARGV[ARG_DEAD_MAXLEN]
local ids = ARG_ENTRY_IDS
local i = ids + n

-- flags holds only entries that are not counted ('0' or 'x'); nflags says
-- whether the slow paths are needed at all.
local flags, nflags, failures = {}, 0, {}
local function flag(en, f, err)
  if not flags[en] then
    nflags = nflags + 1
  end
  flags[en] = f
  if err then
    failures[#failures + 1] = tostring(en)
    failures[#failures + 1] = err
  end
end

local function failed(r)
  return type(r) == 'table' and r.err
end

-- Errors caused by the data at a key (another type, a counter at its limit)
-- fail the entries involved; any other error before the first write aborts
-- the batch untouched, to be retried.
local function dataError(err)
  return string.sub(err, 1, 9) == 'WRONGTYPE' or string.find(err, 'overflow', 1, true) ~= nil
end
local wrote = false

-- Which entries are new.
local groups = {}
local e = 0
for g = 1, nseen do
  local key, m = KEYS[tonumber(ARGV[i + SEEN_KEY])], tonumber(ARGV[i + SEEN_LEN])
  local first = i + SEEN_FIXED
  local known = rpcall('SMISMEMBER', key, unpack(ARGV, first, first + m - 1))
  if failed(known) and not dataError(known.err) then
    return redis.error_reply(known.err)
  end
  for j = 1, m do
    if failed(known) then
      flag(e + j, 'x', known.err)
    elseif known[j] == 1 then
      flag(e + j, '0')
    end
  end
  groups[g] = {key, first, m, e}
  e = e + m
  i = first + m
end

-- Rollups of each window hash (window.Keys.HostTotals/TagTotals): per-host
-- and per-tag sums and the minute's total, so that readers need not read
-- every cell. Summed per batch here, one ZINCRBY per (rollup, member) below.
local roll = {}
local function rollup(key, field, c)
  local ro = roll[key]
  if not ro then
    ro = {h = {}, t = {}, n = 0}
    roll[key] = ro
  end
  local host, tag = field, ''
  local p = string.find(field, '\0', 1, true)
  if p then
    host, tag = string.sub(field, 1, p - 1), string.sub(field, p + 1)
  end
  ro.h[host] = (ro.h[host] or 0) + c
  ro.t[tag] = (ro.t[tag] or 0) + c
  ro.n = ro.n + c
end

-- Counts: one HINCRBY per cell for all its new entries.
for g = 1, ncount do
  local key, field = KEYS[tonumber(ARGV[i + COUNT_KEY])], ARGV[i + COUNT_FIELD]
  local first, m = tonumber(ARGV[i + COUNT_FIRST]), tonumber(ARGV[i + COUNT_LEN])
  local sum, counts = ARGV[i + COUNT_SUM], nil
  i = i + COUNT_FIXED
  if m > 1 then
    counts = ARGV[i]
    i = i + 1
  end
  if nflags > 0 then
    local some = false
    for en = first, first + m - 1 do
      if flags[en] then
        some = true
      end
    end
    if some and m == 1 then
      sum = '0'
    elseif some then
      local total, en = 0, first
      for c in string.gmatch(counts, '%d+') do
        if not flags[en] then
          total = total + tonumber(c)
        end
        en = en + 1
      end
      sum = string.format('%d', total)
    end
  end
  if sum ~= '0' then
    local r = rpcall('HINCRBY', key, field, sum)
    if failed(r) and not wrote and not dataError(r.err) then
      return redis.error_reply(r.err)
    elseif not failed(r) then
      wrote = true
      rollup(key, field, tonumber(sum))
    else
      for en = first, first + m - 1 do
        if not flags[en] then
          flag(en, 'x', r.err)
        end
      end
    end
  end
end

-- A rollup is derived data: a failure to write it does not fail the entries.
for key, ro in pairs(roll) do
  local hk, tk = key .. '\0h', key .. '\0t'
  for h, c in pairs(ro.h) do
    rpcall('ZINCRBY', hk, c, h)
  end
  rpcall('ZINCRBY', hk, ro.n, '\0')
  for t, c in pairs(ro.t) do
    rpcall('ZINCRBY', tk, c, t)
  end
end

-- Dedup ids of the entries now counted.
for g = 1, nseen do
  local key, first, m, base = groups[g][1], groups[g][2], groups[g][3], groups[g][4]
  if nflags == 0 then
    redis.call('SADD', key, unpack(ARGV, first, first + m - 1))
  else
    local add = {}
    for j = 1, m do
      if not flags[base + j] then
        add[#add + 1] = ARGV[first + j - 1]
      end
    end
    if #add > 0 then
      redis.call('SADD', key, unpack(add))
    end
  end
end

-- Samples of counted entries, one list per series, newest ending up first.
for g = 1, nsample do
  local key, m = KEYS[tonumber(ARGV[i + SAMPLE_KEY])], tonumber(ARGV[i + SAMPLE_LEN])
  i = i + SAMPLE_FIXED
  local push = {}
  for j = 1, m do
    if not flags[tonumber(ARGV[i + PICK_ENTRY])] then
      push[#push + 1] = ARGV[i + PICK_LINE]
    end
    i = i + PICK_WIDTH
  end
  if #push > 0 then
    -- Lists are per series, so most are short: trim only those over the cap.
    -- The TTL is set when the push creates the list, not on every push: a
    -- busy series' list then lives one retention and is created again by
    -- its next sample, which saves an EXPIRE per series per batch.
    local len = rpcall('LPUSH', key, unpack(push))
    if type(len) == 'number' then
      if len > cap then
        rpcall('LTRIM', key, 0, cap - 1)
      end
      if len == #push then
        rpcall('EXPIRE', key, sttl)
      end
    end
  end
end

-- Acknowledge the entries not failed, then the dead ones written and the
-- ack-only ones.
if n > 0 and nflags == 0 then
  redis.call('XACK', stream, group, unpack(ARGV, ids, ids + n - 1))
elseif n > 0 then
  local acks = {}
  for en = 1, n do
    if flags[en] ~= 'x' then
      acks[#acks + 1] = ARGV[ids + en - 1]
    end
  end
  if #acks > 0 then
    redis.call('XACK', stream, group, unpack(acks))
  end
end

local acks = {}
for d = 1, ndead do
  local id, reason, fields = ARGV[i + DEAD_ID], ARGV[i + DEAD_REASON], ARGV[i + DEAD_FIELDS]
  i = i + DEAD_WIDTH
  local r = rpcall('XADD', dead, 'MAXLEN', '~', dmax, '*', 'reason', reason, 'source_id', id, 'fields', fields)
  if failed(r) then
    failures[#failures + 1] = 'd' .. d
    failures[#failures + 1] = r.err
  else
    acks[#acks + 1] = id
  end
end

for x = 1, nexp do
  local k = KEYS[tonumber(ARGV[i + EXPIRE_KEY])]
  rpcall('EXPIREAT', k, ARGV[i + EXPIRE_AT])
  if roll[k] then
    rpcall('EXPIREAT', k .. '\0h', ARGV[i + EXPIRE_AT])
    rpcall('EXPIREAT', k .. '\0t', ARGV[i + EXPIRE_AT])
  end
  i = i + EXPIRE_WIDTH
end

for a = 1, nack do
  acks[#acks + 1] = ARGV[i]
  i = i + 1
end

if #acks > 0 then
  redis.call('XACK', stream, group, unpack(acks))
end

if nflags == 0 then
  return {string.rep('1', n), failures}
end
local out = {}
for en = 1, n do
  out[en] = flags[en] or '1'
end
return {table.concat(out), failures}
