-- Shared by page.lua and touch.lua: mark a session active in an index shard (sorted set: session
-- id -> last seen, server ms) and forget at most 100 entries idle for longer than the TTL, so a
-- backlog of idle entries drains in bounded steps. The shard carries the TTL too, so volatile-lru
-- may evict it (last: every page touches it) rather than refuse every write once only it is left.
-- Answers the server time (ms).
local function touch_index(index, session_id, ttl)
  local now = redis.call('TIME')
  now = now[1] * 1000 + math.floor(now[2] / 1000)
  redis.call('ZADD', index, now, session_id)
  redis.call('PEXPIRE', index, ttl)
  local idle = redis.call('ZRANGE', index, '-inf', '(' .. (now - ttl), 'BYSCORE', 'LIMIT', 0, 100)
  if #idle > 0 then redis.call('ZREM', index, unpack(idle)) end
  return now
end
