-- Take every queued trigger of a shard. KEYS: trigger list, lease.
-- ARGV: holder|token. Only the lease holder may take them.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {} end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return items
