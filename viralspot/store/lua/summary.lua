-- summary: inspection view of an active session (read-only; the TTL is not restarted).
-- KEYS: meta.  Returns nil, or {generation, served_items, created_ms, last_seen_ms, pttl_ms,
-- feed, cursor, exhausted, plan, served, feed, ...} with the feeds least recently used first.
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 0 then return false end
local values = redis.call('HMGET', meta, 'g', 'n', 'c', 'l', 'o')
local reply = {tonumber(values[1]), tonumber(values[2]), tonumber(values[3]), tonumber(values[4]),
               redis.call('PTTL', meta)}
for _, feed in ipairs(cmsgpack.unpack(values[5])) do
  local state = feed_state(redis.call('HGET', meta, 'f:' .. feed))
  if state then
    reply[#reply + 1] = feed
    reply[#reply + 1] = state[1]
    reply[#reply + 1] = state[2]
    reply[#reply + 1] = state[3]
    reply[#reply + 1] = redis.call('HSTRLEN', meta, 's:' .. feed) / 4
  end
end
return reply
