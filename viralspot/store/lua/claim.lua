-- claim_unseen: compare-and-set on (generation, cursor, plan), then take the unseen candidates
-- (a cursor that moved ahead on the same plan is no conflict: see SessionStoreBackend.claim_unseen).
-- KEYS: meta, seen, fresh (all vs:{<session>}:...)
-- ARGV: feed, generation, expect_cursor, expect_has_plan ("0"/"1"), expect_plan, plan, domain,
--       candidates (packed little-endian <double position, uint32 key> pairs), scanned_to, want,
--       page_start, page_stop, ttl_ms, max_feeds, claim_id, expect_served ('': any; a number: the
--       served count must be exactly that and the cursor exactly expect_cursor)
-- Returns {1, served_count, exhausted, has_more, claimed (packed uint32), page (packed uint32), cursor,
-- created (1: this claim made the session)},
-- or, when the compare-and-set fails, {0, active, <the feed as read_feed answers it for the page>}:
-- nothing claimed, and the session's idle TTL restarts as a read's does.
local meta, seen_key, fresh = KEYS[1], KEYS[2], KEYS[3]
local feed = ARGV[1]
local generation = tonumber(ARGV[2])
local expect_cursor = tonumber(ARGV[3])
local expect_plan = nil
if ARGV[4] == '1' then expect_plan = ARGV[5] end
local plan = ARGV[6]
local domain = tonumber(ARGV[7])
local candidates = ARGV[8]
local scanned_to = tonumber(ARGV[9])
local want = tonumber(ARGV[10])
local page_start, page_stop = tonumber(ARGV[11]), tonumber(ARGV[12])
local ttl = tonumber(ARGV[13])
local max_feeds = tonumber(ARGV[14])
local claim_id = ARGV[15]
local expect_served = tonumber(ARGV[16])
local state_field, served_field = 'f:' .. feed, 's:' .. feed

-- One HMGET reads what the claim needs of the session: an active session always has 'g'.
local values = redis.call('HMGET', meta, 'g', 'n', state_field, served_field)
local active = values[1] ~= false
local current_generation, state, served_total = 0, nil, 0
if active then
  current_generation, served_total = tonumber(values[1]), tonumber(values[2])
  state = feed_state(values[3])
else
  current_generation = fresh_generation(redis.call('GET', fresh))
end
local served = values[4] or ''

-- A resend of a claim already applied (redis-py retries after a timeout) returns its outcome again,
-- whether it made the session included (the client indexes a session a claim made).
if state and state[4] == claim_id then
  return {1, #served / 4, state[2], state[7], string.sub(served, state[5] * 4 + 1, state[6] * 4),
          string.sub(served, page_start * 4 + 1, page_stop * 4), state[1], state[8] or 0}
end

local cursor, current_plan = 0, nil
if state then cursor, current_plan = state[1], state[3] end
-- A cursor that moved ahead on the same plan (another process claimed meanwhile) but not to
-- scanned_to is no conflict: the candidates before it are dropped below.
local moved_on = plan == expect_plan and expect_cursor < cursor and cursor < scanned_to
  and not expect_served
if current_generation ~= generation or current_plan ~= expect_plan
    or (cursor ~= expect_cursor and not moved_on)
    or (expect_served and #served / 4 ~= expect_served) then
  local view = feed_read(meta, seen_key, fresh, feed, page_start, page_stop, ttl)
  return {0, active and 1 or 0, unpack(view)}
end

local now = now_ms()
if not active then  -- a new session, at the generation of its freshness record
  -- The record stays until its TTL: a resent reset recognises itself by its id (reset.lua).
  redis.call('DEL', seen_key)
  redis.call('HSET', meta, 'g', current_generation, 'c', now, 'o', cmsgpack.pack({}))
end
if not state then  -- a new feed: the newest; the oldest ones past max_feeds are forgotten
  local order = cmsgpack.unpack(redis.call('HGET', meta, 'o'))
  order[#order + 1] = feed
  while #order > max_feeds do
    local oldest = table.remove(order, 1)
    redis.call('HDEL', meta, 'f:' .. oldest, 's:' .. oldest)
  end
  redis.call('HSET', meta, 'o', cmsgpack.pack(order))
end

local before = #served / 4
if moved_on then want = math.max(0, math.min(want, page_stop - before)) end  -- counted from a lagging view

-- The candidates from the first one not before the cursor (a claim that moved on walked the rest).
local total = #candidates / 12
local first = 1
if moved_on then
  while first <= total and struct.unpack('<d', candidates, 12 * first - 11) < cursor do first = first + 1 end
end
-- Each candidate's key as its 4 packed bytes (a "needle"): what a flat seen set is searched for and
-- what the served sequence and the flat set append, with nothing unpacked or packed per key.
local flat, bucketed = seen_form(seen_key)
local claimed, taken, buckets = {}, {}, nil
local new_cursor, has_more = scanned_to, 0
-- Walk the candidates in order: skip the seen, take up to ``want``, stop on the first leftover.
local function take(i, needle)  -- false: the page is full, ``i`` is its leftover
  if #claimed >= want then
    new_cursor, has_more = struct.unpack('<d', candidates, 12 * i - 11), 1
    return false
  end
  claimed[#claimed + 1] = needle
  taken[needle] = true
  return true
end
if bucketed then  -- the containers of every candidate's bucket, in one HMGET
  local needles, keys, his, wanted = {}, {}, {}, {}
  buckets = {}
  for i = first, total do
    local needle = string.sub(candidates, 12 * i - 3, 12 * i)
    local key = struct.unpack('<I4', needle)
    needles[i], keys[i], his[i] = needle, key, want_bucket(buckets, wanted, key)
  end
  load_buckets(seen_key, buckets, wanted)
  for i = first, total do
    local needle = needles[i]
    if not taken[needle] and not bucket_has(buckets[his[i]], keys[i] - his[i] * 65536) then
      if not take(i, needle) then break end
    end
  end
else
  for i = first, total do
    local needle = string.sub(candidates, 12 * i - 3, 12 * i)
    if not taken[needle] and not holds(flat, needle, 4) then
      if not take(i, needle) then break end
    end
  end
end

if #claimed > 0 then
  local bytes = table.concat(claimed)
  if bucketed then
    buckets_add(seen_key, buckets, unpacked('I4', 4, bytes))
  elseif #flat / 4 + #claimed > FLAT_MAX then  -- the flat set outgrows its form: into buckets
    redis.call('HDEL', seen_key, 'a')
    buckets_add(seen_key, {}, unpacked('I4', 4, flat .. bytes))
  else
    redis.call('HSET', seen_key, 'a', flat .. bytes)
  end
  served = served .. bytes
end
local exhausted = 0
if new_cursor >= domain then exhausted = 1 end
local created = 0
if not active then created = 1 end
redis.call('HSET', meta, served_field, served, 'l', now, 'n', served_total + #claimed, state_field,
           cmsgpack.pack({new_cursor, exhausted, plan, claim_id, before, #served / 4, has_more, created}))
redis.call('PEXPIRE', meta, ttl)
redis.call('PEXPIRE', seen_key, ttl)
return {1, #served / 4, exhausted, has_more, string.sub(served, before * 4 + 1),
        string.sub(served, page_start * 4 + 1, page_stop * 4), new_cursor, created}
