-- Shared by the active-session index scripts (prepended to each one when it is registered).

-- Redis server time in milliseconds, the microseconds kept as a fraction (the index's scores).
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- A sorted-set score bound excluding ``ms`` itself (ZCOUNT / ZRANGEBYSCORE syntax), all digits kept.
local function after(ms)
  return '(' .. string.format('%.17g', ms)
end
