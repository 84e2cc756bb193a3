-- Create an order record unless one exists. KEYS: 1 order hash. ARGV: 1 spec JSON, 2 created_at
-- (RFC 3339), 3 payment index key value (provider:payment_id)
-- Returns {"created"} | {"exists", status} | {"conflict", status}
local spec = redis.call('HGET', KEYS[1], 'spec')
if spec then
  local status = redis.call('HGET', KEYS[1], 'status') or 'pending'
  if spec == ARGV[1] then return {'exists', status} end
  return {'conflict', status}
end
redis.call('HSET', KEYS[1], 'spec', ARGV[1], 'created_at', ARGV[2], 'status', 'pending', 'checks', 0)
return {'created'}
