-- json.lua: strict JSON (RFC 8259: UTF-8 only, no duplicate keys, numbers kept as written,
-- bounded depth) for every body the fast path does not take and every stored record read back,
-- and the canonical encoder for metadata and records.
-- Uses from prelude.lua: NULL, fail, printable, bytes_less.

local MAX_DEPTH = 32

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
