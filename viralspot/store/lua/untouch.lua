-- untouch: undo a touch (the claim it went with found no active session), unless the id was
-- touched again since.  KEYS: index.  ARGV: session_id, score the touch returned.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
