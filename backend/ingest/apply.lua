-- Applies one batch of stream entries exactly once and moves the cursor past
-- it or acknowledges it, in one atomic step. Exactly once rests on two checks
-- before any count is written:
--
-- * the cursor (batches read by XRANGE, ARG_CURSOR_PREV set): the group's
--   last-delivered-id must still be the id the batch was read after; it is
--   moved to the batch's last id at the end. See "Cursor mode" below.
-- * ownership (batches delivered by the group): an entry is applied only if it is still pending in the group.
--   Entries read as new are delivered once; another batch can hold them
--   only through a read that delivers them again (a claim, a re-read of a
--   consumer's pending entries), and consumers bump the group's fence
--   before each such read. So if the fence has not moved since a batch of
--   new entries was read (the common path: one GET), every entry is still
--   its reader's alone. Otherwise, and always for batches read again (their
--   fence is ""), XPENDING lists the consumer's pending entries in the
--   batch's id range and only those are applied: the others were claimed by
--   another consumer, or applied and acknowledged by another batch.
--   Nothing is taken from anyone here, so the fence need not move.
-- * retries: a chunk the plugin wrote again after a lost reply has the same
--   batch and producer but another attempt (version 3). Each producer keeps
--   chunk -> attempt of the chunks applied in the dedup window, in two
--   generations; a chunk recorded under another attempt is a retry. Entries
--   of the recorded attempt count: they are parts of the one write read in
--   several batches (an attempt is written once, see stream.Entry.Attempt). Version 1
--   and 2 entries keep one dedup id per entry in the seen sets, for the same
--   window.
--
-- Redis does not roll a script back on error, so writes that can fail on
-- foreign data are pcalls, and an entry whose count cannot be written keeps
-- no acknowledgement: it is reported, not half-applied.
-- Commands go per key, not per entry, and the common batch (no duplicates, no
-- failures) takes their arguments straight from ARGV: the per-entry cost of
-- Lua dominates otherwise.
--
-- The calling convention (which KEYS and ARGV slot holds what) is defined in
-- protocol.go; the loader prepends its constants (KEY_*, ARG_*, the field
-- offsets SEEN_*, COUNT_*, SAMPLE_*, DEAD_*, EXPIRE_*, and
-- HOST_SUMS_MAX) as locals, so
-- this file names every slot and numbers none. ARGV refers to the batch's
-- keys by their KEYS index. The caller sends each dedup id once per batch.
--
-- Returns {flags, failures, overflow}: overflow lists window key, entries
-- pairs of the counts that went to an overflow series; flags has one byte per entry, '1' counted,
-- '0' duplicate, 'o' not pending any more (another consumer has it), 'x'
-- failed (not acknowledged; failures lists index, error); dead entries that
-- could not be written are listed as "d<index>", error, and stay pending;
-- those no longer the consumer's as "s<index>", and are left alone.
local ARGV, KEYS, tonumber, rpcall, unpack = ARGV, KEYS, tonumber, redis.pcall, unpack
local stream, dead, group = KEYS[KEY_STREAM], KEYS[KEY_DEAD], ARGV[ARG_GROUP]
local n, nseen, nprod = tonumber(ARGV[ARG_ENTRIES]), tonumber(ARGV[ARG_SEEN_GROUPS]), tonumber(ARGV[ARG_PRODUCERS])
local ncount, nsample = tonumber(ARGV[ARG_COUNT_GROUPS]), tonumber(ARGV[ARG_SAMPLE_GROUPS])
local ndead, nexp, nack = tonumber(ARGV[ARG_DEAD]), tonumber(ARGV[ARG_EXPIRES]), tonumber(ARGV[ARG_ACK_ONLY])
local cap, sttl, dmax = tonumber(ARGV[ARG_SAMPLE_CAP]), ARGV[ARG_SAMPLE_TTL], ARGV[ARG_DEAD_MAXLEN]
local maxSeries = tonumber(ARGV[ARG_MAX_SERIES])
local now, win, half = tonumber(ARGV[ARG_NOW]), tonumber(ARGV[ARG_DEDUP_WINDOW]), math.floor(tonumber(ARGV[ARG_DEDUP_MAX]) / 2)
local ids = ARG_ENTRY_IDS
local i = ids + n

