-- The namespace step of a job write on a Redis Cluster: set one shard's
-- live weight to the total its shard step returned.
-- KEYS: live weights hash, live weights version counter, per shard the
--   shard version of the total last applied (hash shard -> version).
-- ARGV: shard, shard version after the shard step, the shard's total.
-- A total is applied only if its shard version is above the last applied
-- one: the shard version orders the shard steps, so a late or repeated
-- namespace step never puts an older total back, and applying the same
-- total twice changes nothing. The live weights version moves only when a
-- weight did, as with put_job.lua.
-- Returns 1 applied, 0 stale (a later total of the shard was applied).
local seen = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '-1')
if tonumber(ARGV[2]) <= seen then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[3])
if old == new then return 1 end
if new > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('INCR', KEYS[2])
return 1
