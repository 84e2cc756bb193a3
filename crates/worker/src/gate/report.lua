-- What one admitted provider call found, for the provider's circuit breaker.
-- KEYS: 1 breaker (HASH, see admit.lua)
-- ARGV: 1 outcome (ok | fail), 2 was the probe (1 | 0), 3 failures that open the breaker,
--       4 first pause ms, 5 longest pause ms
-- Returns {state, transitioned, pause ms}: state 0 closed, 1 open, 2 half_open; transitioned 1 when this
-- call changed the state (so exactly one worker of the fleet logs each transition).
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'state', 'failures', 'level')
local state = b[1] or 'closed'
local failures = tonumber(b[2] or '0') or 0
local level = tonumber(b[3] or '0') or 0
local probe = ARGV[2] == '1'
local threshold = tonumber(ARGV[3])
local first = tonumber(ARGV[4])
local longest = tonumber(ARGV[5])

local function open(at_level)
  local pause = math.floor(first * (2 ^ at_level))
  if pause > longest then
    pause = longest
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'failures', 0, 'level', at_level,
    'open_until', now + pause, 'probe_until', 0)
  return {1, 1, pause}
end

if ARGV[1] == 'ok' then
  if state == 'closed' then
    if failures > 0 then
      redis.call('HSET', KEYS[1], 'failures', 0)
    end
    return {0, 0, 0}
  end
  -- Only the probe's answer closes the breaker: a late success of a call admitted before the
  -- breaker opened says little about the provider now.
  if probe and state == 'half_open' then
    redis.call('DEL', KEYS[1])
    return {0, 1, 0}
  end
  return {state == 'open' and 1 or 2, 0, 0}
end

-- A transient failure.
if state == 'closed' then
  failures = failures + 1
  if failures >= threshold then
    return open(0)
  end
  redis.call('HSET', KEYS[1], 'failures', failures)
  return {0, 0, 0}
end
if probe and state == 'half_open' then
  -- The probe failed: pause again, twice as long (up to the longest pause).
  return open(level + 1)
end
-- Failures of calls admitted before the breaker opened change nothing.
return {state == 'open' and 1 or 2, 0, 0}
