-- count: sessions used within the last TTL (server time).  KEYS: index.  ARGV: ttl_ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.17g', now - tonumber(ARGV[1])), '+inf')
