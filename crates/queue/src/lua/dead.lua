-- Dead-letter administration, bounded by a limit on every range (after writes.lua).
-- KEYS: 1 jobs, 2 due, 3 dead, 4 dead_index, 5 signal
-- ARGV: 1 op ("list" | "retry" | "purge"), 2 limit, then optional ids (retry/purge those only)
--   list  -> {id, record, id, record, ...} oldest first
--   retry -> number of jobs moved back to the due set (attempts start over)
--   purge -> number of dead letters deleted
local now = queue_now()
local op = ARGV[1]
local limit = tonumber(ARGV[2])
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[4], 0, limit - 1)
end
if op == 'list' then
  local out = {}
  for _, id in ipairs(ids) do
    local rec = redis.call('HGET', KEYS[3], id)
    if rec then
      out[#out + 1] = id
      out[#out + 1] = rec
    end
  end
  return out
end
local done = 0
for _, id in ipairs(ids) do
  local rec = redis.call('HGET', KEYS[3], id)
  if rec then
    if op == 'retry' then
      if redis.call('HEXISTS', KEYS[1], id) == 0 then
        local payload = cjson.decode(rec)['payload']
        queue_add(KEYS[1], KEYS[2], id, payload, now, now, nil)
      end
    end
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
    done = done + 1
  end
end
if op == 'retry' and done > 0 then
  queue_signal(KEYS[5], 1)
end
return done
