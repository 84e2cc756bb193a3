-- functions.lua: the registered functions, the library's doors. Every write to the queue's keys
-- goes through writes.lua (queue_add, queue_enqueue, queue_move, queue_promote_running,
-- queue_signal).
-- Uses from earlier parts: the contract and MAX_BODY, fail (prelude.lua), parse_json (json.lua),
-- check_webhook_ip (targets.lua), read_order, is_object (order.lua), writes.lua, and the
-- records, shards and find_order of storage.lua.

-- The functions that touch a shard take exactly that one key: a second key could name another
-- slot, which the function would never touch and a Cluster would refuse for the wrong reason.
local function one_key(keys)
  if #keys ~= 1 then
    fail('shard', 'takes exactly one key, the shard key <prefix>:{check-payment.<shard>}, not ' ..
      #keys)
  end
end

-- Runs `f`, turning paywatch's field errors into error replies (and nothing written).
local function guarded(f)
  return function(keys, args)
    local ok, res = pcall(f, keys, args)
    if ok then return res end
    if type(res) == 'table' and res.paywatch then return redis.error_reply(res.paywatch) end
    error(res, 0)
  end
end

-- FCALL paywatch_submit 1 <prefix>:{check-payment.<shard>} <order JSON> [<traceparent>]
-- -> {'created', 'pending', 'watching'} | {'exists', <status>, <phase>}
-- The optional second argument is the producer's: the trace context of its submit span (or the
-- HTTP `traceparent` header), stored in place of the body's `traceparent` field.
local function submit(keys, args)
  one_key(keys)
  local body = args[1]
  if type(body) ~= 'string' then fail('body', 'is required (the order JSON)') end
  if #args > 2 then fail('body', 'takes the order JSON and, optionally, a traceparent') end
  if #body > MAX_BODY then fail('body', 'is larger than ' .. MAX_BODY .. ' bytes') end
  local traceparent = args[2]
  if traceparent then
    local problem = traceparent_problem(traceparent)
    if problem then fail('traceparent', problem) end
  end
  local base = keys[1]
  local order = read_order(body, base)
  order.traceparent = traceparent or order.traceparent
  check_shard(base, order.order_id)
  if order.webhook_ip then check_webhook_ip(base, order.webhook_ip) end
  local id = order.order_id
  local phase, rec = find_order(base, id)
  if phase then
    local stored, status = read_record(rec)
    if not stored or not same_order(stored, order) then
      fail('order_id', 'an order with this id already exists with a different body')
    end
    return {'exists', status, phase}
  end
  local now = queue_now()
  -- The check job is the queue's own enqueue of the record, due now.
  local record = new_record(order, now)
  local wake = queue_add(base .. ':jobs', base .. ':due', id, record, now, now, nil)
  redis.call('HSETNX', base .. ':payments', order.provider .. ':' .. order.payment_id, id)
  if wake then queue_signal(base .. ':signal', 1) end
  return {'created', 'pending', 'watching'}
end

-- FCALL_RO paywatch_get 1 <shard key> <order id>
-- -> nil | {phase, record, next check ms or '', 'running' or '', stop reason or '', stop ms or '',
--           'notified' or ''}
-- A final order is notified once its check job is gone: workers complete the job only after
-- enqueueing its notifications.
local function get(keys, args)
  one_key(keys)
  local base = keys[1]
  local id = args[1]
  if type(id) ~= 'string' then fail('order_id', 'is required') end
  shard_of(base)
  local phase, rec, letter = find_order(base, id)
  if not phase then return nil end
  local due, running, reason, at = '', '', '', ''
  if phase == 'watching' then
    due = redis.call('ZSCORE', base .. ':due', id) or ''
    if redis.call('ZSCORE', base .. ':leases', id) then running = 'running' end
  elseif phase == 'stopped' then
    reason = tostring(letter.error or '')
    at = letter.at and string.format('%d', letter.at) or ''
  end
  local notified = ''
  if phase == 'final' and redis.call('HEXISTS', base .. ':jobs', id) == 0 then notified = 'notified' end
  return {phase, rec, due, running, reason, at, notified}
end

-- FCALL paywatch_finalize 1 <shard key> <order id> <final record> [<provider>:<payment id>]
-- Records an order's final record unless one was recorded first; returns the record that holds.
-- The caller that knows the order's payment names it; otherwise it is read from the record,
-- which costs a parse of the whole record (its check history included).
local function finalize(keys, args)
  one_key(keys)
  local base, id, rec, index = keys[1], args[1], args[2], args[3]
  if type(id) ~= 'string' or type(rec) ~= 'string' then fail('body', 'expects an order id and a record') end
  shard_of(base)
  local first = redis.call('HGET', base .. ':orders', id)
  if first then return first end
  redis.call('HSET', base .. ':orders', id, rec)
  if not index then
    local stored = read_record(rec)
    if stored and stored.provider and stored.payment_id then
      index = stored.provider .. ':' .. stored.payment_id
    end
  end
  -- A final order needs no more webhook wake-ups; drop its index entry if it is its own.
  if index and redis.call('HGET', base .. ':payments', index) == id then
    redis.call('HDEL', base .. ':payments', index)
  end
  return rec
end

