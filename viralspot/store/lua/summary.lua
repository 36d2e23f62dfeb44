#!lua flags=no-writes
-- What inspection shows of a session (store/redis_store.py). KEYS[1] the session's hash.
-- Reply nil, or {served items, created ms, now ms, pttl, feed ids, feed 1 state, feed 2 state, ...}.
local key = KEYS[1]
local meta = redis.call('HMGET', key, 's', 'b', 'k', 'n', 'c')
if not (meta[1] and meta[2] and meta[3] and meta[4] and meta[5]) or #meta[3] % 9 ~= 0 then return nil end
local now = redis.call('TIME')
local reply = {tonumber(meta[4]), tonumber(meta[5]), now[1] * 1000 + math.floor(now[2] / 1000),
  redis.call('PTTL', key), meta[3]}
for feed = 1, #meta[3] / 9 do reply[#reply + 1] = redis.call('HGET', key, 'f' .. feed) or '' end
return reply
