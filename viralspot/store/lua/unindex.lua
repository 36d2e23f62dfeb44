#!lua flags=allow-oom
-- A reset session out of its index shard (Redis Cluster, where the shard is in another slot than
-- the session): only an entry last touched before the reset (``ARGV[2]``, server ms), so a session
-- created since keeps its entry. KEYS[1] the index shard; ARGV session id, reset time.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
