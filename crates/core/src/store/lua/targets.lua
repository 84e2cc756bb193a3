-- targets.lua: the rules for notify targets (crates/core/src/targets.rs mirrors them): email
-- addresses, Telegram chat ids, webhook URLs, and the webhook notifiers' allow-list.
-- Uses from earlier parts: fail (prelude.lua), ipv4_host, ipv6_host, blocked_v4, blocked_v6,
-- V6_MAPPED (ip.lua).

local MAX_EMAIL = 254
local MAX_URL = 2048
local MAX_CHAT = '9007199254740991' -- 2^53 - 1: every JSON parser reads it exactly

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
