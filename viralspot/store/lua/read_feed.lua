-- read_feed: a snapshot of one feed and its served keys [start:stop]; restarts the idle TTL.
-- KEYS: meta, seen, fresh.  ARGV: feed, start, stop, ttl_ms
-- Returns {generation, has_plan, plan, cursor, served_count, exhausted, keys (packed uint32)}.
local meta, seen_key, fresh = KEYS[1], KEYS[2], KEYS[3]
local feed = ARGV[1]
local start, stop, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('EXISTS', meta) == 0 then
  return {fresh_generation(redis.call('GET', fresh)), 0, '', 0, 0, 0, ''}
end
local values = redis.call('HMGET', meta, 'g', 'f:' .. feed, 'o')
local generation = tonumber(values[1])
redis.call('HSET', meta, 'l', now_ms())
redis.call('PEXPIRE', meta, ttl)
redis.call('PEXPIRE', seen_key, ttl)
local state = feed_state(values[2])
if not state then
  return {generation, 0, '', 0, 0, 0, ''}
end
local order = cmsgpack.unpack(values[3])
if order[#order] ~= feed then  -- the feed becomes the most recently used
  for i = #order, 1, -1 do
    if order[i] == feed then table.remove(order, i) end
  end
  order[#order + 1] = feed
  redis.call('HSET', meta, 'o', cmsgpack.pack(order))
end
local served = redis.call('HGET', meta, 's:' .. feed) or ''
return {generation, 1, state[3], state[1], #served / 4, state[2],
        string.sub(served, start * 4 + 1, stop * 4)}
