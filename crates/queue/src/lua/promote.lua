-- Make a scheduled job due now (a provider webhook says "check this payment now").
-- KEYS: 1 due, 2 leases, 3 promoted, 4 signal. ARGV: 1 id
-- Returns 1 moved to now, 0 already due, 2 running now (it will run again right after, not
-- after its usual delay), -1 no such job.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local id = ARGV[1]
local due = redis.call('ZSCORE', KEYS[1], id)
if due then
  if tonumber(due) <= now then return 0 end
  redis.call('ZADD', KEYS[1], 'XX', now, id)
  if redis.call('LPUSH', KEYS[4], '1') > 64 then redis.call('LTRIM', KEYS[4], 0, 63) end
  return 1
end
if redis.call('ZSCORE', KEYS[2], id) then
  redis.call('HSET', KEYS[3], id, '1')
  return 2
end
return -1
