#!lua name=paywatch
-- paywatch's Redis Function library: the one door through which every language submits orders.
--
-- The producer's HTTP API, its CLI, its Rust API and any Redis client call the same functions, so
-- every door validates with the same rules, byte for byte. docs/enqueue-from-any-language.md is
-- the contract; crates/core/src/store/mod.rs loads this library and speaks it from Rust.
--
-- Keys. Orders are spread over N shards; shard s of prefix P lives under the hash tag
-- `{check-payment.s}`: its base key `P:{check-payment.s}` names no value itself, and every key a
-- function touches is the base plus a suffix, so each call stays in one Cluster slot:
--   base:jobs      HASH order id -> record       pending orders (the check-payment queue's jobs)
--   base:due       ZSET order id -> due ms       when each pending order is checked next
--   base:signal    LIST                          wake-ups for idle workers (bounded)
--   base:leases, :tokens, :attempts, :errors, :promoted, :dead, :dead_index, :stats
--                                                 the queue's own bookkeeping (crates/queue)
--   base:orders    HASH order id -> record       final orders
--   base:payments  HASH provider:payment id -> order id   for provider webhooks
--   base:meta      HASH shards -> N              written by producers and workers at start-up
--                       webhook_allow -> ranges  the webhook notifiers' allow-list (ip_ranges.rs)
-- The shard of an order is crc32(order_id) % N (IEEE CRC-32, as zlib computes it).
--
-- Records are compact JSON arrays, written here on submission and by workers afterwards:
--   [provider, payment_id, email|null, telegram_chat_id|null, webhook_url|null, created_ms,
--    metadata|null, state|null]
-- Trailing nulls may be left out. `state` is the worker's (status, poll state, history).

local CONTRACT = 1        -- what this library offers; bumped when a function or reply changes
local MIN_COMPATIBLE = 1  -- the oldest contract whose callers this library still serves
local REVISION = 9        -- bumped on every change of this file (library.rs checks it)

local MAX_BODY = 65536
local MAX_ID = 128
local MAX_METADATA = 16384
local MAX_DEPTH = 32
local MAX_EMAIL = 254
local MAX_URL = 2048
local MAX_CHAT = '9007199254740991' -- 2^53 - 1: every JSON parser reads it exactly
local SIGNALS_KEPT = 64
local FIELDS = 'order_id, provider, payment_id, notify, metadata'
local NOTIFY_FIELDS = 'email, telegram_chat_id, webhook_url'
local KNOWN_FIELDS = {order_id = true, provider = true, payment_id = true, notify = true,
  metadata = true}
local KNOWN_NOTIFY_FIELDS = {email = true, telegram_chat_id = true, webhook_url = true}
local PROVIDERS = {cashless = true, handcash = true, miraclecash = true, foxreload = true}
local PROVIDER_LIST = 'cashless, handcash, miraclecash, foxreload'

-- A JSON null that survives in Lua tables.
local NULL = {}

-- Errors that name a field travel as tables and become `ERR paywatch: <field>: <message>`.
local function fail(field, message)
  error({paywatch = 'ERR paywatch: ' .. field .. ': ' .. message}, 0)
end

-- What may be echoed back in an error: printable ASCII, bounded.
local function printable(s)
  s = string.gsub(s, '[^\33-\126]', '?')
  if #s > 64 then s = string.sub(s, 1, 64) .. '...' end
  return s
end

-- Bytewise string order (Lua's `<` follows the server's locale).
local function bytes_less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

---------------------------------------------------------------------------------------------
-- Strict JSON (RFC 8259): UTF-8 only, no duplicate keys, numbers kept as written, bounded depth.
---------------------------------------------------------------------------------------------

local function check_utf8(s)
  -- Most bodies are ASCII: one anchored pass says so (an unanchored search for the first high
  -- byte tries a match at every byte, three times slower).
  if string.find(s, '^[%z\1-\127]*$') then return nil end
  local i = string.find(s, '[\128-\255]')
  while i do
    local c = string.byte(s, i)
    local n, min
    if c >= 0xC2 and c <= 0xDF then n, min = 1, 0x80
    elseif c >= 0xE0 and c <= 0xEF then n, min = 2, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then n, min = 3, 0x10000
    else return i end
    local cp = c % (2 ^ (6 - n))
    for k = 1, n do
      local cc = string.byte(s, i + k)
      if not cc or cc < 0x80 or cc > 0xBF then return i end
      cp = cp * 64 + (cc - 0x80)
    end
    if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return i end
    i = string.find(s, '[\128-\255]', i + n + 1)
  end
  return nil
end

-- Every submit parses a body, so the parser is written for speed: its state lives in these
-- upvalues (no closures built per call) and bytes are compared as numbers (string.byte makes no
-- string per character). That parses the README's example order about a quarter faster than
-- the closure-per-call version with the same verdicts and messages. The `string` library is
-- there when functions run, not while they load: it is bound on first use.
local byte, find, sub
local QUOTE, BACKSLASH, COMMA, COLON, MINUS, PLUS, DOT = 34, 92, 44, 58, 45, 43, 46
local ZERO, NINE, LBRACE, RBRACE, LBRACKET, RBRACKET = 48, 57, 123, 125, 91, 93
local js, jpos, jlen, jdepth, jtrail = '', 1, 0, 0, {}

local function bad(what) fail('body', 'not valid JSON: ' .. what .. ' at byte ' .. jpos) end

local function ws()
  local c = byte(js, jpos)
  if c == 32 or c == 9 or c == 10 or c == 13 then -- space, tab, LF, CR
    jpos = find(js, '[^ \t\r\n]', jpos) or (jlen + 1)
  end
end

local function str()
  local s = js
  local start = jpos
  jpos = jpos + 1
  local escaped = false
  while true do
    local i = find(s, '["\\%z\1-\31]', jpos)
    if not i then jpos = jlen + 1; bad('unterminated string') end
    local c = byte(s, i)
    if c == QUOTE then jpos = i + 1; break end
    if c ~= BACKSLASH then jpos = i; bad('control character in string') end
    local e = sub(s, i + 1, i + 1)
    if e == 'u' then
      local hex = sub(s, i + 2, i + 5)
      if not find(hex, '^%x%x%x%x$') then jpos = i; bad('invalid \\u escape') end
      local cp = tonumber(hex, 16)
      if cp >= 0xD800 and cp <= 0xDBFF then
        local low = string.match(s, '^\\u(%x%x%x%x)', i + 6)
        local lo = low and tonumber(low, 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then jpos = i; bad('unpaired surrogate') end
        jpos = i + 12
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        jpos = i; bad('unpaired surrogate')
      else
        jpos = i + 6
      end
    elseif find(e, '^["\\/bfnrt]$') then
      jpos = i + 2
    else
      jpos = i; bad('invalid escape')
    end
    escaped = true
  end
  if not escaped then return sub(s, start + 1, jpos - 2) end
  -- The escapes were checked above; cjson only turns them into bytes.
  return cjson.decode(sub(s, start, jpos - 1))
end

local function num()
  local s = js
  local start = jpos
  if byte(s, jpos) == MINUS then jpos = jpos + 1 end
  if byte(s, jpos) == ZERO then
    jpos = jpos + 1
  else
    local _, e = find(s, '^[1-9]%d*', jpos)
    if not e then bad('invalid number') end
    jpos = e + 1
  end
  local c = byte(s, jpos)
  if c == DOT then
    local _, e = find(s, '^%d+', jpos + 1)
    if not e then bad('invalid number') end
    jpos = e + 1
    c = byte(s, jpos)
  end
  if c == 101 or c == 69 then -- e, E
    jpos = jpos + 1
    c = byte(s, jpos)
    if c == PLUS or c == MINUS then jpos = jpos + 1 end
    local _, e = find(s, '^%d+', jpos)
    if not e then bad('invalid number') end
    jpos = e + 1
  end
  return {num = sub(s, start, jpos - 1)}
end

-- The keys from the root to the value being parsed: an error names its field by them, and the
-- (printable) path is only built when there is an error to report.
local function path_to(k)
  local parts = {}
  for i, key in ipairs(jtrail) do parts[i] = printable(key) end
  parts[#parts + 1] = printable(k)
  return table.concat(parts, '.')
end

local value

-- Opens an object or array at jpos; true (and closed again) when `close` follows at once.
local function open(close)
  jdepth = jdepth + 1
  if jdepth > MAX_DEPTH then bad('nested deeper than ' .. MAX_DEPTH) end
  jpos = jpos + 1
  ws()
  if byte(js, jpos) ~= close then return false end
  jpos = jpos + 1
  jdepth = jdepth - 1
  return true
end

-- After a member or element: true when `close` ends the container, on to the next after a comma.
local function closes(close, expected)
  ws()
  local c = byte(js, jpos)
  if c == close then
    jpos = jpos + 1
    jdepth = jdepth - 1
    return true
  end
  if c ~= COMMA then bad(expected) end
  jpos = jpos + 1
  return false
end

local function object()
  local map, keys = {}, {}
  if open(RBRACE) then return {obj = map, keys = keys} end
  repeat
    ws()
    if byte(js, jpos) ~= QUOTE then bad('expected a key') end
    local at = jpos
    local k = str()
    if map[k] ~= nil then jpos = at; fail(path_to(k), 'duplicate key') end
    ws()
    if byte(js, jpos) ~= COLON then bad('expected :') end
    jpos = jpos + 1
    jtrail[#jtrail + 1] = k
    map[k] = value()
    jtrail[#jtrail] = nil
    keys[#keys + 1] = k
  until closes(RBRACE, 'expected , or }')
  return {obj = map, keys = keys}
end

local function array()
  local items = {}
  if open(RBRACKET) then return {arr = items, n = 0} end
  repeat
    items[#items + 1] = value()
  until closes(RBRACKET, 'expected , or ]')
  return {arr = items, n = #items}
end

value = function()
  ws()
  local c = byte(js, jpos)
  if c == LBRACE then return object()
  elseif c == LBRACKET then return array()
  elseif c == QUOTE then return str()
  elseif c == MINUS or (c and c >= ZERO and c <= NINE) then return num()
  elseif c == 116 and sub(js, jpos, jpos + 3) == 'true' then jpos = jpos + 4; return true
  elseif c == 102 and sub(js, jpos, jpos + 4) == 'false' then jpos = jpos + 5; return false
  elseif c == 110 and sub(js, jpos, jpos + 3) == 'null' then jpos = jpos + 4; return NULL
  elseif c == nil then bad('unexpected end')
  end
  bad('unexpected character')
end

local function parse_json(s)
  local bad_byte = check_utf8(s)
  if bad_byte then fail('body', 'not valid JSON: invalid UTF-8 at byte ' .. bad_byte) end
  if not byte then byte, find, sub = string.byte, string.find, string.sub end
  -- A parse that failed part-way left its state behind; every parse starts from scratch.
  js, jpos, jlen, jdepth, jtrail = s, 1, #s, 0, {}
  local v = value()
  ws()
  if jpos <= jlen then bad('trailing characters') end
  return v
end

-- The fast path. Most bodies are plain: printable ASCII and spaces, no escapes, no arrays,
-- integers only. For those, cjson's C parser reads the values the strict parser would, about
-- fifteen times faster, once the three things cjson does not check hold: no key repeats in an
-- object, every number is an integer written canonically in at most 15 characters (exact in a
-- double, so it prints back as written), and nesting stays within MAX_DEPTH. Any other body,
-- and any body this path cannot accept, goes to the strict parser: it alone gives verdicts
-- and messages, so the fast path changes how quickly an order is read, never what is read.
local function from_cjson(v)
  local t = type(v)
  if t == 'number' then return {num = string.format('%d', v)}, 0 end
  if t ~= 'table' then
    if v == cjson.null then return NULL, 0 end
    return v, 0
  end
  -- No arrays reach here (the caller checked), so every table is an object.
  local map, keys, count = {}, {}, 0
  for k, x in pairs(v) do
    local value, inner = from_cjson(x)
    map[k] = value
    keys[#keys + 1] = k
    count = count + inner + 1
  end
  return {obj = map, keys = keys}, count
end

-- The parsed body when it is plain (see above), else nil.
local function parse_plain(s)
  -- Anchored patterns: one pass over the body, where an unanchored class search tries a match
  -- at every byte (three times slower in Redis's Lua).
  if not string.find(s, '^[ -~]*$') or string.find(s, '\\', 1, true) then return nil end
  -- Without escapes a string is `"[^"]*"`: replaced by S, what is left is the structure.
  local skeleton = string.gsub(s, '"[^"]*"', 'S')
  if string.find(skeleton, '[%[%]"]') then return nil end
  for token in string.gmatch(skeleton, '[^{}:,S ]+') do
    if token ~= 'true' and token ~= 'false' and token ~= 'null' and token ~= '0'
      and not (#token <= 15 and string.find(token, '^%-?[1-9]%d*$')) then
      return nil
    end
  end
  local depth, deepest = 0, 0
  for brace in string.gmatch(skeleton, '[{}]') do
    if brace == '{' then
      depth = depth + 1
      if depth > deepest then deepest = depth end
    else
      depth = depth - 1
    end
  end
  if deepest > MAX_DEPTH then return nil end
  local ok, decoded = pcall(cjson.decode, s)
  if not ok then return nil end
  local value, keys = from_cjson(decoded)
  -- cjson keeps the last of repeated keys: fewer keys decoded than written means a repeat.
  if keys ~= select(2, string.gsub(skeleton, 'S *:', '')) then return nil end
  return value
end

-- Canonical JSON: keys in byte order, no spaces, numbers as written, serde_json's escaping.
local ESCAPES = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                 ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
local function escape(c)
  return ESCAPES[c] or string.format('\\u%04x', string.byte(c))
end
local function encode_string(v)
  -- Most strings need no escape: one scan, no copy.
  if not string.find(v, '[%z\1-\31"\\]') then return '"' .. v .. '"' end
  return '"' .. string.gsub(v, '[%z\1-\31"\\]', escape) .. '"'
end

local function encode(v)
  local t = type(v)
  if t == 'string' then return encode_string(v) end
  if t == 'boolean' then return v and 'true' or 'false' end
  if v == NULL then return 'null' end
  if v.num then return v.num end
  if v.arr then
    local out = {}
    for i = 1, v.n do out[i] = encode(v.arr[i]) end
    return '[' .. table.concat(out, ',') .. ']'
  end
  local keys = {}
  for i, k in ipairs(v.keys) do keys[i] = k end
  table.sort(keys, bytes_less)
  local out = {}
  for i, k in ipairs(keys) do out[i] = encode_string(k) .. ':' .. encode(v.obj[k]) end
  return '{' .. table.concat(out, ',') .. '}'
end

---------------------------------------------------------------------------------------------
-- Validation: the rules of every door (crates/core/src/targets.rs mirrors the target rules).
---------------------------------------------------------------------------------------------

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

-- A host name: dot-separated labels of letters, digits and inner hyphens.
local function valid_labels(host, min_labels)
  if #host == 0 or #host > 253 then return false end
  local count = 0
  for label in string.gmatch(host .. '.', '([^.]*)%.') do
    if #label == 0 or #label > 63 then return false end
    if not string.find(label, '^[A-Za-z0-9-]+$') then return false end
    if string.sub(label, 1, 1) == '-' or string.sub(label, -1) == '-' then return false end
    count = count + 1
  end
  return count >= min_labels
end

local function email_problem(v)
  if #v > MAX_EMAIL then return 'is longer than ' .. MAX_EMAIL .. ' characters' end
  local at = string.find(v, '@', 1, true)
  if not at or string.find(v, '@', at + 1, true) then return 'must contain exactly one @' end
  local user, domain = string.sub(v, 1, at - 1), string.sub(v, at + 1)
  if #user == 0 or #user > 64 then return 'must have 1 to 64 characters before the @' end
  if not string.find(user, "^[A-Za-z0-9!#$%%&'*+/=?^_`{|}~.-]+$") then
    return "may only use letters, digits and !#$%&'*+/=?^_`{|}~.- before the @"
  end
  if string.sub(user, 1, 1) == '.' or string.sub(user, -1) == '.' or string.find(user, '..', 1, true) then
    return 'must not start or end with a dot or have two in a row before the @'
  end
  if not valid_labels(domain, 2) or not string.find(string.match(domain, '[^.]*$'), '%a') then
    return 'must have a domain name after the @ (like example.com)'
  end
  return nil
end

-- IP-literal webhook hosts, read as the notifiers' URL parser (the WHATWG URL standard) reads
-- them, so that a host it would refuse is refused here and an address is judged as the one it
-- will connect to: `127.1`, `0x7f.0.0.1` and `2130706433` are all 127.0.0.1. Addresses come back
-- as fixed-width lowercase hex (8 or 32 digits), the form allow-lists are published in.

-- A WHATWG IPv4 number: its value, OVERFLOW past 2^32 - 1, or nil when it is not a number.
local OVERFLOW = -1
local function ipv4_number(part)
  if part == '' then return nil end
  local digits, class, radix = part, '^%d+$', 10
  if string.find(part, '^0[xX]') then
    digits, class, radix = string.sub(part, 3), '^%x+$', 16
  elseif #part >= 2 and string.sub(part, 1, 1) == '0' then
    digits, class, radix = string.sub(part, 2), '^[0-7]+$', 8
  end
  if digits == '' then return 0 end
  if not string.find(digits, class) then return nil end
  digits = string.gsub(digits, '^0+', '')
  -- 12 significant digits exceed 2^32 in any of the three radixes; 11 are still exact.
  if #digits > 11 then return OVERFLOW end
  local n = tonumber(digits ~= '' and digits or '0', radix)
  if n > 4294967295 then return OVERFLOW end
  return n
end

-- For a host that is not bracketed: nil for a domain name, false for a host that ends in a
-- number but is no IPv4 address, else the address.
local function ipv4_host(host)
  -- Most hosts are names: decided by the last label alone, before splitting the rest.
  local last = string.match(host, '[^.]+$')
  if not string.find(last, '^%d+$') and ipv4_number(last) == nil then return nil end
  local parts = {}
  for part in string.gmatch(host, '[^.]+') do parts[#parts + 1] = part end
  if #parts > 4 then return false end
  local value = 0
  for i, part in ipairs(parts) do
    local n = ipv4_number(part)
    if n == nil or n == OVERFLOW then return false end
    if i < #parts then
      if n > 255 then return false end
      value = value + n * 256 ^ (4 - i)
    else
      if n >= 256 ^ (5 - #parts) then return false end
      value = value + n
    end
  end
  return string.format('%08x', value)
end

-- The bracketed host's inside as an IPv6 address, or false (the WHATWG IPv6 parser).
local function ipv6_host(s)
  local pieces = {0, 0, 0, 0, 0, 0, 0, 0}
  local len, i, piece, compress = #s, 1, 1, nil
  local function at(k) return string.sub(s, k, k) end
  if len < 2 then return false end
  if at(1) == ':' then
    if at(2) ~= ':' then return false end
    i, piece, compress = 3, 2, 2
  end
  local ipv4 = false
  while i <= len do
    if piece == 9 then return false end
    if at(i) == ':' then
      if compress then return false end
      i = i + 1
      piece = piece + 1
      compress = piece
    else
      local start, value = i, 0
      while i <= len and i < start + 4 and string.find(at(i), '^%x$') do
        value = value * 16 + tonumber(at(i), 16)
        i = i + 1
      end
      if i <= len then
        local c = at(i)
        if c == '.' then
          if i == start or piece > 7 then return false end
          i = start
          ipv4 = true
        elseif c == ':' then
          i = i + 1
          if i > len then return false end
        else
          return false
        end
      end
      if ipv4 then break end
      pieces[piece] = value
      piece = piece + 1
    end
  end
  if ipv4 then
    if piece > 7 then return false end
    local seen = 0
    while i <= len do
      if seen > 0 then
        if seen < 4 and at(i) == '.' then i = i + 1 else return false end
      end
      local octet = nil
      while i <= len and string.find(at(i), '^%d$') do
        local d = tonumber(at(i))
        if octet == nil then
          octet = d
        elseif octet == 0 then
          return false
        else
          octet = octet * 10 + d
          if octet > 255 then return false end
        end
        i = i + 1
      end
      if octet == nil then return false end
      pieces[piece] = pieces[piece] * 256 + octet
      seen = seen + 1
      if seen == 2 or seen == 4 then piece = piece + 1 end
    end
    if seen ~= 4 then return false end
  end
  if i <= len then return false end
  if compress then
    -- Move the pieces after the `::` to the end; zeros fill the gap.
    local swaps = piece - compress
    piece = 8
    while swaps > 0 do
      pieces[piece], pieces[compress + swaps - 1] = pieces[compress + swaps - 1], pieces[piece]
      swaps = swaps - 1
      piece = piece - 1
    end
  elseif piece ~= 9 then
    return false
  end
  local hex = {}
  for k = 1, 8 do hex[k] = string.format('%04x', pieces[k]) end
  return table.concat(hex)
end

local function url_problem(v)
  if #v > MAX_URL then return 'is longer than ' .. MAX_URL .. ' characters' end
  if string.find(v, '[^\33-\126]') then return 'may only contain printable ASCII without spaces' end
  local rest = string.match(v, '^https?://(.*)$')
  if not rest then return 'must start with http:// or https://' end
  if string.find(v, '#', 1, true) then return 'must not contain a fragment (#)' end
  local authority = string.match(rest, '^[^/?]*')
  if string.find(authority, '@', 1, true) then return 'must not contain credentials' end
  local host, port, ip = authority, nil, nil
  if string.sub(authority, 1, 1) == '[' then
    local inside
    inside, port = string.match(authority, '^%[([^%]]*)%](.*)$')
    ip = inside and ipv6_host(inside)
    if not ip then return 'has an invalid IPv6 host' end
    ip = {'6', ip}
  else
    host, port = string.match(authority, '^([^:]*)(.*)$')
    if not valid_labels(host, 1) then return 'must have a host name' end
    local v4 = ipv4_host(host)
    if v4 == false then return 'has a host that ends in a number but is not a valid IPv4 address' end
    if v4 then ip = {'4', v4} end
  end
  if port ~= '' then
    local digits = string.match(port, '^:(%d+)$')
    if not digits or #digits > 5 or tonumber(digits) < 1 or tonumber(digits) > 65535 then
      return 'has an invalid port'
    end
  end
  local tail = string.sub(rest, #authority + 1)
  local pct = string.find(tail, '%', 1, true)
  while pct do
    if not string.find(tail, '^%x%x', pct + 1) then return 'has an invalid percent-escape' end
    pct = string.find(tail, '%', pct + 3, true)
  end
  return nil, ip
end

local function chat_problem(raw)
  local neg, digits = string.match(raw, '^(%-?)(%d+)$')
  if not digits then return 'must be an integer' end
  if digits == '0' then return 'must not be 0' end
  if #digits > #MAX_CHAT or (#digits == #MAX_CHAT and digits > MAX_CHAT) then
    return 'must be between -' .. MAX_CHAT .. ' and ' .. MAX_CHAT
  end
  return nil, neg .. digits
end

-- Validates a parsed order and returns its canonical parts.
local function validate(body)
  if not is_object(body) then fail('body', 'must be a JSON object, not ' .. kind_of(body)) end
  reject_unknown(body, KNOWN_FIELDS, '', FIELDS)
  local o = body.obj
  local order = {}
  order.order_id = identifier('order_id', o.order_id)
  if absent(o.provider) then fail('provider', 'is required') end
  if type(o.provider) ~= 'string' or not PROVIDERS[o.provider] then
    fail('provider', 'must be one of ' .. PROVIDER_LIST)
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
  return order
end

-- A submitted body's order: by the fast path when it is plain and valid, else by the strict
-- parser and the same validation, which give the verdict and its message.
local function read_order(body)
  local plain = parse_plain(body)
  if plain then
    local ok, order = pcall(validate, plain)
    if ok then return order end
  end
  return validate(parse_json(body))
end

---------------------------------------------------------------------------------------------
-- Records
---------------------------------------------------------------------------------------------

local function opt_string(v) if v then return encode_string(v) end return 'null' end

local function new_record(order, now)
  local parts = {encode_string(order.provider), encode_string(order.payment_id),
    opt_string(order.email), order.chat or 'null', opt_string(order.webhook),
    string.format('%d', now)}
  if order.metadata then parts[#parts + 1] = order.metadata end
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

---------------------------------------------------------------------------------------------
-- Shards
---------------------------------------------------------------------------------------------

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

-- The range an IPv4 address (8 hex digits) is in that webhooks may not reach by default, named
-- as the notifiers name it (crates/core/src/ip_ranges.rs), or nil.
local function blocked_v4(h)
  if h == '00000000' then return 'unspecified' end
  if h == 'ffffffff' then return 'broadcast' end
  local a, b = tonumber(string.sub(h, 1, 2), 16), tonumber(string.sub(h, 3, 4), 16)
  if a == 0 then return '"this network" (0.0.0.0/8)' end
  if a == 127 then return 'loopback' end
  if a == 10 or (a == 172 and b >= 16 and b <= 31) or (a == 192 and b == 168) then
    return 'private-network'
  end
  if a == 100 and b >= 64 and b <= 127 then return 'carrier-grade NAT (100.64.0.0/10)' end
  if a == 169 and b == 254 then return 'link-local' end
  if a >= 224 and a <= 239 then return 'multicast' end
  if a >= 240 then return 'reserved' end
  return nil
end

-- Literals: the string library is not there yet while the library loads.
local V6_ZERO = '00000000000000000000000000000000'
local V6_LOOPBACK = '00000000000000000000000000000001'
local V6_MAPPED = '00000000000000000000ffff'
local V6_NAT64 = '0064ff9b0000000000000000'
local V6_COMPATIBLE = '000000000000000000000000'
local V6_NAT64_LOCAL = '0064ff9b0001'
local V6_6TO4 = '2002'
local V6_TEREDO = '20010000'

-- The IPv4 address (8 hex digits) an IPv6 address carries to its destination, or nil:
-- IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96 and the local-use 64:ff9b:1::/48 (the last 32
-- bits), 6to4 2002::/16 (bits 16-47: the relay sends it there) and Teredo 2001::/32 (the client,
-- the last 32 bits inverted). As ip_ranges.rs `embedded_ipv4` reads them.
local function embedded_v4(h)
  local head = string.sub(h, 1, 24)
  if head == V6_MAPPED or head == V6_NAT64 or string.sub(h, 1, 12) == V6_NAT64_LOCAL then
    return string.sub(h, 25)
  end
  if string.sub(h, 1, 4) == V6_6TO4 then return string.sub(h, 5, 12) end
  if string.sub(h, 1, 8) == V6_TEREDO then
    return (string.gsub(string.sub(h, 25), '%x', function(c)
      return string.format('%x', 15 - tonumber(c, 16))
    end))
  end
  return nil
end

-- The same for an IPv6 address (32 hex digits); one that carries an IPv4 address (see
-- embedded_v4) is judged by it.
local function blocked_v6(h)
  local v4 = embedded_v4(h)
  if v4 then return blocked_v4(v4) end
  local head = string.sub(h, 1, 24)
  if h == V6_ZERO then return 'unspecified' end
  if h == V6_LOOPBACK then return 'loopback' end
  if head == V6_COMPATIBLE then return 'reserved' end
  local s0 = tonumber(string.sub(h, 1, 4), 16)
  if s0 >= 0xfc00 and s0 <= 0xfdff then return 'private-network' end
  if s0 >= 0xfe80 and s0 <= 0xfebf then return 'link-local' end
  if s0 >= 0xfec0 and s0 <= 0xfeff then return 'private-network' end
  if s0 >= 0xff00 then return 'multicast' end
  return nil
end

-- Refuses an IP-literal webhook URL in a blocked range unless the allow-list the webhook
-- notifiers published in the shard's meta covers it (an IPv4-mapped address is also matched
-- against IPv4 ranges, as the notifiers match it). Deliveries would be refused the same way.
-- Before any notifier has published, the fleet's list is unknown: the notifier judges at
-- delivery, as it always does.
local function check_webhook_ip(base, ip)
  local family, hex = ip[1], ip[2]
  local range
  if family == '4' then range = blocked_v4(hex) else range = blocked_v6(hex) end
  if not range then return end
  local list = redis.call('HGET', base .. ':meta', 'webhook_allow')
  if not list then return end
  local v4 = family == '6' and string.sub(hex, 1, 24) == V6_MAPPED and string.sub(hex, 25) or nil
  for f, first, last in string.gmatch(list, '(%d):(%x+)%-(%x+)') do
    if f == family and first <= hex and hex <= last then return end
    if v4 and f == '4' and first <= v4 and v4 <= last then return end
  end
  fail('notify.webhook_url', 'points at an address webhooks may not reach (' .. range ..
    ') unless the notifiers allow it in PAYWATCH_WEBHOOK_ALLOW_HOSTS')
end


local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Wakes one idle check worker of the shard. The signal list is bounded; LPUSH answers its
-- length, so the trim runs only when there is something to trim.
local function wake(base)
  local key = base .. ':signal'
  if redis.call('LPUSH', key, '1') > SIGNALS_KEPT then redis.call('LTRIM', key, 0, SIGNALS_KEPT - 1) end
end

-- Where an order stands: 'final' (in :orders), 'watching' (a pending check job), 'stopped' (its
-- check is in the dead letters) or nil. Returns the phase, the record and the dead letter.
local function find(base, id)
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

---------------------------------------------------------------------------------------------
-- Functions
---------------------------------------------------------------------------------------------

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

-- FCALL paywatch_submit 1 <prefix>:{check-payment.<shard>} <order JSON>
-- -> {'created', 'pending', 'watching'} | {'exists', <status>, <phase>}
local function submit(keys, args)
  one_key(keys)
  local body = args[1]
  if type(body) ~= 'string' then fail('body', 'is required (the order JSON)') end
  if #args > 1 then fail('body', 'takes exactly one argument, the order JSON') end
  if #body > MAX_BODY then fail('body', 'is larger than ' .. MAX_BODY .. ' bytes') end
  local order = read_order(body)
  local base = keys[1]
  check_shard(base, order.order_id)
  if order.webhook_ip then check_webhook_ip(base, order.webhook_ip) end
  local id = order.order_id
  local phase, rec = find(base, id)
  if phase then
    local stored, status = read_record(rec)
    if not stored or not same_order(stored, order) then
      fail('order_id', 'an order with this id already exists with a different body')
    end
    return {'exists', status, phase}
  end
  local now = now_ms()
  redis.call('HSET', base .. ':jobs', id, new_record(order, now))
  redis.call('ZADD', base .. ':due', now, id)
  redis.call('HSETNX', base .. ':payments', order.provider .. ':' .. order.payment_id, id)
  redis.call('HINCRBY', base .. ':stats', 'enqueued', 1)
  wake(base)
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
  local phase, rec, letter = find(base, id)
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

-- FCALL paywatch_check_now 1 <shard key> <provider> <payment id> [min gap ms]
-- A provider webhook named this payment: check its order now. Storms coalesce: however many
-- webhooks arrive, a check never follows the previous one by less than the gap (default 2000 ms),
-- and a check that is due or running absorbs them all. Returns the order id and what happened
-- ('moved', 'due', 'running', 'none') or nil when no order watches the payment.
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
  local now = now_ms()
  local due = redis.call('ZSCORE', base .. ':due', id)
  if due then
    due = tonumber(due)
    if due <= now then return {id, 'due'} end
    -- Not before the last check plus the gap (the record knows when that was).
    local at = now
    local rec = redis.call('HGET', base .. ':jobs', id)
    local ok, v = pcall(parse_json, rec or '')
    if ok and type(v) == 'table' and v.arr and is_object(v.arr[8]) then
      local last = v.arr[8].obj.l
      if type(last) == 'table' and last.num then at = math.max(now, tonumber(last.num) + gap) end
    end
    if at >= due then return {id, 'due'} end
    redis.call('ZADD', base .. ':due', 'XX', at, id)
    wake(base)
    return {id, 'moved'}
  end
  if redis.call('ZSCORE', base .. ':leases', id) then
    -- The running check may have asked before the payment moved: one more follows it, not
    -- before the gap (the queue's settle reads this as "due not before").
    redis.call('HSETNX', base .. ':promoted', id, string.format('%d', now + gap))
    return {id, 'running'}
  end
  return {id, 'none'}
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
redis.register_function('paywatch_check_now', guarded(check_now))
redis.register_function{function_name = 'paywatch_version', callback = version,
  flags = {'no-writes', 'allow-stale'}}
redis.register_function{function_name = 'paywatch_shard', callback = guarded(shard),
  flags = {'no-writes', 'allow-stale'}}
