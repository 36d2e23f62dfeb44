#!lua
-- Mark a session active in an index shard (Redis Cluster, where the shard is in another slot than
-- the session's hash; on one server page.lua does it). KEYS[1] the index; ARGV session id, ttl (ms).
return touch_index(KEYS[1], ARGV[1], tonumber(ARGV[2]))
