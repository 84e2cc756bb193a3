-- order.lua: the rules of every door for an order body, and reading a submitted body into a
-- validated order.
-- Uses from earlier parts: NULL, fail, printable (prelude.lua), parse_json, encode (json.lua),
-- parse_plain (fast_path.lua), email_problem, url_problem, chat_problem (targets.lua).

local MAX_ID = 128
local MAX_METADATA = 16384
local FIELDS = 'order_id, provider, payment_id, notify, metadata, traceparent'
local NOTIFY_FIELDS = 'email, telegram_chat_id, webhook_url'
local KNOWN_FIELDS = {order_id = true, provider = true, payment_id = true, notify = true,
  metadata = true, traceparent = true}
local KNOWN_NOTIFY_FIELDS = {email = true, telegram_chat_id = true, webhook_url = true}
local PROVIDERS = {cashless = true, handcash = true, miraclecash = true, foxreload = true}
local PROVIDER_LIST = 'cashless, handcash, miraclecash, foxreload'
-- Declared providers (definition files, crates/core/src/declared) are published by the check
-- workers that serve them as meta fields `provider:<name>` (keys.rs META_PROVIDER_PREFIX).
local DECLARED_PREFIX = 'provider:'

-- Whether `name` is a provider some worker serves: a built-in, or one published in the meta.
local function served(base, name)
  if PROVIDERS[name] then return true end
  if not base or #name > 32 then return false end
  return redis.call('HEXISTS', base .. ':meta', DECLARED_PREFIX .. name) == 1
end

-- The built-ins, then the declared providers published in the shard's meta.
local function provider_list(base)
  local list = PROVIDER_LIST
  if not base then return list end
  local declared = {}
  for _, field in ipairs(redis.call('HKEYS', base .. ':meta')) do
    if string.sub(field, 1, #DECLARED_PREFIX) == DECLARED_PREFIX then
      declared[#declared + 1] = string.sub(field, #DECLARED_PREFIX + 1)
    end
  end
  table.sort(declared)
  for _, name in ipairs(declared) do list = list .. ', ' .. name end
  return list
end

local function is_object(v) return type(v) == 'table' and v.obj ~= nil end
local function absent(v) return v == nil or v == NULL end

local function kind_of(v)
  local t = type(v)
  if t == 'string' then return 'a string' end
  if t == 'boolean' then return 'a boolean' end
  if v == NULL then return 'null' end
  if v.num then return 'a number' end
  if v.arr then return 'an array' end
  return 'an object'
end

local function identifier(field, v)
  if absent(v) then fail(field, 'is required') end
  if type(v) ~= 'string' then fail(field, 'must be a string, not ' .. kind_of(v)) end
  if #v == 0 then fail(field, 'must not be empty') end
  if #v > MAX_ID then fail(field, 'is ' .. #v .. ' bytes long; the limit is ' .. MAX_ID) end
  local bad = string.find(v, '[^\33-\126]')
  if bad then
    fail(field, 'may only contain printable ASCII without spaces (bad character at byte ' ..
      (bad - 1) .. ')')
  end
  -- URLs read these as "this path" and "the parent path": such an id could never be linked to.
  if field == 'order_id' and (v == '.' or v == '..') then fail(field, 'must not be . or ..') end
  return v
end

local function reject_unknown(obj, known, path, list)
  for _, k in ipairs(obj.keys) do
    if not known[k] then fail(path .. printable(k), 'unknown field; expected one of ' .. list) end
  end
end

-- A W3C trace context (crates/core/src/traceparent.rs has the same rules and words): version
-- 00 only, lowercase hex, neither id all zeros. Returns nil when it is one, else the problem.
-- Literals: the string library is there when functions run, not while the library loads.
local ZERO_TRACE = '00000000000000000000000000000000'
local ZERO_PARENT = '0000000000000000'
local function traceparent_problem(v)
  if type(v) ~= 'string' or #v ~= 55
      or not string.match(v, '^00%-[0-9a-f]+%-[0-9a-f]+%-[0-9a-f][0-9a-f]$')
      or string.sub(v, 36, 36) ~= '-' or string.sub(v, 53, 53) ~= '-' then
    return 'must be a W3C trace context: 00-<32 lowercase hex trace id>-<16 lowercase hex ' ..
      'parent id>-<2 lowercase hex flags>'
  end
  if string.sub(v, 4, 35) == ZERO_TRACE then return 'the trace id must not be all zeros' end
  if string.sub(v, 37, 52) == ZERO_PARENT then return 'the parent id must not be all zeros' end
  return nil
end

-- Validates a parsed order and returns its canonical parts; `base` (the shard's key) is where
-- the declared providers are published.
local function validate(body, base)
  if not is_object(body) then fail('body', 'must be a JSON object, not ' .. kind_of(body)) end
  reject_unknown(body, KNOWN_FIELDS, '', FIELDS)
  local o = body.obj
  local order = {}
  order.order_id = identifier('order_id', o.order_id)
  if absent(o.provider) then fail('provider', 'is required') end
  if type(o.provider) ~= 'string' or not served(base, o.provider) then
    fail('provider', 'must be one of ' .. provider_list(base))
  end
  order.provider = o.provider
  order.payment_id = identifier('payment_id', o.payment_id)
  local notify = o.notify
  if not absent(notify) then
    if not is_object(notify) then fail('notify', 'must be an object, not ' .. kind_of(notify)) end
    reject_unknown(notify, KNOWN_NOTIFY_FIELDS, 'notify.', NOTIFY_FIELDS)
    local n = notify.obj
    if not absent(n.email) then
      if type(n.email) ~= 'string' then fail('notify.email', 'must be a string, not ' .. kind_of(n.email)) end
      local problem = email_problem(n.email)
      if problem then fail('notify.email', problem) end
      order.email = n.email
    end
    if not absent(n.telegram_chat_id) then
      local c = n.telegram_chat_id
      if type(c) ~= 'table' or not c.num then
        fail('notify.telegram_chat_id', 'must be an integer, not ' .. kind_of(c))
      end
      local problem, canonical = chat_problem(c.num)
      if problem then fail('notify.telegram_chat_id', problem) end
      order.chat = canonical
    end
    if not absent(n.webhook_url) then
      if type(n.webhook_url) ~= 'string' then
        fail('notify.webhook_url', 'must be a string, not ' .. kind_of(n.webhook_url))
      end
      local problem, ip = url_problem(n.webhook_url)
      if problem then fail('notify.webhook_url', problem) end
      order.webhook = n.webhook_url
      order.webhook_ip = ip
    end
  end
  if not absent(o.metadata) then
    if not is_object(o.metadata) then
      fail('metadata', 'must be an object, not ' .. kind_of(o.metadata))
    end
    local m = encode(o.metadata)
    if #m > MAX_METADATA then fail('metadata', 'must be at most 16 KiB of JSON') end
    order.metadata = m
  end
  if not absent(o.traceparent) then
    local problem = traceparent_problem(o.traceparent)
    if problem then fail('traceparent', problem) end
    order.traceparent = o.traceparent
  end
  return order
end

-- A submitted body's order: by the fast path when it is plain and valid, else by the strict
-- parser and the same validation, which give the verdict and its message.
local function read_order(body, base)
  local plain = parse_plain(body)
  if plain then
    local ok, order = pcall(validate, plain, base)
    if ok then return order end
  end
  return validate(parse_json(body), base)
end
