-- unindex: a reset's removal of its session from the active-sessions index, run after the reset
-- (its reply gave ``generation``, the next session's). An entry that a claim of that next session
-- has touched meanwhile stays; touches of older generations arriving later are ignored (touch.lua).
-- KEYS: index, generations, floors.  ARGV: session_id, generation.  Returns 1 when removed.
local session, generation = ARGV[1], tonumber(ARGV[2])
local known = tonumber(redis.call('HGET', KEYS[2], session) or '-1')
if known >= generation and redis.call('ZSCORE', KEYS[1], session) then
  return 0
end
if generation > known then redis.call('HSET', KEYS[2], session, generation) end
redis.call('ZADD', KEYS[3], server_ms(), session)
return redis.call('ZREM', KEYS[1], session)
