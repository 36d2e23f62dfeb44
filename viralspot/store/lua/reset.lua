#!lua
-- Forget a session whole, leaving only the record of this reset (store/redis_store.py).
-- KEYS[1] the session's hash; KEYS[2], when given, the active-session index (one server: the
-- session leaves it in the same step). ARGV reset id, record ttl (ms), session id, the channel
-- that hears of resets (reset_notices.py: the session's seed, then its id, when one was found).
-- Reply {found, cleared items, server ms}: a session not whole is cleared, not found. A reset resent
-- after a lost reply finds its own record and answers what it did then.
local key = KEYS[1]
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local meta, _, whole = read_session(key)
local record = meta[6]
if record then
  local id, cleared, found = string.match(record, '^(.-):(%d+):(%d)$')
  if id == ARGV[1] then return {tonumber(found), tonumber(cleared), now} end
end
local found = whole and 1 or 0
local cleared = whole and tonumber(meta[4]) or 0
if not replace_hash(key, {'r', ARGV[1] .. ':' .. cleared .. ':' .. found}) then return {0, 0, now} end
redis.call('PEXPIRE', key, ARGV[2])
if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[3]) end
if whole then redis.call('PUBLISH', ARGV[4], meta[1] .. ARGV[3]) end
return {found, cleared, now}
