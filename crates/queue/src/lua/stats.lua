-- Counts per state, read in one consistent step.
-- KEYS: 1 jobs, 2 due, 3 leases, 4 dead, 5 stats
-- Returns {now, total, ready, scheduled, active, dead, completed, retried, rescheduled, dead_lettered}
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local s = redis.call('HMGET', KEYS[5], 'complete', 'retry', 'reschedule', 'dead')
return {
  now,
  redis.call('HLEN', KEYS[1]),
  redis.call('ZCOUNT', KEYS[2], '-inf', now),
  redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  redis.call('ZCARD', KEYS[3]),
  redis.call('HLEN', KEYS[4]),
  tonumber(s[1] or '0'), tonumber(s[2] or '0'), tonumber(s[3] or '0'), tonumber(s[4] or '0')
}
