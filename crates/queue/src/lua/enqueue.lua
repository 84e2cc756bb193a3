-- Enqueue a batch of jobs, idempotently on the job id, into one or more queues (after writes.lua).
-- KEYS: five per queue (queue q's start at 5 * (q - 1)): jobs, due, dead, signal, done
-- ARGV: 1 job count n, then per job: queue q (1-based), id, payload, kind ("now" | "after" |
-- "at"), ms
-- Returns, per job: 1 created, 0 duplicate (same payload), -1 conflict (other payload),
-- -2 the id is in the dead letters, -3 a job with this id completed recently (the queue
-- remembers completed ids for a configurable window).
-- Several queues in one call is for a single Redis, where one script may touch any key; on a
-- Cluster each call names one queue (one hash tag), as every script there must.
local now = queue_now()
local n = tonumber(ARGV[1])
-- Per queue: the head as this call last knew it (read lazily, see queue_wakes), wake-ups owed.
local head, wake = {}, {}
local out = {}
for i = 0, n - 1 do
  local q = tonumber(ARGV[2 + i * 5])
  local id = ARGV[3 + i * 5]
  local payload = ARGV[4 + i * 5]
  local kind = ARGV[5 + i * 5]
  local ms = tonumber(ARGV[6 + i * 5])
  local k = 5 * (q - 1)
  local due = now
  if kind == 'after' then due = now + ms elseif kind == 'at' then due = ms end
  local code, woke
  code, woke, head[q] = queue_enqueue(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 5], id,
    payload, due, now, head[q])
  if woke then wake[q] = (wake[q] or 0) + 1 end
  out[#out + 1] = code
end
for q, count in pairs(wake) do queue_signal(KEYS[5 * (q - 1) + 4], count) end
return out
