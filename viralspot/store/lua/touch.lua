-- Mark a session active in an index shard (store/redis_store.py), and forget at most 100 entries
-- idle for longer than the TTL, so a backlog of idle entries drains in bounded steps.
-- KEYS[1] the index (sorted set: session id -> last seen, server ms); ARGV session id, ttl (ms).
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
local idle = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])), 'BYSCORE', 'LIMIT', 0, 100)
if #idle > 0 then redis.call('ZREM', KEYS[1], unpack(idle)) end
return now
