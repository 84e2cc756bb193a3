-- Move an order to a terminal status; the first transition wins.
-- KEYS: 1 order hash, 2 history list. ARGV: 1 status, 2 raw status, 3 at (RFC 3339),
-- 4 history entry JSON, 5 history length, 6 counts as a check ('1' | '0'),
-- 7 delivered codes JSON ('' when none; kept for delivery, never shown by the API)
-- Returns {1, status} when this call made the transition, {0, status} with the status that won.
local terminal = {paid = true, failed = true, expired = true, cancelled = true, unresolved = true}
local current = redis.call('HGET', KEYS[1], 'status')
if current and terminal[current] then return {0, current} end
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'checks', 1) end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'raw_status', ARGV[2], 'terminal_at', ARGV[3])
redis.call('HDEL', KEYS[1], 'next_check_at')
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'codes', ARGV[7]) end
return {1, ARGV[1]}
