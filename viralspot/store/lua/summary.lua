#!lua flags=no-writes
-- What inspection shows of a session (store/redis_store.py). KEYS[1] the session's hash.
-- Reply nil (no session, or one not whole: _session.lua), or {served items, created ms, now ms,
-- pttl, feed ids, feed 1 state, feed 2 state, ...}.
local key = KEYS[1]
local meta, states, whole = read_session(key)
if not whole then return nil end
local now = redis.call('TIME')
local reply = {tonumber(meta[4]), tonumber(meta[5]), now[1] * 1000 + math.floor(now[2] / 1000),
  redis.call('PTTL', key), meta[3]}
for feed = 1, #states do reply[#reply + 1] = states[feed] end
return reply
