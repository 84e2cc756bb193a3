-- ip.lua: IP-literal webhook hosts, and the address ranges webhooks may not reach by default.
-- Pure functions of strings: no Redis, no errors raised.

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
