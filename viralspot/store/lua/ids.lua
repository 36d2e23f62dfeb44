-- ids: up to ARGV[2] session ids used within the last TTL, most recent first.
-- KEYS: index.  ARGV: ttl_ms, limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. string.format('%.17g', now - tonumber(ARGV[1])),
                  'LIMIT', 0, tonumber(ARGV[2]))
