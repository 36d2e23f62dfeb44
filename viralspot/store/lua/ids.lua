-- ids: up to ARGV[2] session ids used within the last TTL, most recent first.
-- KEYS: index (shard).  ARGV: ttl_ms, limit, withscores ("1": id, score, id, score, ... for
-- merging the shards of a cluster's index).
local min = after(server_ms() - tonumber(ARGV[1]))
if ARGV[3] == '1' then
  return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', min, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
end
return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', min, 'LIMIT', 0, tonumber(ARGV[2]))
