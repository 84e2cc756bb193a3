-- The ops watcher's lease, taken or renewed in one step (see ops.rs).
--
-- KEYS[1]: the lease (keys::ops_leader), a STRING holding its holder's name.
-- ARGV[1]: the candidate's name. ARGV[2]: the lease, in milliseconds.
--
-- Returns 1 when the candidate holds the lease now, for ARGV[2] ms from now: it was free and is
-- taken, or the candidate held it and it is renewed. Returns 0 when another holds it. Read and
-- write happen in one script so a lease cannot lapse and change hands between them.
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
