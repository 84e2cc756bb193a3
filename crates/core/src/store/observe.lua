-- Record one check of a still-open order. A terminal status recorded meanwhile by another run is
-- never overwritten. KEYS: 1 order hash, 2 history list. ARGV: 1 status, 2 raw status,
-- 3 next check (Unix ms, or '' when none), 4 poll state JSON, 5 history entry JSON,
-- 6 history length, 7 counts as a check ('1' | '0'), 8 last error ('' clears)
-- Returns 1 when recorded as the current state, 0 when the order was already terminal.
local terminal = {paid = true, failed = true, expired = true, cancelled = true, unresolved = true}
redis.call('LPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
local current = redis.call('HGET', KEYS[1], 'status')
if current and terminal[current] then return 0 end
if ARGV[7] == '1' then
  redis.call('HINCRBY', KEYS[1], 'checks', 1)
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'raw_status', ARGV[2])
end
redis.call('HSET', KEYS[1], 'poll', ARGV[4], 'last_error', ARGV[8])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'next_check_at')
else
  redis.call('HSET', KEYS[1], 'next_check_at', ARGV[3])
end
return 1