-- FCALL paywatch_finalize_notify <2 + 5q> <shard key> <history key> <per notifier queue: jobs, due,
--   dead, signal, done> <order id> <final record> <provider>:<payment id> <history field>
--   <job count n> then per job: <queue 1..q> <job id> <payload>
-- -> {record that holds, 1, enqueue code per job} | {record that holds, 0}
-- For one Redis only: the notifier queues have hash tags of their own, which a Cluster keeps in
-- other slots. paywatch_finalize, the poll history's count and the notification jobs in one
-- step, so a final answer costs one round trip and no crash falls between them. When a record
-- was there first (another run's, or this call's own whose reply was lost) nothing is written:
-- the caller fans out the record that holds, as after paywatch_finalize.
local function finalize_notify(keys, args)
  local base, history = keys[1], keys[2]
  local id, rec, index, field = args[1], args[2], args[3], args[4]
  local n = tonumber(args[5])
  local queues = (#keys - 2) / 5
  if #keys < 2 or queues ~= math.floor(queues) then
    fail('shard', 'takes the shard key, the history key and five keys per notifier queue')
  end
  if type(id) ~= 'string' or type(rec) ~= 'string' or type(index) ~= 'string'
      or type(field) ~= 'string' or not n or n < 0 or n ~= math.floor(n) or #args ~= 5 + 3 * n then
    fail('body', 'expects an order id, a record, its payment, a history field and the jobs')
  end
  for i = 0, n - 1 do
    local q = tonumber(args[6 + 3 * i])
    if not q or q < 1 or q > queues or q ~= math.floor(q) then
      fail('body', 'job ' .. (i + 1) .. ' names no notifier queue')
    end
  end
  shard_of(base)
  local first = redis.call('HGET', base .. ':orders', id)
  if first then return {first, 0} end
  finalize({base}, {id, rec, index})
  redis.call('HINCRBY', history, field, 1)
  local now = queue_now()
  local out = {rec, 1}
  local head, wake = {}, {}
  for i = 0, n - 1 do
    local q = tonumber(args[6 + 3 * i])
    local k = 2 + 5 * (q - 1)
    local code, woke
    code, woke, head[q] = queue_enqueue(keys[k + 1], keys[k + 2], keys[k + 3], keys[k + 5],
      args[7 + 3 * i], args[8 + 3 * i], now, now, head[q])
    if woke then wake[q] = true end
    out[#out + 1] = code
  end
  for q in pairs(wake) do queue_signal(keys[2 + 5 * (q - 1) + 4], 1) end
  return out
end

-- FCALL paywatch_check_now 1 <shard key> <provider> <payment id> [min gap ms]
-- A provider webhook named this payment: check its order now. Storms coalesce: however many
-- webhooks arrive, a check never follows the previous one by less than the gap (default 2000 ms),
-- and a check that is due or running absorbs them all. Returns the order id and what happened
-- ('moved', 'due', 'running', 'none'), and the order's traceparent when it has one, or nil when no
-- order watches the payment.
-- The order's trace context: the last slot of its record, when it has one (no parse needed).
local function trace_of(base, id)
  local rec = redis.call('HGET', base .. ':jobs', id)
  return rec and string.match(rec, '"(00%-[0-9a-f]+%-[0-9a-f]+%-[0-9a-f][0-9a-f])"%]$') or nil
end

local function check_now(keys, args)
  one_key(keys)
  local base, provider, payment = keys[1], args[1], args[2]
  if type(provider) ~= 'string' or type(payment) ~= 'string' then
    fail('body', 'expects a provider and a payment id')
  end
  local gap = tonumber(args[3] or '2000') or 2000
  shard_of(base)
  local id = redis.call('HGET', base .. ':payments', provider .. ':' .. payment)
  if not id then return nil end
  local now = queue_now()
  local due = redis.call('ZSCORE', base .. ':due', id)
  if due then
    due = tonumber(due)
    if due <= now then return {id, 'due', trace_of(base, id)} end
    -- Not before the last check plus the gap (the record knows when that was).
    local at = now
    local rec = redis.call('HGET', base .. ':jobs', id)
    local ok, v = pcall(parse_json, rec or '')
    if ok and type(v) == 'table' and v.arr and is_object(v.arr[8]) then
      local last = v.arr[8].obj.l
      if type(last) == 'table' and last.num then at = math.max(now, tonumber(last.num) + gap) end
    end
    if at >= due then return {id, 'due', trace_of(base, id)} end
    queue_move(base .. ':due', base .. ':signal', id, at, now)
    return {id, 'moved', trace_of(base, id)}
  end
  if redis.call('ZSCORE', base .. ':leases', id) then
    -- The running check may have asked before the payment moved: one more follows it, not
    -- before the gap (the queue's settle reads this as "due not before").
    queue_promote_running(base .. ':promoted', id, now + gap)
    return {id, 'running', trace_of(base, id)}
  end
  return {id, 'none', trace_of(base, id)}
end

-- FCALL_RO paywatch_version 0 -> {contract, oldest contract still served, revision}
local function version()
  return {CONTRACT, MIN_COMPATIBLE, REVISION}
end

-- FCALL_RO paywatch_shard 0 <order id> <shard count> -> the order's shard (for clients that
-- would rather ask than compute crc32).
local function shard(_, args)
  local id, count = args[1], tonumber(args[2])
  if type(id) ~= 'string' then fail('order_id', 'is required') end
  if not count or count < 1 or count ~= math.floor(count) then fail('shards', 'must be a positive integer') end
  return crc32(id) % count
end

redis.register_function('paywatch_submit', guarded(submit))
redis.register_function{function_name = 'paywatch_get', callback = guarded(get),
  flags = {'no-writes'}}
redis.register_function('paywatch_finalize', guarded(finalize))
redis.register_function('paywatch_finalize_notify', guarded(finalize_notify))
redis.register_function('paywatch_check_now', guarded(check_now))
redis.register_function{function_name = 'paywatch_version', callback = version,
  flags = {'no-writes', 'allow-stale'}}
redis.register_function{function_name = 'paywatch_shard', callback = guarded(shard),
  flags = {'no-writes', 'allow-stale'}}
