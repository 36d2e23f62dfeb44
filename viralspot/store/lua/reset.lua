#!lua
-- Forget a session whole, leaving only the record of this reset (store/redis_store.py).
-- KEYS[1] the session's hash; KEYS[2], when given, the active-session index (one server: the
-- session leaves it in the same step). ARGV reset id, record ttl (ms), session id, the channel
-- that hears of resets (reset_notices.py: the session's seed, then its id, when one was found).
-- Reply {found, cleared items, server ms}. A reset resent after a lost reply finds its own record
-- and answers what it did then.
local key = KEYS[1]
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local served, seed, record = unpack(redis.call('HMGET', key, 'n', 's', 'r'))
if record then
  local id, cleared, found = string.match(record, '^(.-):(%d+):(%d)$')
  if id == ARGV[1] then return {tonumber(found), tonumber(cleared), now} end
end
local found = served and seed and 1 or 0
local cleared = found == 1 and tonumber(served) or 0
replace_hash(key, {'r', ARGV[1] .. ':' .. cleared .. ':' .. found})
redis.call('PEXPIRE', key, ARGV[2])
if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[3]) end
if found == 1 and #seed == 8 then redis.call('PUBLISH', ARGV[4], seed .. ARGV[3]) end
return {found, cleared, now}
