#!lua name=paywatch
-- paywatch's Redis Function library: the one door through which every language submits orders.
--
-- The producer's HTTP API, its CLI, its Rust API and any Redis client call the same functions, so
-- every door validates with the same rules, byte for byte. docs/enqueue-from-any-language.md is
-- the contract; crates/core/src/store/mod.rs loads this library and speaks it from Rust.
--
-- The library is one Lua chunk assembled at build time (crates/core/src/store/library.rs) from
-- files in crates/core/src/store/lua/, each one concept, in this order; a part may use the locals
-- of the parts before it:
--   prelude.lua     this header, the contract version, errors and small helpers
--   json.lua        the strict JSON parser (RFC 8259) and the canonical encoder
--   fast_path.lua   plain bodies read by cjson, checked for what cjson lets through
--   ip.lua          IP-literal hosts read as URL parsers read them, and the blocked ranges
--   targets.lua     the notify target rules (email, Telegram chat, webhook URL)
--   order.lua       an order's validation: fields, identifiers, metadata
--   writes.lua      the queue's own writes (crates/queue/src/lua/writes.lua, paywatch-queue's
--                   JOB_WRITES_LUA): the only Lua that writes the queue's keys
--   storage.lua     records, shards and where an order stands
--   functions.lua   the registered functions
--
-- Why the door parses JSON in Lua: any language may call it with a raw body (redis-cli, a shell
-- script, a PHP shop), so the rules have to live where every caller meets them, and a verdict
-- must not depend on the client's JSON library. What that costs per submit (about 25 us of Redis
-- time for the README's example order) and how it was measured: docs/queue.md, "Why the door
-- parses JSON in Lua".
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
-- The shard of an order is crc32(order_id) % N (IEEE CRC-32, as zlib computes it). The queue's
-- keys (jobs, due, signal, promoted) are written only through writes.lua.
--
-- Records are compact JSON arrays, written here on submission and by workers afterwards:
--   [provider, payment_id, email|null, telegram_chat_id|null, webhook_url|null, created_ms,
--    metadata|null, state|null, traceparent|null]
-- Trailing nulls may be left out. `state` is the worker's (status, poll state, history);
-- `traceparent` is the order's W3C trace context, when it came with one (the body's field, or
-- the producer's), which every later check and notification links to.

local CONTRACT = 1        -- what this library offers; bumped when a function or reply changes
local MIN_COMPATIBLE = 1  -- the oldest contract whose callers this library still serves
local REVISION = 15       -- bumped on every change of any part (library.rs checks it)

local MAX_BODY = 65536

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