-- flags holds only entries that are not counted ('0', 'o' or 'x'); nflags
-- says whether the slow paths are needed at all. 'o' is final: an entry that
-- is not this consumer's is neither counted, nor deduplicated, nor acked.
local flags, nflags, failures = {}, 0, {}
local function flag(en, f, err)
  if flags[en] == 'o' then
    return
  end
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

-- Which entries are still this consumer's to apply. Entries past the
-- listing's bound count as not its own: they stay pending, and are applied
-- later by whoever then holds them.
local fenceMoved
local function moved()
  if fenceMoved == nil then
    fenceMoved = (redis.call('GET', KEYS[KEY_FENCE]) or '0') ~= ARGV[ARG_FENCE]
  end
  return fenceMoved
end
-- Cursor mode: the batch was read with XRANGE after the group's
-- last-delivered-id, not delivered by the group, so nothing of it is pending
-- and there is nothing to own or acknowledge per entry. It applies only if
-- that id is still the one it was read after (another reader, or this
-- batch sent before, moved it otherwise), and moves it to the batch's last
-- id at the end, with the counts: the group's id is the cursor, and
-- XREADGROUP of an older keyalertd moves the same id, so both can run.
local cursorPrev, cursorRead = ARGV[ARG_CURSOR_PREV], nil
local cursorMode = cursorPrev ~= ''
if cursorMode then
  local cur
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local name, last, rd, lag
    for k = 1, #g, 2 do
      local f = g[k]
      if f == 'name' then name = g[k + 1] elseif f == 'last-delivered-id' then last = g[k + 1]
      elseif f == 'entries-read' then rd = g[k + 1] elseif f == 'lag' then lag = g[k + 1] end
    end
    if name == group then
      cur, cursorRead = last, rd
      -- A group created at 0 on a stream with entries has no entries-read
      -- until it reads: derive it from the lag Redis can still tell, so
      -- that SETID keeps the lag (and the trim check) right.
      if type(rd) ~= 'number' and type(lag) == 'number' then
        local si = redis.call('XINFO', 'STREAM', stream)
        for k = 1, #si, 2 do
          if si[k] == 'entries-added' then
            cursorRead = si[k + 1] - lag
          end
        end
      end
      break
    end
  end
  if cur ~= cursorPrev then
    return {'c', cur or ''}
  end
end

local nown = n
if n > 0 and not cursorMode and moved() then
  local mine = redis.call('XPENDING', stream, group, ARGV[ARG_FIRST_ID], ARGV[ARG_LAST_ID], ARGV[ARG_PENDING_MAX], ARGV[ARG_CONSUMER])
  local owned = {}
  for _, p in ipairs(mine) do
    owned[p[1]] = true
  end
  for en = 1, n do
    if not owned[ARGV[ids + en - 1]] then
      flag(en, 'o')
      nown = nown - 1
    end
  end
end

-- Which version 1 and 2 entries are new.
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

-- Which version 3 chunks are new, per producer. A producer's state holds its
-- current generation g, when it started and how many chunks it holds; the
-- chunks applied are in generations g and g-1. A generation is closed after
-- the window or half the most chunks kept per producer, whichever comes
-- first, and g-2 is dropped then: a chunk id is kept for at least the window
-- unless its producer applied half the limit of chunks since, and a producer
-- never holds more than about the limit.
--
-- A generation is cut into shards, hashes small enough for Redis to keep as
-- listpacks, by the chunk id's last two bytes; the state records the shard
-- counts of g (s) and g-1 (q). A count of 0 or 1 is one hash named
-- Producer:g, which is also what a state written before shards holds.
local function someOwned(list)
  for en in string.gmatch(list, '%d+') do
    if flags[tonumber(en)] ~= 'o' then
      return true
    end
  end
  return false
end
local function flagAll(list, f, err)
  for en in string.gmatch(list, '%d+') do
    flag(tonumber(en), f, err)
  end
