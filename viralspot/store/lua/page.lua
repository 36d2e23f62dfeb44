#!lua
-- One page of a session's random feed, atomically (store/base.py, SessionStoreBackend.serve_page).
--
-- KEYS[1]  the session's hash (redis_store.py describes its fields); KEYS[2], when given, the
--          active-session index, touched when the page is served (one server; on a cluster the
--          index is in another slot and touch.lua does it)
-- ARGV     feed id, seed, bounds (uint32 LE), create ('1'), cursor the candidates start at
--          ('' for a read), scanned_to, candidates (ascending uint32 LE positions), offset, limit,
--          max_ahead, ttl (ms), max_feeds, max_items, session id, touch ('1': the index is due),
--          and for a weighted feed the candidates' canonical positions (uint32 LE, one each)
-- Reply    {status, seed, bounds, cursor, served, has_more, page positions (uint32 LE), created}
--
-- Work is bounded by the page: no field it reads or writes grows past one 64 Ki-position block
-- (8 KiB) per feed. A weighted feed (an id of a capital initial) holds ticket positions in its
-- containers and its items' canonical positions in the session's 'w.<block>' (docs/architecture.md).
local key = KEYS[1]
local feed_id, seed, bounds, create = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local from, scanned_to, candidates = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local offset, limit, max_ahead = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local canonical = ARGV[16] or ''
local ttl, max_feeds, max_items = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local SERVED, STALE, ABSENT, BEYOND, FEED_LIMIT, ITEM_LIMIT = 0, 1, 2, 3, 4, 5
-- Containers: 'a' (97) an ascending array of 2-byte lows, 'u' (117) an array in the order added
-- (the 'w.' family's), or 'b' (98) a bitmap.
local BLOCK, ID_BYTES, ARRAY, UNSORTED, BITMAP = 65536, 9, 97, 117, 98
local need = offset + limit
local floor, byte, char, sub = math.floor, string.byte, string.char, string.sub
local _

local meta, states, whole = read_session(key)
local fresh = not whole
if fresh then
  -- No session, a reset's record, or one not whole (damaged, or of another layout): never served from.
  if not create then return {ABSENT, '', '', 0, 0, 0, '', 0} end
  meta, states = {seed, bounds, '', '0', nil, meta[6]}, {}
end
local session_seed, session_bounds, registry = meta[1], meta[2], meta[3]
local registry_before = registry
local total = tonumber(meta[4])

-- The feed: its number in the registry, cursor, served count and block index (block, running count).
local feed = nil
for number = 1, #registry / ID_BYTES do
  if sub(registry, (number - 1) * ID_BYTES + 1, number * ID_BYTES) == feed_id then feed = number break end
end
-- The feed's block index: per block it served in, (uint16 block, uint32 served up to its end),
-- read entry by entry where a page needs it, never decoded whole.
local cursor, served, index = 0, 0, ''
local function entry(i) local block, upto = struct.unpack('<HI4', index, 6 * i - 5) return block, upto end
-- Damage found in what a page reads: the session loses its seed (gone to every script) before any write.
local function forget()
  redis.call('HDEL', key, 's')
  return {ABSENT, '', '', 0, 0, 0, '', 0}
end
if feed then
  local state = states[feed]
  cursor, served = struct.unpack('<I4I4', state)
  index = sub(state, 9)
  if served ~= (#index > 0 and select(2, entry(#index / 6)) or 0) then return forget() end
end

-- Whether a container's kind and size are ones this script writes: a ``list`` (ARRAY, or UNSORTED for
-- 'w.') of 2-byte lows or a bitmap of a block at most; given ``count``, holding exactly that many lows.
local function sound(value, list, count)
  if not value or count and count <= 0 then return false end
  if byte(value, 1) == list then return #value % 2 == 1 and (not count or #value == 1 + 2 * count) end
  return byte(value, 1) == BITMAP and #value >= 2 and #value <= 1 + BLOCK / 8
    and (not count or 8 * (#value - 1) >= count)
end

-- A new session reads no container: the hash's fields are another state's until it is written.
local containers = {}
local function container(name)
  local value = containers[name]
  if value == nil then
    value = not fresh and redis.call('HGET', key, name) or false
    containers[name] = value
  end
  return value
end

-- Lows (positions within a block) at ranks [first, last) of a container holding count of them,
-- added to out. A bitmap is counted from whichever end is nearer the ranks; false if it holds fewer.
local POPCOUNT = {[0] = 0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4,1,2,2,3,2,3,3,4,2,3,3,4,3,4,4,5,1,2,2,3,2,3,3,4,2,3,3,4,3,4,4,5,2,3,3,4,3,4,4,5,3,4,4,5,4,5,5,6,1,2,2,3,2,3,3,4,2,3,3,4,3,4,4,5,2,3,3,4,3,4,4,5,3,4,4,5,4,5,5,6,2,3,3,4,3,4,4,5,3,4,4,5,4,5,5,6,3,4,4,5,4,5,5,6,4,5,5,6,5,6,6,7,1,2,2,3,2,3,3,4,2,3,3,4,3,4,4,5,2,3,3,4,3,4,4,5,3,4,4,5,4,5,5,6,2,3,3,4,3,4,4,5,3,4,4,5,4,5,5,6,3,4,4,5,4,5,5,6,4,5,5,6,5,6,6,7,2,3,3,4,3,4,4,5,3,4,4,5,4,5,5,6,3,4,4,5,4,5,5,6,4,5,5,6,5,6,6,7,3,4,4,5,4,5,5,6,4,5,5,6,5,6,6,7,4,5,5,6,5,6,6,7,5,6,6,7,6,7,7,8}
local function ranks(value, first, last, base, out, count)
  if byte(value, 1) == ARRAY then
    for rank = first, last - 1 do
      local lo, hi = byte(value, 2 + 2 * rank, 3 + 2 * rank)
      out[#out + 1] = base + lo + 256 * hi
    end
    return true
  end
  local found, from_end = {}, first > count - last
  local rank = from_end and count or 0
  local start, stop, step = 2, #value, 1
  if from_end then start, stop, step = #value, 2, -1 end
  for i = start, stop, step do
    local b = byte(value, i)
    local bits = POPCOUNT[b]
    local low = from_end and rank - bits or rank
    if bits > 0 and low < last and low + bits > first then
      local r = low
      for bit_index = 0, 7 do
        if b % 2 == 1 then
          if r >= first and r < last then found[#found + 1] = base + (i - 2) * 8 + bit_index end
          r = r + 1
        end
        b = floor(b / 2)
      end
    end
    rank = from_end and low or low + bits
    if (from_end and rank <= first) or (not from_end and rank >= last) then break end
  end
  if from_end then table.sort(found) end
  for i = 1, #found do out[#out + 1] = found[i] end
  return (from_end and rank <= first) or (not from_end and rank >= last)
end

-- The feed's served positions at ordinals [first, last), packed: the entries covering them found
-- by a binary search of the running counts; nil from a damaged container, or positions not ascending
-- below the feed's cursor (a feed walks its order forward).
local function page(first, last)
  local out = {}
  local entries = #index / 6
  local lo, hi = 1, entries
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    local _, upto = entry(mid)
    if upto > first then hi = mid else lo = mid + 1 end
  end
  local before = 0
  if lo > 1 then _, before = entry(lo - 1) end
  for i = lo, entries do
    if before >= last then break end
    local block, upto = entry(i)
    if upto > first then
      local value = container(feed .. '.' .. block)
      if not (sound(value, ARRAY, upto - before) and ranks(value, math.max(first, before) - before,
          math.min(last, upto) - before, block * BLOCK, out, upto - before)) then
        return nil
      end
    end
    before = upto
  end
  local previous = -1
  for i = 1, #out do
    if out[i] <= previous or out[i] >= cursor then return nil end
    previous, out[i] = out[i], struct.pack('<I4', out[i])
  end
  return table.concat(out)
end

-- Every answer restarts an existing session's idle TTL; a served page also touches the index
-- when the caller asks (ARGV[15], at most once a second per process) or it created the session.
local created = false
local function reply(status, positions, has_more)
  if not fresh then redis.call('PEXPIRE', key, ttl) end
  if status == SERVED and KEYS[2] and (ARGV[15] == '1' or created) then touch_index(KEYS[2], ARGV[14], ttl) end
  return {status, session_seed, session_bounds, cursor, served, has_more and 1 or 0, positions or '',
    created and 1 or 0}
end

if session_seed ~= seed then return reply(STALE) end
if offset > served + max_ahead then return reply(BEYOND) end
if from == '' then
  local positions = page(offset, math.min(need, served))
  if not positions then return forget() end
  return reply(SERVED, positions, served > need)
end
if bounds ~= session_bounds then
  local last = #session_bounds >= 4 and struct.unpack('<I4', session_bounds, #session_bounds - 3) or 0
  local grows = #bounds == #session_bounds + 4 and sub(bounds, 1, #session_bounds) == session_bounds
    and struct.unpack('<I4', bounds, #bounds - 3) > last
  if not grows then return reply(STALE) end
end
from = tonumber(from)
if from > cursor or cursor > scanned_to then return reply(STALE) end
if not feed and #registry / ID_BYTES >= max_feeds then return reply(FEED_LIMIT) end
local want = math.max(0, need - served)
if not feed then
  registry = registry .. feed_id
  feed = #registry / ID_BYTES
end

-- Whether a (canonical) position was served by another feed of the session: held by an unweighted
-- feed's containers, or by the weighted feeds' 'w.' ones.
local feeds = #registry / ID_BYTES
local function is_weighted(number)
  local initial = byte(registry, (number - 1) * ID_BYTES + 1)
  return initial >= 65 and initial <= 90
end
local weighted, any_weighted = is_weighted(feed), false
for number = 1, feeds do any_weighted = any_weighted or is_weighted(number) end
local others = {}
local broken = false  -- another feed's container, or a 'w.' one, found damaged
local function held(value, low)
  local kind = byte(value, 1)
  if kind == UNSORTED then  -- a search for the low's two bytes at an even offset
    local pattern, at = char(low % 256, floor(low / 256)), 2
    while true do
      local found = string.find(value, pattern, at, true)
      if not found then return false end
      if found % 2 == 0 then return true end
      at = found + 1
    end
  end
  if kind == ARRAY then
    local lo, hi = 0, (#value - 1) / 2 - 1
    while lo <= hi do
      local mid = floor((lo + hi) / 2)
      local a, b = byte(value, 2 + 2 * mid, 3 + 2 * mid)
      local v = a + 256 * b
      if v == low then return true elseif v < low then lo = mid + 1 else hi = mid - 1 end
    end
    return false
  end
  local b = byte(value, 2 + floor(low / 8))
  return b ~= nil and floor(b / 2 ^ (low % 8)) % 2 == 1
end
local function seen(position)
  if feeds == 1 and not weighted then return false end
  local block = floor(position / BLOCK)
  local list = others[block]
  if not list then
    list = {}
    for other = 1, feeds do
      if other ~= feed and not is_weighted(other) then
        local value = container(other .. '.' .. block)
        if value then list[#list + 1] = value end
        broken = broken or value and not sound(value, ARRAY)
      end
    end
    local value = any_weighted and container('w.' .. block)
    if value then list[#list + 1] = value end
    broken = broken or value and not sound(value, UNSORTED)
    others[block] = list
  end
  local low = position % BLOCK
  for i = 1, #list do
    if held(list[i], low) then return true end
  end
  return false
end

-- Take the unseen candidates from the feed's cursor on.
-- (A weighted feed's candidates may hold two tickets of one item: the first is taken.)
local taken, has_more, new_cursor = {}, false, scanned_to
local taken_canonical, claimed = {}, {}
for i = 1, #candidates, 4 do
  local position = struct.unpack('<I4', candidates, i)
  local item = weighted and struct.unpack('<I4', canonical, i) or position
  if position >= cursor and not claimed[item] and not seen(item) then
    if #taken == want then
      has_more, new_cursor = true, position
      break
    end
    taken[#taken + 1] = position
    if weighted then
      claimed[item] = true
      taken_canonical[#taken_canonical + 1] = item
    end
  end
end
if broken then return forget() end

if total + #taken > max_items then return reply(ITEM_LIMIT) end
-- Append the taken positions to the feed's containers, block by block (nil: an array not ascending).
local function append(value, count, lows)
  local last_low = lows[#lows]
  local total_count = count + #lows
  local as_array = 1 + 2 * total_count <= 2 + floor(last_low / 8)
  if value and byte(value, 1) == ARRAY and as_array or not value and as_array then
    local parts = {value or 'a'}
    for i = 1, #lows do parts[#parts + 1] = char(lows[i] % 256, floor(lows[i] / 256)) end
    return table.concat(parts)
  end
  if value and byte(value, 1) == ARRAY then
    local all = {}
    ranks(value, 0, count, 0, all)
    for i = 1, #lows do all[#all + 1] = lows[i] end
    for i = 2, #all do
      if all[i] <= all[i - 1] then return nil end
    end
    value, lows = nil, all
  end
  -- A bitmap: bytes before the first new low are kept, the rest rebuilt.
  local first_byte = floor(lows[1] / 8)
  local kept = value or 'b'
  local carry = 0
  if #kept - 1 > first_byte then
    carry = byte(kept, 2 + first_byte)
    kept = sub(kept, 1, 1 + first_byte)
  else
    kept = kept .. string.rep('\0', first_byte - (#kept - 1))
  end
  local bytes = {}
  local last_byte = floor(last_low / 8)
  for i = first_byte, last_byte do bytes[i - first_byte + 1] = 0 end
  bytes[1] = carry
  for i = 1, #lows do
    local index = floor(lows[i] / 8) - first_byte + 1
    local bit_value = 2 ^ (lows[i] % 8)
    if floor(bytes[index] / bit_value) % 2 == 0 then bytes[index] = bytes[index] + bit_value end
  end
  local parts = {kept}
  for i = 1, #bytes, 4096 do parts[#parts + 1] = char(unpack(bytes, i, math.min(#bytes, i + 4095))) end
  return table.concat(parts)
end

-- Add lows to a container of the 'w.' family, whose lows arrive in any order: appended to its
-- array, which past 8 KiB becomes a bitmap (never larger); or set in the bitmap.
local function insert(value, lows)
  if value and byte(value, 1) ~= UNSORTED then  -- a bitmap
    for _, low in ipairs(lows) do
      local index, bit_value = 2 + floor(low / 8), 2 ^ (low % 8)
      if index > #value then value = value .. string.rep('\0', index - #value) end
      local b = byte(value, index)
      if floor(b / bit_value) % 2 == 0 then
        value = sub(value, 1, index - 1) .. char(b + bit_value) .. sub(value, index + 1)
      end
    end
    return value
  end
  local parts = {'u', value and sub(value, 2) or ''}
  for _, low in ipairs(lows) do parts[#parts + 1] = char(low % 256, floor(low / 256)) end
  value = table.concat(parts)
  if #value <= 1 + BLOCK / 8 then return value end
  local all = {}
  for i = 2, #value, 2 do all[#all + 1] = byte(value, i) + 256 * byte(value, i + 1) end
  table.sort(all)
  return append(nil, 0, all)
end

-- The fields to write, in one HSET; a container written is also what later reads of it see.
local writes = {}
local function put(name, value)
  containers[name] = value
  writes[#writes + 1], writes[#writes + 2] = name, value
end
-- Ascending positions by block: a list of {block, lows}.
local function by_block(positions)
  local groups, i = {}, 1
  while i <= #positions do
    local block, lows = floor(positions[i] / BLOCK), {}
    while i <= #positions and floor(positions[i] / BLOCK) == block do
      lows[#lows + 1] = positions[i] % BLOCK
      i = i + 1
    end
    groups[#groups + 1] = {block, lows}
  end
  return groups
end

if weighted then
  table.sort(taken_canonical)
  for _, group in ipairs(by_block(taken_canonical)) do
    local name = 'w.' .. group[1]
    put(name, insert(container(name) or nil, group[2]))  -- sound: seen() read it
  end
end
local entries = #index / 6
local last_block, last_upto, previous_upto = -1, 0, 0
if entries > 0 then last_block, last_upto = entry(entries) end
if entries > 1 then _, previous_upto = entry(entries - 1) end
for _, group in ipairs(by_block(taken)) do
  local block, lows = group[1], group[2]
  if block ~= last_block then  -- a new entry, its count set below
    index = index .. struct.pack('<HI4', block, served)
    last_block, previous_upto, last_upto = block, served, served
  end
  local name, count = feed .. '.' .. block, last_upto - previous_upto
  local value = container(name) or nil
  if (value or count > 0) and not sound(value, ARRAY, count) then return forget() end
  value = append(value, count, lows)
  if not value then return forget() end
  put(name, value)
  served = served + #lows
  last_upto = served
  index = sub(index, 1, #index - 6) .. struct.pack('<HI4', block, served)
  total = total + #lows
end
cursor = new_cursor

put('f' .. feed, struct.pack('<I4I4', cursor, served) .. index)
put('n', total)
if registry ~= registry_before then put('k', registry) end
local positions = page(offset, math.min(need, served))  -- before any write
if not positions then return forget() end
if fresh or bounds ~= session_bounds then
  session_bounds = bounds
  put('b', bounds)
end
if fresh then
  -- A new session replaces whatever was there, but for the record of the reset before it.
  local now = redis.call('TIME')
  put('s', seed)
  put('c', now[1] * 1000 + floor(now[2] / 1000))
  if meta[6] then put('r', meta[6]) end
end
if not fresh then redis.call('HSET', key, unpack(writes))
elseif not replace_hash(key, writes) then return {ABSENT, '', '', 0, 0, 0, '', 0} end  -- _replace.lua
created, fresh = fresh, false
return reply(SERVED, positions, has_more or served > need)
