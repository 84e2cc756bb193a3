-- Enqueue a batch of jobs, idempotently on the job id, into one or more queues.
-- KEYS: five per queue (queue q's start at 5 * (q - 1)): jobs, due, dead, signal, done
-- ARGV: 1 job count n, then per job: queue q (1-based), id, payload, kind ("now" | "after" |
-- "at"), ms
-- Returns, per job: 1 created, 0 duplicate (same payload), -1 conflict (other payload),
-- -2 the id is in the dead letters, -3 a job with this id completed recently (the queue
-- remembers completed ids for a configurable window).
-- Several queues in one call is for a single Redis, where one script may touch any key; on a
-- Cluster each call names one queue (one hash tag), as every script there must.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local n = tonumber(ARGV[1])
-- Per queue, read lazily: the earliest due time workers sleep towards, and wake-ups owed.
local head_due, wake = {}, {}
local out = {}
for i = 0, n - 1 do
  local q = tonumber(ARGV[2 + i * 5])
  local id = ARGV[3 + i * 5]
  local payload = ARGV[4 + i * 5]
  local kind = ARGV[5 + i * 5]
  local ms = tonumber(ARGV[6 + i * 5])
  local k = 5 * (q - 1)
  local existing = redis.call('HGET', KEYS[k + 1], id)
  if existing then
    if existing == payload then out[#out + 1] = 0 else out[#out + 1] = -1 end
  elseif redis.call('HEXISTS', KEYS[k + 3], id) == 1 then
    out[#out + 1] = -2
  elseif redis.call('ZSCORE', KEYS[k + 5], id) then
    out[#out + 1] = -3
  else
    local due = now
    if kind == 'after' then due = now + ms elseif kind == 'at' then due = ms end
    -- Only a job not due now needs the queue's head (what idle workers sleep towards), read
    -- once per queue and call, before this job is added; an empty queue's head is never.
    if due > now and head_due[q] == nil then
      local head = redis.call('ZRANGE', KEYS[k + 2], 0, 0, 'WITHSCORES')
      head_due[q] = tonumber(head[2]) or math.huge
    end
    redis.call('HSET', KEYS[k + 1], id, payload)
    redis.call('ZADD', KEYS[k + 2], due, id)
    -- Wake an idle worker when the job is due now or is earlier than what workers sleep towards.
    if due <= now then
      wake[q] = (wake[q] or 0) + 1
    elseif due < head_due[q] then
      wake[q] = (wake[q] or 0) + 1
      head_due[q] = due
    end
    out[#out + 1] = 1
  end
end
for q, count in pairs(wake) do
  if count > 0 then
    if count > 16 then count = 16 end
    local sig = {}
    for i = 1, count do sig[i] = '1' end
    local key = KEYS[5 * (q - 1) + 4]
    -- Bounded; LPUSH answers the length, so the trim runs only when there is something to trim.
    if redis.call('LPUSH', key, unpack(sig)) > 64 then redis.call('LTRIM', key, 0, 63) end
  end
end
return out
