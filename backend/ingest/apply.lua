-- Applies one batch of stream entries exactly once and acknowledges it, in one
-- atomic step. Redis does not roll a script back on error, so writes that can
-- fail on foreign data are pcalls, and an entry whose count cannot be written
-- keeps no dedup id and no acknowledgement: it is reported, not half-applied.
-- Commands go per key, not per entry, and the common batch (no duplicates, no
-- failures) takes their arguments straight from ARGV: the per-entry cost of
-- Lua dominates otherwise.
--
-- KEYS[1] stream, KEYS[2] dead-letter stream, KEYS[3..] windows, seen sets,
-- sample lists; ARGV refers to them by index.
-- ARGV[1] group, [2] entries, [3] seen groups, [4] count groups,
-- [5] sample groups, [6] dead entries, [7] expire pairs, [8] ack-only ids,
-- [9] sample cap, [10] sample ttl seconds, [11] dead maxlen; then from [12]:
--   entry ids:     id x entries (entries are numbered 1..n in this order)
--   seen groups:   key, m, dedupID x m        (covering entries in order)
--   count groups:  key, field, first entry, m, sum[, counts]
--                  (entries first..first+m-1; counts, only when m > 1: their
--                  counts separated by spaces, read only if some are not
--                  counted)
--   sample groups: key, m, (entry, sample) x m   (oldest first)
--   dead:          (id, reason, fields) x dead
--   expire pairs:  (key, unixSeconds) x pairs
--   ack-only ids
-- The caller sends each dedup id once per batch.
-- Returns {flags, failures}: flags has one byte per entry, '1' counted,
-- '0' duplicate, 'x' failed (not acknowledged; failures lists index, error);
-- dead entries that could not be written are listed as "d<index>", error,
-- and stay pending.
local ARGV, KEYS, tonumber, rpcall, unpack = ARGV, KEYS, tonumber, redis.pcall, unpack
local stream, dead, group = KEYS[1], KEYS[2], ARGV[1]
local n, nseen, ncount, nsample = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ndead, nexp, nack = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local cap, sttl, dmax = tonumber(ARGV[9]), ARGV[10], ARGV[11]
local ids = 12
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
  local key, m = KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1])
  local first = i + 2
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

-- Counts: one HINCRBY per cell for all its new entries.
for g = 1, ncount do
  local key, field, first, m = KEYS[tonumber(ARGV[i])], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local sum, counts = ARGV[i + 4], nil
  i = i + 5
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
    else
      for en = first, first + m - 1 do
        if not flags[en] then
          flag(en, 'x', r.err)
        end
      end
    end
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

-- Samples of counted entries, newest ending up first.
for g = 1, nsample do
  local key, m = KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1])
  i = i + 2
  local push = {}
  for j = 1, m do
    if not flags[tonumber(ARGV[i])] then
      push[#push + 1] = ARGV[i + 1]
    end
    i = i + 2
  end
  if #push > 0 then
    rpcall('LPUSH', key, unpack(push))
    rpcall('LTRIM', key, 0, cap - 1)
    rpcall('EXPIRE', key, sttl)
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
  local id, reason, fields = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  local r = rpcall('XADD', dead, 'MAXLEN', '~', dmax, '*', 'reason', reason, 'source_id', id, 'fields', fields)
  if failed(r) then
    failures[#failures + 1] = 'd' .. d
    failures[#failures + 1] = r.err
  else
    acks[#acks + 1] = id
  end
end

for x = 1, nexp do
  rpcall('EXPIREAT', KEYS[tonumber(ARGV[i])], ARGV[i + 1])
  i = i + 2
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
