-- Extend the leases a worker still holds.
-- KEYS: 1 leases, 2 tokens
-- ARGV: 1 lease ms, then id, token pairs
-- Returns the ids whose lease was lost (token changed or lease gone).
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local lease_until = now + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[2], id) == token then
    redis.call('ZADD', KEYS[1], 'XX', lease_until, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
