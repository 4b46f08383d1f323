-- Remove a job, its index entry, its watermark and its share of its shard's
-- live weight, and announce it, in one atomic step.
-- KEYS: jobs hash, job-version hash, shard version counter, last-fired hash,
--   job index, trigger-instant hash, per-job weights hash, live weights hash,
--   live weights version counter.
-- ARGV: id, expected version ('' = any), events channel, shard.
-- Returns 1 removed, 0 absent, -1 conflict.
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return 0 end
if ARGV[2] ~= '' and current ~= ARGV[2] then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('ZREM', KEYS[5], ARGV[1])
local old_weight = tonumber(redis.call('HGET', KEYS[7], ARGV[1]) or '0')
if old_weight > 0 then
  redis.call('HDEL', KEYS[7], ARGV[1])
  local sum = redis.call('HINCRBY', KEYS[8], ARGV[4], string.format('%d', -old_weight))
  if sum <= 0 then redis.call('HDEL', KEYS[8], ARGV[4]) end
  redis.call('INCR', KEYS[9])
end
redis.call('PUBLISH', ARGV[3], 'jobs:' .. ARGV[4])
return 1
