-- Lease up to n due jobs, after handing expired leases back to the due set.
-- KEYS: 1 jobs, 2 due, 3 leases, 4 tokens, 5 attempts
-- ARGV: 1 n, 2 lease ms, 3 lease token, 4 reclaim limit
-- Returns {now, next due or -1, earliest lease expiry or -1, reclaimed count,
--          {id, payload, attempts, due, id, payload, attempts, due, ...}}
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local n = tonumber(ARGV[1])
local lease_until = now + tonumber(ARGV[2])
local token = ARGV[3]

-- Leases are the only liveness signal: whoever fetches reclaims what expired, so recovery never
-- depends on worker names or heartbeats.
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('ZADD', KEYS[2], now, id)
end

local out = {}
if n > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, n)
  if #due > 0 then
    local ids = {}
    for i = 1, #due, 2 do ids[#ids + 1] = due[i] end
    redis.call('ZREM', KEYS[2], unpack(ids))
    for i = 1, #due, 2 do
      local id = due[i]
      local payload = redis.call('HGET', KEYS[1], id)
      if payload then
        redis.call('ZADD', KEYS[3], lease_until, id)
        redis.call('HSET', KEYS[4], id, token)
        local attempts = redis.call('HINCRBY', KEYS[5], id, 1)
        out[#out + 1] = id
        out[#out + 1] = payload
        out[#out + 1] = attempts
        out[#out + 1] = tonumber(due[i + 1])
      end
    end
  end
end

local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local lease_head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {now, tonumber(head[2]) or -1, tonumber(lease_head[2]) or -1, #expired, out}
