-- Shared by page, summary and reset: a session's fields s b k n c r (``meta``), its feeds' states,
-- and whether it is whole (docs/architecture.md: s b k n c there, an 8-byte seed, uint32 bounds none
-- below the one before, whole feed ids, n c decimal, a whole state for each feed named, none after).
-- A session not whole, or a key of another type, is gone to every script; what a page reads anyway.
local function read_session(key)
  local meta = redis.pcall('HMGET', key, 's', 'b', 'k', 'n', 'c', 'r')
  if meta.err then return {}, {}, false end  -- WRONGTYPE
  local seed, bounds, registry, total, created = meta[1], meta[2], meta[3], meta[4], meta[5]
  if not (seed and bounds and registry and total and created) or #seed ~= 8 or #bounds % 4 ~= 0
      or #registry % 9 ~= 0 or not string.find(total, '^%d+$') or not string.find(created, '^%d+$')
      or #total > 15 or #created > 15 then
    return meta, {}, false
  end
  for at = 5, #bounds, 4 do
    if struct.unpack('<I4', bounds, at) < struct.unpack('<I4', bounds, at - 4) then return meta, {}, false end
  end
  local names = {}
  for i = 1, #registry / 9 + 1 do names[i] = 'f' .. i end
  local states = redis.call('HMGET', key, unpack(names))
  if states[#names] then return meta, states, false end
  states[#names] = nil
  for i = 1, #states do
    if not states[i] or #states[i] < 8 or (#states[i] - 8) % 6 ~= 0 then return meta, states, false end
  end
  return meta, states, true
end
