-- touch: record a session as used now in the active-sessions index (a sorted set of session id ->
-- last-seen server time in milliseconds, microsecond fraction included), and trim entries idle
-- past the TTL, and reset floors older than FLOOR_MS, at most once a second.
--
-- The generations hash holds, per indexed or recently reset session, the highest generation
-- touched or reset: a touch of an older generation (a claim that ran before a reset, arriving
-- after the reset's ``unindex``) is ignored, and a reset's ``unindex`` keeps an entry that the
-- new session's claim already touched. The floors set lists reset sessions by time, so their
-- generations are forgotten once no touch of theirs can still be in flight.
-- KEYS: index, trim guard, generations, floors (one slot: vs:active and {vs:active}:..., or on a
-- cluster the shard vs:active:{<i>} and vs:active:{<i>}:...).
-- ARGV: session_id, ttl_ms, xx ("1": only update an id already indexed), generation (-1: unknown,
-- with xx only). Returns the score written, as a string, or "" when the touch was stale.
local FLOOR_MS = 60000
local index, guard, generations, floors = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local session, generation = ARGV[1], tonumber(ARGV[4])
local now = server_ms()
local score = string.format('%.17g', now)
if generation >= 0 then
  local known = tonumber(redis.call('HGET', generations, session) or '-1')
  if generation < known then
    score = ''
  elseif generation > known then
    redis.call('HSET', generations, session, generation)
  end
end
if score ~= '' then
  if ARGV[3] == '1' then
    redis.call('ZADD', index, 'XX', score, session)
  else
    redis.call('ZADD', index, score, session)
  end
end
if redis.call('SET', guard, '1', 'NX', 'PX', 1000) then
  local idle = after(now - tonumber(ARGV[2]))
  local gone = redis.call('ZRANGEBYSCORE', index, '-inf', idle)
  for first = 1, #gone, 1000 do
    redis.call('HDEL', generations, unpack(gone, first, math.min(#gone, first + 999)))
  end
  redis.call('ZREMRANGEBYSCORE', index, '-inf', idle)
  local settled = after(now - FLOOR_MS)
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', floors, '-inf', settled, 'LIMIT', 0, 1000)) do
    if not redis.call('ZSCORE', index, gone) then redis.call('HDEL', generations, gone) end
    redis.call('ZREM', floors, gone)
  end
end
return score
