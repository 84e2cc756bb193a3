-- Make a scheduled job due now (a provider webhook says "check this payment now"); after
-- writes.lua.
-- KEYS: 1 due, 2 leases, 3 promoted, 4 signal. ARGV: 1 id
-- Returns 1 moved to now, 0 already due, 2 running now (it will run again right after, not
-- after its usual delay), -1 no such job.
local now = queue_now()
local id = ARGV[1]
local due = redis.call('ZSCORE', KEYS[1], id)
if due then
  if tonumber(due) <= now then return 0 end
  queue_move(KEYS[1], KEYS[4], id, now, now)
  return 1
end
if redis.call('ZSCORE', KEYS[2], id) then
  queue_promote_running(KEYS[3], id, now)
  return 2
end
return -1
