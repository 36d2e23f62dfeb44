-- seen_among: which of the given keys the session was served (read-only).
-- KEYS: seen.  ARGV: keys (packed uint32).  Returns the seen ones, packed, in the given order.
local packed_keys = ARGV[1]
local needles = {}
for at = 1, #packed_keys, 4 do needles[#needles + 1] = string.sub(packed_keys, at, at + 3) end
local flat, bucketed = seen_form(KEYS[1])
local found = {}
if bucketed then
  local keys, buckets, wanted = unpacked('I4', 4, packed_keys), {}, {}
  for _, key in ipairs(keys) do want_bucket(buckets, wanted, key) end
  load_buckets(KEYS[1], buckets, wanted)
  for i, key in ipairs(keys) do
    if bucket_has(buckets[math.floor(key / 65536)], key % 65536) then found[#found + 1] = needles[i] end
  end
elseif #flat > 0 then
  for _, needle in ipairs(needles) do
    if holds(flat, needle, 4) then found[#found + 1] = needle end
  end
end
return table.concat(found)
