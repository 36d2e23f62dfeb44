-- Forget a session whole, leaving only the record of this reset (store/redis_store.py).
-- KEYS[1] the session's hash; ARGV reset id, record ttl (ms). Reply {found, cleared items}.
-- A reset resent after a lost reply finds its own record and answers what it did then.
local key = KEYS[1]
local served, seed, record = unpack(redis.call('HMGET', key, 'n', 's', 'r'))
if record then
  local id, cleared, found = string.match(record, '^(.-):(%d+):(%d)$')
  if id == ARGV[1] then return {tonumber(found), tonumber(cleared)} end
end
local found = served and seed and 1 or 0
local cleared = found == 1 and tonumber(served) or 0
redis.call('DEL', key)
redis.call('HSET', key, 'r', ARGV[1] .. ':' .. cleared .. ':' .. found)
redis.call('PEXPIRE', key, ARGV[2])
return {found, cleared}
