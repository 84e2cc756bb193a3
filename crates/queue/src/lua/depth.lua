-- Depth per state and the earliest due time, read in one consistent step.
-- KEYS: 1 due, 2 leases, 3 dead
-- Returns {now, due, scheduled, leased, dead, earliest due ms or -1}
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local earliest = -1
if head[2] then earliest = tonumber(head[2]) end
return {
  now,
  redis.call('ZCOUNT', KEYS[1], '-inf', now),
  redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'),
  redis.call('ZCARD', KEYS[2]),
  redis.call('HLEN', KEYS[3]),
  earliest
}
