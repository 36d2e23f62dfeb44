-- untouch: undo a touch (the claim it went with found no active session), unless the id was
-- touched again since; its generation is then forgotten with the reset floors (touch.lua).
-- KEYS: index, floors.  ARGV: session_id, score the touch returned.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], server_ms(), ARGV[1])
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
