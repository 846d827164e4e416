-- Ends a session and drops it from its token's set.
-- KEYS[1] the session's key; ARGV[1] the token sets' key prefix (same hash
-- tag as KEYS[1], so the same cluster slot).
local tok = redis.call('HGET', KEYS[1], 'tok')
redis.call('DEL', KEYS[1])
if tok then
  redis.call('ZREM', ARGV[1] .. tok, KEYS[1])
end
return 0
