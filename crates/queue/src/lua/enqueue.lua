-- Enqueue a batch of jobs, idempotently on the job id.
-- KEYS: 1 jobs, 2 due, 3 dead, 4 signal, 5 done
-- ARGV: 1 job count n, then per job: id, payload, kind ("now" | "after" | "at"), ms
-- Returns, per job: 1 created, 0 duplicate (same payload), -1 conflict (other payload),
-- -2 the id is in the dead letters, -3 a job with this id completed recently (the queue
-- remembers completed ids for a configurable window).
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local n = tonumber(ARGV[1])
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local head_due = tonumber(head[2])
local wake = 0
local out = {}
for i = 0, n - 1 do
  local id = ARGV[2 + i * 4]
  local payload = ARGV[3 + i * 4]
  local kind = ARGV[4 + i * 4]
  local ms = tonumber(ARGV[5 + i * 4])
  local existing = redis.call('HGET', KEYS[1], id)
  if existing then
    if existing == payload then out[#out + 1] = 0 else out[#out + 1] = -1 end
  elseif redis.call('HEXISTS', KEYS[3], id) == 1 then
    out[#out + 1] = -2
  elseif redis.call('ZSCORE', KEYS[5], id) then
    out[#out + 1] = -3
  else
    local due = now
    if kind == 'after' then due = now + ms elseif kind == 'at' then due = ms end
    redis.call('HSET', KEYS[1], id, payload)
    redis.call('ZADD', KEYS[2], due, id)
    -- Wake an idle worker when the job is due now or is earlier than what workers sleep towards.
    if due <= now or head_due == nil or due < head_due then
      wake = wake + 1
      if head_due == nil or due < head_due then head_due = due end
    end
    out[#out + 1] = 1
  end
end
if wake > 0 then
  if wake > 16 then wake = 16 end
  local sig = {}
  for i = 1, wake do sig[i] = '1' end
  redis.call('LPUSH', KEYS[4], unpack(sig))
  redis.call('LTRIM', KEYS[4], 0, 63)
end
return out
