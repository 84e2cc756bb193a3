-- fast_path.lua: most submitted bodies are plain, and cjson reads those many times faster than
-- json.lua; this part decides when its reading can be trusted.
-- Uses from earlier parts: NULL (prelude.lua), MAX_DEPTH (json.lua).

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
