#!lua flags=no-writes
-- Sessions of an index shard used within the TTL. KEYS[1] the index; ARGV ttl (ms).
local now = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[1], '(' .. (now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[1])), '+inf')
