-- Admission of one provider status call, fleet-wide: the provider's circuit breaker first, then
-- its request budget. Either the call is admitted (and takes one slot of the budget) or nothing
-- is written and the caller is told how long to wait.
-- KEYS: 1 breaker (HASH: state = closed | open | half_open, failures = consecutive transient
--                  failures, open_until = Unix ms, probe_until = Unix ms, level = failed probes
--                  in a row), 2 budget (ZSET: one member per admitted call in the current
--                  window, scored by Unix ms; expires one window after the last call)
-- Both keys share one hash tag, so this is a single-slot script in a cluster.
-- ARGV: 1 budget limit (0 = no budget), 2 window ms, 3 slots reserved for young orders,
--       4 young (1 | 0), 5 unique member, 6 probe lease ms
-- Returns {verdict, wait ms, state, failures, opened_to_probe}
--   verdict: 0 go, 1 go as the probe, 2 wait (breaker), 3 wait (budget)
--   state:   0 closed, 1 open, 2 half_open (after this call)
--   opened_to_probe: 1 when this call moved the breaker from open to half_open.
-- Times come from the Redis clock, so every worker of the fleet agrees on them.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3])
local young = ARGV[4] == '1'

local b = redis.call('HMGET', KEYS[1], 'state', 'failures', 'open_until', 'probe_until')
local state = b[1] or 'closed'
local failures = tonumber(b[2] or '0') or 0
local open_until = tonumber(b[3] or '0') or 0
local probe_until = tonumber(b[4] or '0') or 0
local codes = {closed = 0, open = 1, half_open = 2}

local probe = false
if state == 'open' then
  if now < open_until then
    return {2, open_until - now, 1, failures, 0}
  end
  probe = true
elseif state == 'half_open' then
  -- One probe at a time for the whole fleet; a probe that never reported (its worker died)
  -- gives way to another once its lease is over.
  if now < probe_until then
    -- The probe usually answers within a request's time: look again soon rather than at the
    -- end of its lease.
    return {2, math.min(probe_until - now, 1000), 2, failures, 0}
  end
  probe = true
end

-- A sliding log rather than a token bucket: a bucket of `limit` refilling at limit/window lets
-- up to 2 * limit - 1 calls into some window, which is exactly what a provider counts.
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[2])
  -- Old orders (past their fast phase) may not use the slots reserved for young ones.
  local allowed = limit
  if not young then
    allowed = limit - reserved
  end
  if count >= allowed then
    -- Room appears when the (count - allowed + 1) oldest calls have left the window.
    local entry = redis.call('ZRANGE', KEYS[2], count - allowed, count - allowed, 'WITHSCORES')
    local wait = tonumber(entry[2]) + window - now
    if wait < 1 then
      wait = 1
    end
    return {3, wait, codes[state], failures, 0}
  end
  redis.call('ZADD', KEYS[2], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[2], window)
end

if probe then
  local was = state
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[6]))
  local opened = 0
  if was == 'open' then
    opened = 1
  end
  return {1, 0, 2, failures, opened}
end
return {0, 0, 0, failures, 0}
