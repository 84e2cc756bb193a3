-- Settle a batch of leased jobs in one step each: complete, reschedule, retry, dead-letter or
-- release. Every op names the lease token it was fetched with; an op whose token no longer
-- matches (the lease expired and another worker took the job) is stale and changes nothing.
-- KEYS: 1 jobs, 2 due, 3 leases, 4 tokens, 5 attempts, 6 errors, 7 dead, 8 dead_index, 9 stats,
--       10 signal
-- ARGV: per op 5 values: op, id, token, a, b
--   complete   -
--   reschedule a = delay ms, b = new payload ('' keeps the payload); resets attempts
--   retry      a = delay ms, b = error text; keeps attempts
--   dead       a = unused,   b = reason
--   release    -            (back to due now, the attempt is not counted)
-- Returns one integer per op: 1 applied, 0 stale.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local out = {}
local counts = {complete = 0, reschedule = 0, retry = 0, dead = 0, release = 0}
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local head_due = tonumber(head[2])
local wake = false

local function schedule(id, due)
  redis.call('ZADD', KEYS[2], due, id)
  if head_due == nil or due < head_due then
    head_due = due
    wake = true
  end
end

for i = 1, #ARGV, 5 do
  local op, id, token, a, b = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if redis.call('HGET', KEYS[4], id) ~= token then
    out[#out + 1] = 0
  else
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    if op == 'complete' then
      redis.call('HDEL', KEYS[1], id)
      redis.call('HDEL', KEYS[5], id)
      redis.call('HDEL', KEYS[6], id)
    elseif op == 'reschedule' then
      if b ~= '' then redis.call('HSET', KEYS[1], id, b) end
      redis.call('HDEL', KEYS[5], id)
      redis.call('HDEL', KEYS[6], id)
      schedule(id, now + tonumber(a))
    elseif op == 'retry' then
      redis.call('HSET', KEYS[6], id, b)
      schedule(id, now + tonumber(a))
    elseif op == 'dead' then
      local payload = redis.call('HGET', KEYS[1], id) or ''
      local attempts = tonumber(redis.call('HGET', KEYS[5], id) or '0')
      redis.call('HSET', KEYS[7], id, cjson.encode({payload = payload, attempts = attempts, error = b, at = now}))
      redis.call('ZADD', KEYS[8], now, id)
      redis.call('HDEL', KEYS[1], id)
      redis.call('HDEL', KEYS[5], id)
      redis.call('HDEL', KEYS[6], id)
    elseif op == 'release' then
      local attempts = redis.call('HINCRBY', KEYS[5], id, -1)
      if attempts <= 0 then redis.call('HDEL', KEYS[5], id) end
      schedule(id, now)
    end
    counts[op] = (counts[op] or 0) + 1
    out[#out + 1] = 1
  end
end
for op, c in pairs(counts) do
  if c > 0 then redis.call('HINCRBY', KEYS[9], op, c) end
end
if wake then
  redis.call('LPUSH', KEYS[10], '1')
  redis.call('LTRIM', KEYS[10], 0, 63)
end
return out
