-- Opens a session and keeps its API token within its cap of live sessions.
-- KEYS[1] the session's key, KEYS[2] the token's sorted set of session keys
-- (scored by creation, µs: sign-ins a millisecond apart keep their order). ARGV: csrf, token fingerprint, ttl (ms), cap.
-- Evicted sessions' keys come from the set: they share KEYS' hash tag, so
-- they live in the same cluster slot. Returns how many were signed out.
local ttl, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], 'csrf', ARGV[1], 'tok', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
-- Sessions older than the TTL have expired by themselves.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now - ttl * 1000))
redis.call('ZADD', KEYS[2], now, KEYS[1])
local n = redis.call('ZCARD', KEYS[2])
local ended = 0
if n > cap then
  local old = redis.call('ZPOPMIN', KEYS[2], n - cap)
  for i = 1, #old, 2 do
    redis.call('DEL', old[i])
    ended = ended + 1
  end
end
redis.call('PEXPIRE', KEYS[2], ttl)
return ended