end
local newShards = tonumber(ARGV[ARG_DEDUP_SHARDS])
-- listOf is by[k], a list created (and k appended to order) on first use:
-- grouping that keeps the groups in the order they first came.
local function listOf(by, order, k)
  local l = by[k]
  if not l then
    l = {}
    by[k] = l
    order[#order + 1] = k
  end
  return l
end

local function shardKey(key, gen, shards, id)
  if shards <= 1 then
    return key .. ':' .. gen
  end
  local a, b = string.byte(id, -2, -1)
  return key .. ':' .. gen .. ':' .. (((a or 0) * 256 + (b or 0)) % shards)
end
-- HMGETs the chunk ids cids of generation gen from their shards into got
-- (by position); returns an error reply if one fails.
local function lookup(key, gen, shards, cids, got)
  local by, order = {}, {}
  for c = 1, #cids do
    local l = listOf(by, order, shardKey(key, gen, shards, cids[c]))
    l[#l + 1] = c
  end
  for _, k in ipairs(order) do
    local l, ask = by[k], {}
    for j = 1, #l do
      ask[j] = cids[l[j]]
    end
    local r = rpcall('HMGET', k, unpack(ask))
    if failed(r) then
      return r
    end
    for j = 1, #l do
      got[l[j]] = r[j]
    end
  end
  return nil
end
for p = 1, nprod do
  local key, m = KEYS[tonumber(ARGV[i + PROD_KEY])], tonumber(ARGV[i + PROD_LEN])
  local first = i + PROD_FIXED
  i = first + m * CHUNK_WIDTH
  -- The chunks with an entry this consumer owns: on the common path, all.
  local cids, atts, lists = {}, {}, {}
  for c = first, i - 1, CHUNK_WIDTH do
    if nown == n or someOwned(ARGV[c + CHUNK_ENTRIES]) then
      cids[#cids + 1], atts[#cids + 1], lists[#cids + 1] = ARGV[c + CHUNK_ID], ARGV[c + CHUNK_ATTEMPT], ARGV[c + CHUNK_ENTRIES]
    end
  end
  local st = #cids > 0 and rpcall('HMGET', key, 'g', 't', 'n', 's', 'q')
  if failed(st) then
    if not dataError(st.err) then
      return redis.error_reply(st.err)
    end
    for c = 1, #cids do
      flagAll(lists[c], 'x', st.err)
    end
  elseif st then
    local g, t0, size = tonumber(st[1]) or 0, tonumber(st[2]), tonumber(st[3]) or 0
    local s, q = tonumber(st[4]) or 0, tonumber(st[5]) or 0
    if not t0 then
      t0, size, s, q = now, 0, newShards, 0
    elseif now - t0 >= win or size >= half then
      if q <= 1 then
        redis.call('UNLINK', key .. ':' .. (g - 1))
      else
        local drop = {}
        for x = 0, q - 1 do
          drop[#drop + 1] = key .. ':' .. (g - 1) .. ':' .. x
        end
        redis.call('UNLINK', unpack(drop))
      end
      g, t0, size, q, s = g + 1, now, 0, s, newShards
    end
    local a, b = {}, {}
    local err = lookup(key, g, s, cids, a) or lookup(key, g - 1, q, cids, b)
    if err then
      if not dataError(err.err) then
        return redis.error_reply(err.err)
      end
      for c = 1, #cids do
        flagAll(lists[c], 'x', err.err)
      end
    else
      local known, put, order, added = {}, {}, {}, 0
      for c = 1, #cids do
        local id, at = cids[c], atts[c]
        local was = known[id] or a[c] or b[c]
        if not was then
          known[id] = at
          local l = listOf(put, order, shardKey(key, g, s, id))
          l[#l + 1] = id
          l[#l + 1] = at
          added = added + 1
        elseif was ~= at then
          -- A retry of a chunk applied under another attempt. Parts of one
          -- attempt read in several batches all have its attempt: counted.
          flagAll(lists[c], '0')
        end
      end
      for _, k in ipairs(order) do
        redis.call('HSET', k, unpack(put[k]))
        redis.call('EXPIREAT', k, t0 + 2 * win)
      end
      size = size + added
      redis.call('HSET', key, 'g', g, 't', t0, 'n', size, 's', s, 'q', q)
      redis.call('EXPIREAT', key, now + 2 * win)
    end
  end
end

-- Rollups of each window hash (window.Keys.HostSums/TagTotals/
-- LabelTotals): per-host, per-tag and per-label-value sums and the minute's
-- total, so that readers need not read every cell. The host sums are a
-- hash (window.Keys.HostSums) while they fit Redis's compact encoding:
-- Redis keeps a hash of up to 512 fields (its default
-- hash-max-listpack-entries) as a listpack, ~13 bytes a host, where a zset
-- past 128 members is a skiplist, ~100. Past HOST_SUMS_MAX fields the hash
-- is moved into the zset window.Keys.HostTotals, which takes the minute's
-- further counts: readers add up both, and a top by host sums large
-- minutes with ZUNIONSTORE. Summed per batch here,
-- one HINCRBY or ZINCRBY per (rollup, member) below. A field is host NUL tag, then
-- NUL name=value per label (window.Field). Minutes of one tag without
-- labels keep no per-host sums (host-keyed, below).
local roll = {}
local function rollup(key, field, c)
  local ro = roll[key]
  if not ro then
    ro = {h = {}, t = {}, n = 0, l = {}, lc = {}, labelled = 0}
    roll[key] = ro
  end
  local host, tag, rest = field, '', nil
  local p = string.find(field, '\0', 1, true)
  if p then
    host, tag = string.sub(field, 1, p - 1), string.sub(field, p + 1)
    local q = string.find(tag, '\0', 1, true)
    if q then
      tag, rest = string.sub(tag, 1, q - 1), string.sub(tag, q + 1)
    end
  end
  ro.h[host] = (ro.h[host] or 0) + c
  ro.t[tag] = (ro.t[tag] or 0) + c
  ro.n = ro.n + c
  if rest then
    ro.labelled = ro.labelled + c
    for name, value in string.gmatch(rest .. '\0', '([^=%z]+)=([^%z]*)%z') do
      local lv = ro.l[name]
      if not lv then
        lv = {}
        ro.l[name] = lv
      end
      lv[value] = (lv[value] or 0) + c
      ro.lc[name] = (ro.lc[name] or 0) + c
    end
  end
end

-- Pieces: a keyword-minute past HOST_SUMS_MAX cells would leave Redis's
-- compact hash encoding (a hashtable: ~72-88 bytes a cell instead of
-- ~20-40). Its cells are then moved into PIECES hashes
-- window.Keys.Piece(i), i = window.PieceOf(host) (djb2 of the host mod the
-- pieces), so all cells of a host are in one piece; the host sums record
-- the count (\0P) and the cells in the pieces (\0N, which the guard counts
-- and readers charge). Pieces expire with the window: each gets the
-- window's EXPIREAT when a batch creates a field in it.
local PIECES = 64
if maxSeries > 0 then
  PIECES = math.min(256, math.max(16, math.ceil(maxSeries / 400)))
end
local hashOf = {} -- field -> djb2 of its host, for the batch
local pieceKeys = {} -- key -> piece index -> piece key, for the batch
local function djb2(s)
  local h = 5381
  for j = 1, #s do
    h = (h * 33 + string.byte(s, j)) % 4294967296
  end
  return h
end
local function pieceOf(key, field, p)
  local h = hashOf[field]
  if not h then
    local q = string.find(field, '\0', 1, true)
    h = djb2(q and string.sub(field, 1, q - 1) or field)
    hashOf[field] = h
  end
  local ks, x = pieceKeys[key], h % p
  if not ks then
    ks = {}
    pieceKeys[key] = ks
  end
  local pk = ks[x]
  if not pk then
    pk = key .. '\0P' .. x
    ks[x] = pk
  end
  return pk
end
-- The state of a window key's minute, read once per batch from its host
-- sums: total, one tag, host-keyed marker, pieces, cells in the pieces;
-- fresh lists the pieces the batch created fields in, added the cells added
-- to pieces.
local states = {}
local function state(key)
  local ks = states[key]
  if not ks then
    local st = rpcall('HMGET', key .. '\0H', '\0', '\0T', '\0C', '\0P', '\0N')
    if failed(st) then
      st = {}
    end
    ks = {total = st[1], tag = st[2], keyed = type(st[3]) == 'string',
      p = tonumber(st[4]), n = tonumber(st[5]) or 0, fresh = {}, added = 0}
    states[key] = ks
  end
  return ks
end

-- The cardinality guard: a window hash holding maxSeries fields takes no
-- new field but the overflow series' (every part __other__, labels named as
-- the entry's). Fields are counted with one HLEN per window hash and batch,
-- then followed as the batch adds them.
local fields, overflow, overflowed, inOverflow = {}, {}, {}, {}
local function overflowField(field)
  local out = {'__other__', '__other__'}
  local p = string.find(field, '\0', 1, true)
  local q = p and string.find(field, '\0', p + 1, true)
  if q then
    for name in string.gmatch(string.sub(field, q + 1) .. '\0', '([^=%z]+)=[^%z]*%z') do
      out[#out + 1] = name .. '=__other__'
    end
  end
  return table.concat(out, '\0')
end
local function guard(key, field, first, m)
  if maxSeries <= 0 then
    return field
  end
  local have, ks = fields[key], state(key)
  if not have then
    have = rpcall('HLEN', key)
    if failed(have) then
      return field
    end
    have = have + ks.n
    fields[key] = have
  end
  if have < maxSeries or rpcall('HEXISTS', ks.p and pieceOf(key, field, ks.p) or key, field) == 1 then
    return field
  end
  if not overflowed[key] then
    overflowed[key] = 0
    overflow[#overflow + 1] = key
  end
  overflowed[key] = overflowed[key] + m
  first = tonumber(first)
  for en = first, first + m - 1 do
    inOverflow[en] = true
  end
  return overflowField(field)
end

-- Counts: one HINCRBY per cell for all its new entries. On the fleet's
-- shape every entry is a cell of its own, so numbers are converted only
-- where needed (tonumber is a strtod): the key's index once per key, the
-- first entry's number only if some entry is flagged or the cell fails.
local keyAt = {}
for g = 1, ncount do
  local ks, field = ARGV[i + COUNT_KEY], ARGV[i + COUNT_FIELD]
  local key = keyAt[ks]
  if not key then
    key = KEYS[tonumber(ks)]
    keyAt[ks] = key
  end
  local first, ms = ARGV[i + COUNT_FIRST], ARGV[i + COUNT_LEN]
  local m = 1
  if ms ~= '1' then
    m = tonumber(ms)
  end
  local sum, counts = ARGV[i + COUNT_SUM], nil
  i = i + COUNT_FIXED
  if m > 1 then
    counts = ARGV[i]
    i = i + 1
  end
  if nflags > 0 then
    first = tonumber(first)
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
    field = guard(key, field, first, m)
    local ks, dest = state(key), key
    if ks.p then
      dest = pieceOf(key, field, ks.p)
    end
    local r, c = rpcall('HINCRBY', dest, field, sum), tonumber(sum)
    if failed(r) and not wrote and not dataError(r.err) then
      return redis.error_reply(r.err)
    elseif not failed(r) then
      wrote = true
      if r == c then -- a new field
        if fields[key] then
          fields[key] = fields[key] + 1
        end
        if ks.p then
          ks.fresh[dest], ks.added = true, ks.added + 1
        end
      end
      rollup(key, field, c)
    else
      first = tonumber(first)
      for en = first, first + m - 1 do
        if not flags[en] then
          flag(en, 'x', r.err)
        end
      end
    end
  end
end

-- zincrAll adds t[member] to each member of the zset zk as ZINCRBY would,
-- with one ZMSCORE and one ZADD instead of a ZINCRBY each: on the fleet's
-- shape a batch adds to ~30 hosts of each keyword-minute, and ZINCRBY's
-- own work (parsing the increment, formatting the score it replies) cost
-- more than the read. The script is atomic, so nothing comes between the
-- read and the write; the sum is the same double addition ZINCRBY makes,
-- and Redis passes a Lua number on with 17 significant digits, exactly. A
-- failure (a key of another type) skips the batch's rollup of that key, as
-- a failed ZINCRBY skipped a member: rollups are derived data.
local function zincrAll(zk, t)
  local ms, cs, n = {}, {}, 0
  for m, c in pairs(t) do
    n = n + 1
    ms[n], cs[n] = m, c
  end
  if n <= 2 then
    for j = 1, n do
      rpcall('ZINCRBY', zk, cs[j], ms[j])
    end
    return
  end
  for lo = 1, n, 1000 do
    local hi = math.min(n, lo + 999)
    local cur = rpcall('ZMSCORE', zk, unpack(ms, lo, hi))
    if not failed(cur) then
      local add = {}
      for j = lo, hi do
        local v = cur[j - lo + 1]
        local s = v and tonumber(v) or 0
        add[#add + 1], add[#add + 2] = s + cs[j], ms[j]
      end
      rpcall('ZADD', zk, unpack(add))
    end
  end
end

-- roll1 adds a batch's rollup ro of window key to the minute's host sums
-- hk, host zset zk, tag zset tk and label rollups: the layout of minutes
-- that are not host-keyed.
local function roll1(key, ro, hk, zk, tk)
  if ro.labelled > 0 then
    ro.h['\0l'] = ro.labelled
  end
  ro.h['\0'] = ro.n
  -- The tag of a minute that has one tag (the common case) is kept as the
  -- host sums' field \0T, its count being the minute's total: no tag zset,
  -- a key less per keyword-minute. A second tag, or the move of the host
  -- sums into the zset, writes the tag zset with what \0T stood for.
  local tagsDone = false
  if rpcall('EXISTS', zk) == 1 then
    zincrAll(zk, ro.h)
  else
    if rpcall('EXISTS', tk) == 0 then
      local was = rpcall('HGET', hk, '\0T')
      if type(was) ~= 'string' then
        was = nil
      end
      local only, more = was, false
      for t in pairs(ro.t) do
        if only == nil then
          only = t
        elseif only ~= t then
          more = true
        end
      end
      if not more then
        tagsDone = true
        if was == nil and only ~= nil then
          rpcall('HSET', hk, '\0T', only)
        end
      elseif was ~= nil then
        -- The minute's counts so far were all was's.
        local before = tonumber(rpcall('HGET', hk, '\0'))
        if before and before > 0 then
          rpcall('ZINCRBY', tk, before, was)
        end
        rpcall('HDEL', hk, '\0T')
      end
    end
    for h, c in pairs(ro.h) do
      rpcall('HINCRBY', hk, h, c)
    end
    local size = rpcall('HLEN', hk)
    if type(size) == 'number' and size > HOST_SUMS_MAX then
      local kv = rpcall('HGETALL', hk)
      if not failed(kv) then
        -- zk does not exist here: one ZADD of the sums leaves what a
        -- ZINCRBY of each would (a field whose value is not a number, which
        -- ZINCRBY would refuse, is left out), in one call instead of 513.
        local tag, total, add, keep = nil, 0, {}, {}
        for j = 1, #kv, 2 do
          local f = kv[j]
          if f == '\0T' then
            tag = kv[j + 1]
          elseif f == '\0P' or f == '\0N' then
            -- the pieces' state stays in the hash
            keep[#keep + 1], keep[#keep + 2] = f, kv[j + 1]
          else
            if f == '\0' then
              total = kv[j + 1]
            end
            if tonumber(kv[j + 1]) then
              add[#add + 1], add[#add + 2] = kv[j + 1], f
            end
          end
        end
        -- unpack is bounded by Lua's C stack (8,000 values).
        for lo = 1, #add, 2000 do
          rpcall('ZADD', zk, unpack(add, lo, math.min(#add, lo + 1999)))
        end
        if tag then
          -- this batch's counts included
          rpcall('ZINCRBY', tk, total, tag)
          tagsDone = true
        end
        rpcall('DEL', hk)
        if #keep > 0 then
          rpcall('HSET', hk, unpack(keep))
        end
      end
    end
  end
  if not tagsDone then
    zincrAll(tk, ro.t)
  end
  for name, lv in pairs(ro.l) do
    lv['\0'] = ro.lc[name] -- the name's total; a value cannot hold NUL
    zincrAll(key .. '\0l:' .. name, lv)
  end
end

-- hostOf is the host of a cell's field: the part before the first NUL.
local function hostOf(f)
  local p = string.find(f, '\0', 1, true)
  if p then
    return string.sub(f, 1, p - 1)
  end
  return f
end

-- materialize writes the host sums of a host-keyed minute (window.CellHosts)
-- from its cells as they were before this batch (ro.h is the batch's part,
-- added by roll1 like any batch's) and drops the marker: the minute is then
-- laid out as one that never was host-keyed. HSET, not HINCRBY: host fields
-- a replica of an earlier version wrote meanwhile are in the cells too.
-- cellsOf is the HGETALL replies of a minute's cells: its window hash and
-- its p pieces, if any (failed replies left out).
local function cellsOf(key, p)
  local out = {}
  local kv = rpcall('HGETALL', key)
  if not failed(kv) then
    out[1] = kv
  end
  for x = 0, (p or 0) - 1 do
    kv = rpcall('HGETALL', key .. '\0P' .. x)
    if not failed(kv) then
      out[#out + 1] = kv
    end
  end
  return out
end

local function materialize(key, hk, ro, p)
  local sums = {}
  for _, kv in ipairs(cellsOf(key, p)) do
    for j = 1, #kv, 2 do
      local n = tonumber(kv[j + 1])
      if n then
        local h = hostOf(kv[j])
        sums[h] = (sums[h] or 0) + n
      end
    end
  end
  local add = {}
  for h, n in pairs(sums) do
    n = n - (ro.h[h] or 0)
    if n ~= 0 then
      add[#add + 1], add[#add + 2] = h, n
    end
  end
  -- unpack is bounded by Lua's C stack (8,000 values).
  for lo = 1, #add, 2000 do
    rpcall('HSET', hk, unpack(add, lo, math.min(#add, lo + 1999)))
  end
  rpcall('HDEL', hk, '\0C')
end

-- toPieces moves the cells of window key into PIECES pieces (see Pieces
-- above), once per minute: O(cells), like the host sums' move into the
-- zset. Every piece written is fresh: it gets the window's expiry.
local function toPieces(key, hk, ks)
  local kv = rpcall('HGETALL', key)
  if failed(kv) then
    return
  end
  local by, order = {}, {}
  for j = 1, #kv, 2 do
    local l = listOf(by, order, pieceOf(key, kv[j], PIECES))
    l[#l + 1], l[#l + 2] = kv[j], kv[j + 1]
  end
  for _, pk in ipairs(order) do
    local l = by[pk]
    for lo = 1, #l, 2000 do
      rpcall('HSET', pk, unpack(l, lo, math.min(#l, lo + 1999)))
    end
    ks.fresh[pk] = true
  end
  rpcall('DEL', key)
  ks.p, ks.n, ks.added = PIECES, ks.n + #kv / 2, 0
  rpcall('HSET', hk, '\0P', PIECES, '\0N', ks.n)
end

-- A rollup is derived data: a failure to write it does not fail the entries.
--
-- Host-keyed minutes (window.CellHosts): while every series of a
-- keyword-minute has the same tag and no labels, its cells are host NUL tag
-- and per-host sums would repeat them. Such a minute's host sums hash holds
-- only the total, the tag (\0T) and the marker \0C: readers take a host's
-- count from its cell. The first batch that brings a second tag, a labelled
-- series or the overflow series (tag __other__) materializes the host sums
-- from the cells, once, and the minute goes on as any other.
for key, ro in pairs(roll) do
  local hk, zk, tk = key .. '\0H', key .. '\0h', key .. '\0t'
  local only, ntags = nil, 0
  for t in pairs(ro.t) do
    only, ntags = t, ntags + 1
  end
  local fits = ntags == 1 and ro.labelled == 0
  local ks = state(key)
  local done = false
  if ks.keyed and fits and ks.tag == only then
    rpcall('HINCRBY', hk, '\0', ro.n)
    done = true
  elseif ks.keyed then
    materialize(key, hk, ro, ks.p)
  elseif fits and type(ks.total) ~= 'string' and type(ks.tag) ~= 'string'
    and rpcall('EXISTS', zk, tk) == 0 then
    -- A new minute (no total anywhere): host-keyed from the start.
    rpcall('HSET', hk, '\0', ro.n, '\0T', only, '\0C', '1')
    done = true
  end
  if not done then
    roll1(key, ro, hk, zk, tk)
  end
  if ks.p then
    if ks.added > 0 then
      rpcall('HINCRBY', hk, '\0N', ks.added)
    end
  else
    local size = fields[key] or rpcall('HLEN', key)
    if type(size) == 'number' and size > HOST_SUMS_MAX then
      toPieces(key, hk, ks)
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

-- Samples of counted entries, one list per series, newest ending up first.
-- Entries counted in an overflow series keep no samples: their series'
-- lists would be as many as the series the guard turned away.
-- The samples' entry numbers are read only if some entry is flagged or
-- overflowed: otherwise a series' samples are pushed straight from ARGV.
local checkPicks = nflags > 0 or #overflow > 0
for g = 1, nsample do
  local key, m = KEYS[tonumber(ARGV[i + SAMPLE_KEY])], tonumber(ARGV[i + SAMPLE_LEN])
  local entries, first = ARGV[i + SAMPLE_ENTRIES], i + SAMPLE_FIXED
  i = first + m
  local len, pushed = nil, 0
  if not checkPicks then
    len, pushed = rpcall('LPUSH', key, unpack(ARGV, first, i - 1)), m
  else
    local push, j = {}, first
    for en in string.gmatch(entries, '%d+') do
      en = tonumber(en)
      if not flags[en] and not inOverflow[en] then
        push[#push + 1] = ARGV[j]
      end
      j = j + 1
    end
    if #push > 0 then
      len, pushed = rpcall('LPUSH', key, unpack(push)), #push
    end
  end
  -- Lists are per series, so most are short: trim only those over the cap.
  -- The TTL is set when the push creates the list, not on every push: a
  -- busy series' list then lives one retention and is created again by
  -- its next sample, which saves an EXPIRE per series per batch.
  if type(len) == 'number' then
    if len > cap then
      rpcall('LTRIM', key, 0, cap - 1)
    end
    if len == pushed then
      rpcall('EXPIRE', key, sttl)
    end
  end
end

-- Acknowledge the entries not failed and still this consumer's, then the
-- dead ones written and the ack-only ones. In cursor mode nothing is
-- pending: the entries that could not be counted are dead-lettered here,
-- in the step that moves the cursor past them, with their fields read back
-- from the stream (no process can die between the two and lose them).
if cursorMode then
  for f = 1, #failures, 2 do
    local en = tonumber(failures[f])
    if en and flags[en] == 'x' then
      local id = ARGV[ids + en - 1]
      local fields = {}
      local got = redis.call('XRANGE', stream, id, id)
      if got[1] then
        local kv = got[1][2]
        for k = 1, #kv, 2 do
          fields[kv[k]] = kv[k + 1]
        end
      end
      local r = rpcall('XADD', dead, 'MAXLEN', '~', dmax, '*', 'reason', 'apply: ' .. failures[f + 1], 'source_id', id,
        'fields', cjson.encode(fields))
      if failed(r) then
        failures[#failures + 1] = 'l' .. en -- neither counted nor dead-lettered
        failures[#failures + 1] = r.err
      end
    end
  end
  local last = ARGV[ARG_CURSOR_LAST]
  if type(cursorRead) == 'number' then
    redis.call('XGROUP', 'SETID', stream, group, last, 'ENTRIESREAD', cursorRead + tonumber(ARGV[ARG_CURSOR_READ]))
  else
    redis.call('XGROUP', 'SETID', stream, group, last)
  end
elseif n > 0 and nflags == 0 then
  redis.call('XACK', stream, group, unpack(ARGV, ids, ids + n - 1))
elseif n > 0 then
  local acks = {}
  for en = 1, n do
    if flags[en] ~= 'x' and flags[en] ~= 'o' then
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
  local check = ARGV[i + DEAD_CHECK] == '1'
  i = i + DEAD_WIDTH
  -- As for entries: once the fence moved, a dead entry is reported only if
  -- still this consumer's, else another process of its name may have
  -- applied or reported it meanwhile (a loss reported twice, or for an
  -- entry counted).
  if check and not cursorMode and moved() and #redis.call('XPENDING', stream, group, id, id, 1, ARGV[ARG_CONSUMER]) == 0 then
    failures[#failures + 1] = 's' .. d -- neither written nor acknowledged
    failures[#failures + 1] = 'not pending'
  else
    local r = rpcall('XADD', dead, 'MAXLEN', '~', dmax, '*', 'reason', reason, 'source_id', id, 'fields', fields)
    if failed(r) then
      failures[#failures + 1] = 'd' .. d
      failures[#failures + 1] = r.err
    else
      acks[#acks + 1] = id
    end
  end
end

for x = 1, nexp do
  local k = KEYS[tonumber(ARGV[i + EXPIRE_KEY])]
  rpcall('EXPIREAT', k, ARGV[i + EXPIRE_AT])
  if roll[k] then
    rpcall('EXPIREAT', k .. '\0H', ARGV[i + EXPIRE_AT])
    rpcall('EXPIREAT', k .. '\0h', ARGV[i + EXPIRE_AT])
    rpcall('EXPIREAT', k .. '\0t', ARGV[i + EXPIRE_AT])
    for name in pairs(roll[k].l) do
      rpcall('EXPIREAT', k .. '\0l:' .. name, ARGV[i + EXPIRE_AT])
    end
    for pk in pairs(state(k).fresh) do
      rpcall('EXPIREAT', pk, ARGV[i + EXPIRE_AT])
    end
  end
  i = i + EXPIRE_WIDTH
end

for a = 1, nack do
  acks[#acks + 1] = ARGV[i]
  i = i + 1
end

if #acks > 0 and not cursorMode then
  redis.call('XACK', stream, group, unpack(acks))
end

local over = {}
for _, key in ipairs(overflow) do
  over[#over + 1] = key
  over[#over + 1] = overflowed[key]
end
if nflags == 0 then
  return {string.rep('1', n), failures, over}
end
local out = {}
for en = 1, n do
  out[en] = flags[en] or '1'
end
return {table.concat(out), failures, over}
