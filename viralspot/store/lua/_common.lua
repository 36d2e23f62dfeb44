-- Shared by the session scripts (prepended to each one when it is registered).
--
-- A session's seen set is the hash KEYS[2], in one of two forms:
--   * flat, while it holds at most FLAT_MAX keys: the one field 'a', the keys as little-endian
--     uint32 in the order they were served (4 bytes each). A claim appends the very bytes it
--     appends to the served sequence, and membership is a plain search (in C) for the key's 4
--     bytes at offsets that start a key: no per-bucket fields to read, pack and write per page;
--   * bucketed, once a claim would take it past FLAT_MAX keys (the flat keys move into buckets
--     and 'a' goes): field = key >> 16 (decimal), value = a container of the keys' low 16 bits,
--     roaring style:
--   * an "array": the little-endian uint16 lows in the order they were added, at most ARRAY_MAX
--     of them (2 bytes each); membership is a plain search (in C) at even offsets, so a claim
--     appends to an array instead of merging into a sorted one;
--   * a "bitmap": exactly BITMAP_BYTES bytes, bit (lo % 8) of byte (lo // 8) set for each lo.
-- A container is rewritten whole with HSET, so Redis sizes it exactly (no APPEND slack).
-- Served sequences are strings of little-endian uint32 keys (4 bytes each), also written whole.

local BITMAP_BYTES = 8192
local ARRAY_MAX = 4095
local FLAT_MAX = 1024

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Whether ``needle`` (``width`` bytes) is one of the ``width``-byte elements packed in ``s``: a
-- plain search (in C: a few times faster than a binary search in Lua for the sizes sessions
-- hold), accepted only at an offset where an element starts.
local function holds(s, needle, width)
  local at = string.find(s, needle, 1, true)
  while at do
    if at % width == 1 then return true end
    at = string.find(s, needle, at + 1, true)
  end
  return false
end

local function bucket_has(s, lo)
  if not s then return false end
  if #s == BITMAP_BYTES then
    local byte = string.byte(s, math.floor(lo / 8) + 1)
    return bit.band(byte, bit.lshift(1, lo % 8)) ~= 0
  end
  return holds(s, string.char(lo % 256, math.floor(lo / 256)), 2)
end

-- The seen set of ``key``: (flat, nil) while flat ('' for none), else (nil, true).
local function seen_form(key)
  local flat = redis.call('HGET', key, 'a')
  if flat then return flat, nil end
  if redis.call('EXISTS', key) == 1 then return nil, true end
  return '', nil
end

local function bitmap_set(s, los)  -- s: a bitmap container; los: lows to set, any order
  local changed, order = {}, {}
  for _, lo in ipairs(los) do
    local index = math.floor(lo / 8)
    local byte = changed[index]
    if byte == nil then
      byte = string.byte(s, index + 1)
      order[#order + 1] = index
    end
    changed[index] = bit.bor(byte, bit.lshift(1, lo % 8))
  end
  table.sort(order)
  local parts, prev = {}, 0
  for _, index in ipairs(order) do
    parts[#parts + 1] = string.sub(s, prev + 1, index)
    parts[#parts + 1] = string.char(changed[index])
    prev = index + 1
  end
  parts[#parts + 1] = string.sub(s, prev + 1)
  return table.concat(parts)
end

-- The numbers ``values`` packed little-endian with the struct code ``code`` ('H': the lows of an
-- array container), up to 1000 per call (Lua's unpack takes a few thousand).
local function packed(code, values)
  local parts = {}
  for first = 1, #values, 1000 do
    local last = math.min(#values, first + 999)
    parts[#parts + 1] = struct.pack('<' .. string.rep(code, last - first + 1), unpack(values, first, last))
  end
  return table.concat(parts)
end

-- The numbers packed little-endian in ``s`` with the struct code ``code`` of ``width`` bytes
-- ('H', 2: an array container's lows; 'I4', 4: keys), the inverse of ``packed``, unpacked up to
-- 1000 per call.
local function unpacked(code, width, s)
  local values = {}
  for at = 1, #s, 1000 * width do
    local count = math.min(1000, (#s - at + 1) / width)
    local chunk = {struct.unpack('<' .. string.rep(code, count), s, at)}
    for i = 1, count do values[#values + 1] = chunk[i] end
  end
  return values
end

-- The container ``s`` (or nil) with the lows ``los`` added: distinct, none already in it.
local function bucket_add(s, los)
  s = s or ''
  local len = #s
  if len ~= BITMAP_BYTES and len / 2 + #los <= ARRAY_MAX then
    return s .. packed('H', los)
  end
  if len ~= BITMAP_BYTES then  -- the array outgrows a bitmap: convert
    local all = unpacked('H', 2, s)
    for _, lo in ipairs(los) do all[#all + 1] = lo end
    return bitmap_set(string.rep('\0', BITMAP_BYTES), all)
  end
  return bitmap_set(s, los)
end

-- HMGET of ``fields`` (a list) in chunks (Lua's unpack takes at most a few thousand values).
local function hmget(key, fields)
  local values = {}
  for first = 1, #fields, 1000 do
    local chunk = redis.call('HMGET', key, unpack(fields, first, math.min(#fields, first + 999)))
    for i, value in ipairs(chunk) do values[first + i - 1] = value end
  end
  return values
end

-- HSET of ``pairs`` (a flat field, value, ... list) in chunks.
local function hset(key, pairs)
  for first = 1, #pairs, 1000 do
    redis.call('HSET', key, unpack(pairs, first, math.min(#pairs, first + 999)))
  end
end

-- Note the bucket (key >> 16) of ``key`` in ``buckets`` (false until loaded), listing each new
-- one in ``wanted``; returns the bucket.
local function want_bucket(buckets, wanted, key)
  local hi = math.floor(key / 65536)
  if buckets[hi] == nil then
    buckets[hi] = false
    wanted[#wanted + 1] = hi
  end
  return hi
end

-- Load the containers of the ``wanted`` buckets of the seen set ``key`` into ``buckets`` (one HMGET).
local function load_buckets(key, buckets, wanted)
  if #wanted == 0 then return end
  local values = hmget(key, wanted)
  for i, hi in ipairs(wanted) do buckets[hi] = values[i] end
end

-- Add ``keys`` (numbers: distinct, none in the set yet) to the bucketed seen set ``key``;
-- ``buckets`` holds the containers already loaded of their buckets (nil or false: none).
local function buckets_add(key, buckets, keys)
  local added = {}
  for _, k in ipairs(keys) do
    local hi = math.floor(k / 65536)
    local los = added[hi]
    if los then
      los[#los + 1] = k - hi * 65536
    else
      added[hi] = {k - hi * 65536}
    end
  end
  local fields = {}
  for hi, los in pairs(added) do
    fields[#fields + 1] = hi
    fields[#fields + 1] = bucket_add(buckets[hi] or nil, los)
  end
  hset(key, fields)
end

local function feed_state(packed)  -- {cursor, exhausted, plan, claim_id, before, after, has_more, created}
  if not packed then return nil end
  return cmsgpack.unpack(packed)
end

local function fresh_generation(record)  -- freshness record: "<generation>:<cleared>:<reset id>"
  if not record then return 0 end
  return tonumber(string.match(record, '^(%d+)'))
end

-- A snapshot of one feed and its served keys [start:stop], restarting the session's idle TTL (the
-- feed becomes the most recently used): read_feed's answer, and a failed claim's.
-- Returns {generation, has_plan, plan, cursor, served_count, exhausted, keys (packed uint32)}.
local function feed_read(meta, seen_key, fresh, feed, start, stop, ttl)
  local values = redis.call('HMGET', meta, 'g', 'f:' .. feed, 'o', 's:' .. feed)
  if not values[1] then
    return {fresh_generation(redis.call('GET', fresh)), 0, '', 0, 0, 0, ''}
  end
  local generation = tonumber(values[1])
  redis.call('HSET', meta, 'l', now_ms())
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', seen_key, ttl)
  local state = feed_state(values[2])
  if not state then
    return {generation, 0, '', 0, 0, 0, ''}
  end
  local order = cmsgpack.unpack(values[3])
  if order[#order] ~= feed then  -- the feed becomes the most recently used
    for i = #order, 1, -1 do
      if order[i] == feed then table.remove(order, i) end
    end
    order[#order + 1] = feed
    redis.call('HSET', meta, 'o', cmsgpack.pack(order))
  end
  local served = values[4] or ''
  return {generation, 1, state[3], state[1], #served / 4, state[2],
          string.sub(served, start * 4 + 1, stop * 4)}
end
