-- Settle a batch of leased jobs in one step each: complete, reschedule, retry, dead-letter or
-- release. Every op names the lease token it was fetched with; an op whose token no longer
-- matches (the lease expired and another worker took the job) is stale and changes nothing.
-- KEYS: 1 jobs, 2 due, 3 leases, 4 tokens, 5 attempts, 6 errors, 7 dead, 8 dead_index, 9 stats,
--       10 signal, 11 done, 12 promoted
-- ARGV: 1 keep completed ids for this many ms (0: don't), then per op 5 values: op, id, token, a, b
--   complete   -
--   reschedule a = delay ms, b = new payload ('' keeps the payload); resets attempts
--   retry      a = delay ms, b = error text; counts the failed run as an attempt
--   dead       a = unused,   b = reason
--   release    -            (back to due now, the run not counted as an attempt)
-- A job promoted while it ran (a webhook said "check now") runs again at the promotion's
-- not-before time (Unix ms, written by queue_promote_running in writes.lua, which this script
-- follows; older releases wrote '1', which means now) when that is sooner than its own next run.
-- Returns one integer per op: 1 applied, 0 stale.
local now = queue_now()
local keep_ms = tonumber(ARGV[1])

local ops = {}
local ids = {}
for i = 2, #ARGV, 5 do
  ops[#ops + 1] = {ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]}
  ids[#ids + 1] = ARGV[i + 1]
end
if #ops == 0 then return {} end
local held = redis.call('HMGET', KEYS[4], unpack(ids))
-- The side hashes (promotions, attempts, errors) are empty in the steady state: asking whether
-- they exist is one cheap call where reading or deleting every id in them would pass the whole
-- batch into Redis again.
local has_promoted = redis.call('EXISTS', KEYS[12]) == 1
local promoted = {}
if has_promoted then promoted = redis.call('HMGET', KEYS[12], unpack(ids)) end

local out = {}
local valid = {}
local seen = {}
local gone, gone_meta, done = {}, {}, {}
local payloads, resets, schedule, errors = {}, {}, {}, {}
local counts = {complete = 0, reschedule = 0, retry = 0, dead = 0, release = 0}
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local head_due = tonumber(head[2])
local wake = false

local function at(id, due)
  schedule[#schedule + 1] = due
  schedule[#schedule + 1] = id
  if head_due == nil or due < head_due then
    head_due = due
    wake = true
  end
end

for i, op in ipairs(ops) do
  local kind, id, token, a, b = op[1], op[2], op[3], op[4], op[5]
  if held[i] ~= token or seen[id] then
    out[#out + 1] = 0
  else
    seen[id] = true
    valid[#valid + 1] = id
    local soon = nil
    if promoted[i] then soon = math.max(now, tonumber(promoted[i]) or now) end
    if kind == 'complete' then
      gone[#gone + 1] = id
      gone_meta[#gone_meta + 1] = id
      if keep_ms > 0 then
        done[#done + 1] = now
        done[#done + 1] = id
      end
    elseif kind == 'reschedule' then
      if b ~= '' then
        payloads[#payloads + 1] = id
        payloads[#payloads + 1] = b
      end
      gone_meta[#gone_meta + 1] = id
      at(id, math.min(soon or math.huge, now + tonumber(a)))
    elseif kind == 'retry' then
      errors[#errors + 1] = id
      errors[#errors + 1] = b
      redis.call('HINCRBY', KEYS[5], id, 1)
      at(id, math.min(soon or math.huge, now + tonumber(a)))
    elseif kind == 'dead' then
      local payload = redis.call('HGET', KEYS[1], id) or ''
      local attempts = tonumber(redis.call('HGET', KEYS[5], id) or '0') + 1
      redis.call('HSET', KEYS[7], id, cjson.encode({payload = payload, attempts = attempts, error = b, at = now}))
      redis.call('ZADD', KEYS[8], now, id)
      gone[#gone + 1] = id
      gone_meta[#gone_meta + 1] = id
    elseif kind == 'release' then
      at(id, now)
    end
    counts[kind] = (counts[kind] or 0) + 1
    out[#out + 1] = 1
  end
end

if #valid > 0 then
  redis.call('HDEL', KEYS[4], unpack(valid))
  redis.call('ZREM', KEYS[3], unpack(valid))
  if has_promoted then redis.call('HDEL', KEYS[12], unpack(valid)) end
end
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
if #gone_meta > 0 then
  if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('HDEL', KEYS[5], unpack(gone_meta)) end
  if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('HDEL', KEYS[6], unpack(gone_meta)) end
end
if #payloads > 0 then redis.call('HSET', KEYS[1], unpack(payloads)) end
if #errors > 0 then redis.call('HSET', KEYS[6], unpack(errors)) end
if #schedule > 0 then redis.call('ZADD', KEYS[2], unpack(schedule)) end
if #done > 0 then
  redis.call('ZADD', KEYS[11], unpack(done))
  -- Forget completions older than the window, a bounded number per call.
  local old = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', now - keep_ms, 'LIMIT', 0, 256)
  if #old > 0 then redis.call('ZREM', KEYS[11], unpack(old)) end
end
for kind, c in pairs(counts) do
  if c > 0 then redis.call('HINCRBY', KEYS[9], kind, c) end
end
if wake then
  queue_signal(KEYS[10], 1)
end
return out
