-- reset: end the active session (UNLINK its data) and leave its freshness record, the generation
-- its next order uses and the reset's id, for the TTL (a new session keeps it: see claim.lua).
-- KEYS: meta, seen, fresh.  ARGV: ttl_ms, reset_id
-- Returns {found, cleared_items_count, generation}.
local meta, seen_key, fresh = KEYS[1], KEYS[2], KEYS[3]
local ttl, reset_id = tonumber(ARGV[1]), ARGV[2]
local record = redis.call('GET', fresh)
if record then
  local generation, cleared, id = string.match(record, '^(%d+):(%d+):(.*)$')
  -- A resend of this very reset (its reply was lost), also once a claim has made a new session:
  -- that session is not reset again.
  if id == reset_id then
    return {1, tonumber(cleared), tonumber(generation)}
  end
end
if redis.call('EXISTS', meta) == 1 then
  local values = redis.call('HMGET', meta, 'g', 'n')
  local generation, cleared = tonumber(values[1]) + 1, tonumber(values[2])
  redis.call('UNLINK', meta, seen_key)
  redis.call('SET', fresh, generation .. ':' .. cleared .. ':' .. reset_id, 'PX', ttl)
  return {1, cleared, generation}
end
if record then
  return {0, 0, fresh_generation(record)}
end
return {0, 0, 0}
