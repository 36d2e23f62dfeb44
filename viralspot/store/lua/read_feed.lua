-- read_feed: a snapshot of one feed and its served keys [start:stop]; restarts the idle TTL.
-- KEYS: meta, seen, fresh.  ARGV: feed, start, stop, ttl_ms
-- Returns {generation, has_plan, plan, cursor, served_count, exhausted, keys (packed uint32)}.
return feed_read(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
