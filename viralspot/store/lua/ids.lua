#!lua flags=no-writes
-- The most recently used sessions of an index shard, with their last-seen ms.
-- KEYS[1] the index; ARGV ttl (ms), how many.
local now = redis.call('TIME')
local since = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[1])
return redis.call('ZRANGE', KEYS[1], '+inf', '(' .. since, 'BYSCORE', 'REV', 'LIMIT', 0, tonumber(ARGV[2]), 'WITHSCORES')
