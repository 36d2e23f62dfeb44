-- touch: record a session as used now in the active-sessions index (a sorted set of session id ->
-- last-seen server time in milliseconds, microsecond fraction included), and trim entries idle
-- past the TTL at most once a second.
-- KEYS: index, trim guard (one slot: vs:active and {vs:active}:trim, or on a cluster the shard
-- vs:active:{<i>} and vs:active:{<i>}:trim).  ARGV: session_id, ttl_ms, xx ("1": only update an
-- id already indexed).  Returns the score written, as a string.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local score = string.format('%.17g', now)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], 'XX', score, ARGV[1])
else
  redis.call('ZADD', KEYS[1], score, ARGV[1])
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', 1000) then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.17g', now - tonumber(ARGV[2])))
end
return score
