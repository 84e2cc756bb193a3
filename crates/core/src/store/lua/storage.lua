-- storage.lua: order records, shards, and where an order stands. The queue's keys are written
-- through writes.lua alone; this part reads them and writes the library's own (orders,
-- payments).
-- Uses from earlier parts: fail, printable (prelude.lua), parse_json, encode, encode_string
-- (json.lua), is_object (order.lua).

-- Records

local function opt_string(v) if v then return encode_string(v) end return 'null' end

local function new_record(order, now)
  local parts = {encode_string(order.provider), encode_string(order.payment_id),
    opt_string(order.email), order.chat or 'null', opt_string(order.webhook),
    string.format('%d', now)}
  if order.metadata then parts[#parts + 1] = order.metadata end
  -- The order's trace context goes last, after the metadata and the (absent) state.
  if order.traceparent then
    if not order.metadata then parts[#parts + 1] = 'null' end
    parts[#parts + 1] = 'null'
    parts[#parts + 1] = encode_string(order.traceparent)
  end
  return '[' .. table.concat(parts, ',') .. ']'
end

-- The spec part of a stored record, in the shape `validate` returns; and its state.
local function read_record(raw)
  local ok, v = pcall(parse_json, raw)
  if not ok or type(v) ~= 'table' or not v.arr then return nil end
  local a = v.arr
  local function str(i) if type(a[i]) == 'string' then return a[i] end return nil end
  local order = {provider = str(1), payment_id = str(2), email = str(3), webhook = str(5)}
  if type(a[4]) == 'table' and a[4].num then order.chat = a[4].num end
  if is_object(a[7]) then order.metadata = encode(a[7]) end
  local status = 'pending'
  if is_object(a[8]) and type(a[8].obj.s) == 'string' then status = a[8].obj.s end
  return order, status
end

local function same_order(a, b)
  return a.provider == b.provider and a.payment_id == b.payment_id and a.email == b.email
    and a.chat == b.chat and a.webhook == b.webhook and a.metadata == b.metadata
end

-- Shards

-- Built on first use: the `bit` library is there when functions run, not while they load.
local CRC, band, bxor, rshift = nil, nil, nil, nil

local function crc32(s)
  if not CRC then
    band, bxor, rshift = bit.band, bit.bxor, bit.rshift
    CRC = {}
    for i = 0, 255 do
      local c = i
      for _ = 1, 8 do
        if band(c, 1) == 1 then c = bxor(rshift(c, 1), 0xEDB88320) else c = rshift(c, 1) end
      end
      CRC[i] = c
    end
  end
  local c = bit.bnot(0)
  for i = 1, #s do
    c = bxor(rshift(c, 8), CRC[band(bxor(c, string.byte(s, i)), 0xFF)])
  end
  c = bit.bnot(c)
  if c < 0 then c = c + 4294967296 end
  return c
end

-- The shard a base key names, checked against the shard count recorded in Redis.
local function shard_of(base)
  if type(base) ~= 'string' then fail('shard', 'pass the shard key as the one key') end
  local s = string.match(base, '^.+:{check%-payment%.(%d+)}$')
  if not s then
    fail('shard', 'the key must look like <prefix>:{check-payment.<shard>}, not ' .. printable(base))
  end
  local count = tonumber(redis.call('HGET', base .. ':meta', 'shards'))
  if not count then
    fail('shard', 'no paywatch shard at ' .. printable(base) ..
      ' (wrong prefix, or no producer or worker has started with it yet)')
  end
  return tonumber(s), count
end

local function check_shard(base, order_id)
  local shard, count = shard_of(base)
  local want = crc32(order_id) % count
  if want ~= shard then
    fail('shard', 'order ' .. printable(order_id) .. ' belongs to shard ' .. want .. ' of ' ..
      count .. ', not ' .. shard)
  end
end

-- Where an order stands: 'final' (in :orders), 'watching' (a pending check job), 'stopped' (its
-- check is in the dead letters) or nil. Returns the phase, the record and the dead letter.
local function find_order(base, id)
  local rec = redis.call('HGET', base .. ':orders', id)
  if rec then return 'final', rec end
  rec = redis.call('HGET', base .. ':jobs', id)
  if rec then return 'watching', rec end
  local dead = redis.call('HGET', base .. ':dead', id)
  if dead then
    local ok, letter = pcall(cjson.decode, dead)
    if ok and type(letter) == 'table' and type(letter.payload) == 'string' then
      return 'stopped', letter.payload, letter
    end
  end
  return nil
end
