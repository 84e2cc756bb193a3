#!lua flags=no-writes
-- One step of the orphan audit over one check shard (all keys share the shard's hash tag, so
-- this is a single-slot script). Read-only: it runs on a replica too, and writes nothing.
-- KEYS: 1 jobs (HASH order id -> record), 2 due (ZSET), 3 leases (ZSET), 4 orders (HASH of final
--       orders), 5 dead (HASH), 6 payments (HASH <provider>:<payment id> -> order id)
-- ARGV: 1 what to scan (jobs | payments), 2 cursor, 3 count hint
-- Returns {next cursor, entries looked at, {orphan order ids}}:
--   jobs:     a job record that is neither scheduled nor leased: nothing will ever run it;
--   payments: an index entry naming an order that is nowhere (no job, no final record, no dead
--             letter): its check job was deleted with its record.
local scan = redis.call('HSCAN', KEYS[ARGV[1] == 'jobs' and 1 or 6], ARGV[2], 'COUNT', ARGV[3])
local fields = scan[2]
local orphans = {}
local looked = 0
for i = 1, #fields, 2 do
  looked = looked + 1
  if ARGV[1] == 'jobs' then
    local id = fields[i]
    if not redis.call('ZSCORE', KEYS[2], id) and not redis.call('ZSCORE', KEYS[3], id) then
      orphans[#orphans + 1] = id
    end
  else
    local id = fields[i + 1]
    if redis.call('HEXISTS', KEYS[1], id) == 0 and redis.call('HEXISTS', KEYS[4], id) == 0
        and redis.call('HEXISTS', KEYS[5], id) == 0 then
      orphans[#orphans + 1] = id
    end
  end
end
return {scan[1], looked, orphans}
