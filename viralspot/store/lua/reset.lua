-- reset: end the active session (UNLINK its data) and leave its freshness record, the generation
-- its next order uses, for the TTL.
-- KEYS: meta, seen, fresh.  ARGV: ttl_ms, reset_id
-- Returns {found, cleared_items_count, generation}.
local meta, seen_key, fresh = KEYS[1], KEYS[2], KEYS[3]
local ttl, reset_id = tonumber(ARGV[1]), ARGV[2]
if redis.call('EXISTS', meta) == 1 then
  local values = redis.call('HMGET', meta, 'g', 'n')
  local generation, cleared = tonumber(values[1]) + 1, tonumber(values[2])
  redis.call('UNLINK', meta, seen_key)
  redis.call('SET', fresh, generation .. ':' .. cleared .. ':' .. reset_id, 'PX', ttl)
  return {1, cleared, generation}
end
local record = redis.call('GET', fresh)
if record then
  local generation, cleared, id = string.match(record, '^(%d+):(%d+):(.*)$')
  if id == reset_id then  -- a resend of this very reset
    return {1, tonumber(cleared), tonumber(generation)}
  end
  return {0, 0, tonumber(generation)}
end
return {0, 0, 0}
