-- Remove a member at once. KEYS: members hash, deadline zset. ARGV: id, channel.
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', ARGV[2], 'member:leave:' .. ARGV[1]) end
return removed
