-- Shared by page.lua and reset.lua: a session's hash replaced whole by the fields ``writes`` (name,
-- value, name, value, ...). Deleted and written anew, it gets Redis's compact encoding back. But a
-- Redis Cluster node whose slot is migrating away refuses, in the middle of a script, a key of that
-- slot it does not hold, after the script's writes before it: a DEL and then a write lost the
-- session and failed. So a read of a key of the same slot that never exists (``<key>:never``, the
-- only key a script reads undeclared) asks first; when the node would refuse, the new fields are
-- written before the old ones are removed (1,000 at a time), and the key is never missing. False
-- when it only deleted a key of another type there (the key is then the new node's).
local function replace_hash(key, writes)
  local old = {}  -- the fields left to remove once the new ones are written
  if type(redis.pcall('EXISTS', key .. ':never')) == 'number' then
    redis.call('DEL', key)
  else
    old = redis.pcall('HKEYS', key)
    if old.err then
      redis.call('DEL', key)
      return false
    end
  end
  redis.call('HSET', key, unpack(writes))
  local written, batch = {}, {}
  for i = 1, #writes, 2 do written[writes[i]] = true end
  for _, name in ipairs(old) do
    if not written[name] then
      batch[#batch + 1] = name
      if #batch == 1000 then
        redis.call('HDEL', key, unpack(batch))
        batch = {}
      end
    end
  end
  if #batch > 0 then redis.call('HDEL', key, unpack(batch)) end
  return true
end
