-- Fleet-wide Telegram pacing, checked and reserved in one step: at most one message per chat per
-- interval, and at most `limit` messages per bot in any sliding window (one second). Either both
-- budgets have room and a slot is taken in each, or nothing is written and the wait is returned.
-- KEYS: 1 chat key  (STRING: Unix ms before which this chat must not get another message;
--                    expires at that moment),
--       2 bot key   (ZSET: one member per message of the current window, scored by Unix ms;
--                    never more than `limit` members, expires one window after the last send)
-- ARGV: 1 chat interval ms (>= 1), 2 bot limit (>= 1), 3 window ms, 4 chat id
-- Returns {0, 0} when reserved, otherwise {wait ms (> 0), 1 = chat budget | 2 = bot budget}.
-- Times are whole milliseconds from the Redis clock (as in the queue's scripts), so every worker
-- uses the same clock and the numbers stay exact in Lua's doubles.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])

local wait, budget = 0, 0
local chat_next = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if chat_next > now then
  wait, budget = chat_next - now, 1
end

-- A sliding log rather than a token bucket: a bucket of `limit` refilling at `limit`/s lets
-- 2 * limit - 1 messages through in some one-second window, which is what Telegram throttles.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[2])
if count >= limit then
  -- Room appears when the (count - limit + 1) oldest sends have left the window; counting from
  -- `count` rather than `limit` keeps this right after the limit was lowered.
  local entry = redis.call('ZRANGE', KEYS[2], count - limit, count - limit, 'WITHSCORES')
  local bot_wait = tonumber(entry[2]) + window - now
  if bot_wait > wait then
    wait, budget = bot_wait, 2
  end
end
if wait > 0 then
  return {wait, budget}
end

redis.call('SET', KEYS[1], string.format('%d', now + interval), 'PX', interval)
-- The chat id makes the member unique: one chat cannot reserve twice in the same millisecond.
redis.call('ZADD', KEYS[2], string.format('%d', now), string.format('%d', now) .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[2], window)
return {0, 0}
