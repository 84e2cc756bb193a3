-- Lease up to n due jobs, after handing expired leases back to the due set.
-- KEYS: 1 jobs, 2 due, 3 leases, 4 tokens, 5 attempts
-- ARGV: 1 n, 2 lease ms, 3 lease token, 4 reclaim limit
-- Returns {now, next due or -1, earliest lease expiry or -1, reclaimed count,
--          {id, payload, attempts, due, id, payload, attempts, due, ...}}
-- Every Redis call below is batched over the (bounded) batch, so a fetch costs a fixed number of
-- calls however many jobs it leases. `attempts` holds the runs that did not finish (failures and
-- expired leases), so a first run writes nothing there; the attempt reported is that plus one.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local n = tonumber(ARGV[1])
local lease_until = now + tonumber(ARGV[2])
local token = ARGV[3]

-- Leases are the only liveness signal: whoever fetches reclaims what expired, so recovery never
-- depends on worker names or heartbeats.
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local expired, leased_at = {}, {}
for i = 1, #lapsed, 2 do
  expired[#expired + 1] = lapsed[i]
  -- Back in line where the job stood when its lease was last taken or extended, not behind
  -- everything that fell due since: a killed worker's jobs must not wait out a backlog twice.
  leased_at[#leased_at + 1] = math.min(now, tonumber(lapsed[i + 1]) - tonumber(ARGV[2]))
end
if #expired > 0 then
  redis.call('ZREM', KEYS[3], unpack(expired))
  redis.call('HDEL', KEYS[4], unpack(expired))
  -- A run whose lease expired did not finish: it counts as an attempt.
  local before = redis.call('HMGET', KEYS[5], unpack(expired))
  local back, counts = {}, {}
  for i, id in ipairs(expired) do
    back[#back + 1] = leased_at[i]
    back[#back + 1] = id
    counts[#counts + 1] = id
    counts[#counts + 1] = (tonumber(before[i]) or 0) + 1
  end
  redis.call('ZADD', KEYS[2], unpack(back))
  redis.call('HSET', KEYS[5], unpack(counts))
end

local out = {}
if n > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, n)
  if #due > 0 then
    local ids = {}
    for i = 1, #due, 2 do ids[#ids + 1] = due[i] end
    redis.call('ZREM', KEYS[2], unpack(ids))
    local payloads = redis.call('HMGET', KEYS[1], unpack(ids))
    -- No failed or lapsed runs anywhere in the queue (the steady state): nothing to read.
    local attempts = {}
    if redis.call('EXISTS', KEYS[5]) == 1 then attempts = redis.call('HMGET', KEYS[5], unpack(ids)) end
    local leases, tokens = {}, {}
    for i, id in ipairs(ids) do
      -- A due entry without a record cannot run; dropping it from `due` is all there is to do.
      if payloads[i] then
        local a = (tonumber(attempts[i]) or 0) + 1
        leases[#leases + 1] = lease_until
        leases[#leases + 1] = id
        tokens[#tokens + 1] = id
        tokens[#tokens + 1] = token
        out[#out + 1] = id
        out[#out + 1] = payloads[i]
        out[#out + 1] = a
        out[#out + 1] = tonumber(due[i * 2])
      end
    end
    if #leases > 0 then
      redis.call('ZADD', KEYS[3], unpack(leases))
      redis.call('HSET', KEYS[4], unpack(tokens))
    end
  end
end

local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local lease_head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {now, tonumber(head[2]) or -1, tonumber(lease_head[2]) or -1, #expired, out}
