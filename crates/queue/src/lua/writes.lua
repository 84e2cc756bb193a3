-- The queue's writes that more than one script makes: adding a job, moving it, marking a running
-- job to run again, and waking idle workers. The queue's scripts start with this file, and so
-- does paywatch's submit library (crates/core/src/store/lua, through `JOB_WRITES_LUA`), so the
-- queue's keys have one writer: an order submitted through the library and a job enqueued
-- through the queue leave the same bytes in Redis.
-- Functions only: no KEYS or ARGV (callers pass the key names), and nothing runs while a Function
-- library loads (Redis's libraries, string among them, are only there once functions run).

-- Redis's clock in Unix ms: due times and lease expiries are judged by it, never a caller's.
local function queue_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Pushes `count` wake-ups (at most 16 per call) onto a queue's signal list, which is kept to 64
-- entries. LPUSH answers the length, so the trim runs only when there is something to trim.
local function queue_signal(signal, count)
  if count > 16 then count = 16 end
  local sig = {}
  for i = 1, count do sig[i] = '1' end
  if redis.call('LPUSH', signal, unpack(sig)) > 64 then redis.call('LTRIM', signal, 0, 63) end
end

-- Whether a job falling due at `due` must wake idle workers. They sleep until the queue's head
-- (its earliest due time), so: when it is due now or earlier than the head. `head` is the head
-- as the caller last knew it in this call, or nil to read it (only a job not due now needs it);
-- returns the verdict and the head with this job counted, for the caller's next job.
local function queue_wakes(due_key, due, now, head)
  if due <= now then return true, head end
  if head == nil then
    local first = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
    head = tonumber(first[2]) or math.huge
  end
  if due < head then return true, due end
  return false, head
end

-- Adds a new job: its record (`payload`) and its due time. Returns whether it must wake idle
-- workers and the head for the caller's next add (queue_wakes); the caller signals once per call.
local function queue_add(jobs_key, due_key, id, payload, due, now, head)
  local wake
  -- The head before this job joins it: what idle workers sleep towards now.
  wake, head = queue_wakes(due_key, due, now, head)
  redis.call('HSET', jobs_key, id, payload)
  redis.call('ZADD', due_key, due, id)
  return wake, head
end

-- Adds a job unless its id is taken, idempotently on the id: returns 1 created, 0 duplicate (same
-- payload), -1 conflict (other payload), -2 the id is in the dead letters, -3 it completed within
-- the queue's remembered window; then whether idle workers must be woken and the head, as
-- queue_add does. The queue's enqueue and paywatch's final record with its notifications
-- (crates/core/src/store/lua/functions.lua) both add jobs through this one rule.
local function queue_enqueue(jobs_key, due_key, dead_key, done_key, id, payload, due, now, head)
  local existing = redis.call('HGET', jobs_key, id)
  if existing then
    if existing == payload then return 0, false, head end
    return -1, false, head
  end
  if redis.call('HEXISTS', dead_key, id) == 1 then return -2, false, head end
  if redis.call('ZSCORE', done_key, id) then return -3, false, head end
  local wake
  wake, head = queue_add(jobs_key, due_key, id, payload, due, now, head)
  return 1, wake, head
end

-- Moves a scheduled job (one in the due set) to a new due time, waking idle workers by the same
-- rule as an add.
local function queue_move(due_key, signal_key, id, due, now)
  local wake = queue_wakes(due_key, due, now, nil)
  redis.call('ZADD', due_key, 'XX', due, id)
  if wake then queue_signal(signal_key, 1) end
end

-- Asks that a running job run again right after its current run, not before `not_before` (Unix
-- ms); its settle reads the mark. Of two asks the sooner holds.
local function queue_promote_running(promoted_key, id, not_before)
  local held = tonumber(redis.call('HGET', promoted_key, id))
  if held and held <= not_before then return end
  redis.call('HSET', promoted_key, id, string.format('%d', not_before))
end
