-- Shared by page.lua, summary.lua and reset.lua: a session's fields s b k n c r (``meta``), its
-- feeds' states, and whether it is whole. Whole: s b k n c all there; an 8-byte seed; bounds of
-- uint32s, none below the one before (a caller may create a session of no bounds, or of an epoch
-- repeated: store/base.py holds every backend to them); a registry of whole feed ids; n and c
-- decimal; a state for each feed the registry names (cursor and served count, then whole 6-byte
-- index entries) and none for the next (a registry cut short). A session not whole (damaged, of another layout, or a key of another
-- type) is gone: no page serves from it, inspection does not show it, a reset does not find it, the
-- next creating page replaces it. Only what every page reads anyway is checked, and of the states
-- their lengths; a page checks its feed's state and the containers it reads (page.lua).
local function read_session(key)
  local meta = redis.pcall('HMGET', key, 's', 'b', 'k', 'n', 'c', 'r')
  if meta.err then return {}, {}, false end  -- WRONGTYPE
  local seed, bounds, registry, total, created = meta[1], meta[2], meta[3], meta[4], meta[5]
  if not (seed and bounds and registry and total and created) or #seed ~= 8
      or #bounds % 4 ~= 0 or #registry % 9 ~= 0 or not string.find(total, '^%d+$') or #total > 15
      or not string.find(created, '^%d+$') or #created > 15 then
    return meta, {}, false
  end
  local previous = 0
  for at = 1, #bounds, 4 do
    local bound = struct.unpack('<I4', bounds, at)
    if bound < previous then return meta, {}, false end
    previous = bound
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
