-- seen_among: which of the given keys the session was served (read-only).
-- KEYS: seen.  ARGV: keys (packed uint32).  Returns the seen ones, packed, in the given order.
local keys = ARGV[1]
local count = #keys / 4
if count == 0 or redis.call('EXISTS', KEYS[1]) == 0 then return '' end
local list, buckets, wanted = {}, {}, {}
local offset = 1
for i = 1, count do
  local key
  key, offset = struct.unpack('<I4', keys, offset)
  list[i] = key
  want_bucket(buckets, wanted, key)
end
load_buckets(KEYS[1], buckets, wanted)
local found = {}
for _, key in ipairs(list) do
  if bucket_has(buckets[math.floor(key / 65536)], key % 65536) then
    found[#found + 1] = key
  end
end
return packed('I4', found)
