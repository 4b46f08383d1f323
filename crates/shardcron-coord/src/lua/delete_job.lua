-- Remove a job, its index entry and its watermark, and announce it, in one
-- atomic step.
-- KEYS: jobs hash, job-version hash, shard version counter, last-fired hash,
--   job index, trigger-instant hash.
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
redis.call('PUBLISH', ARGV[3], 'jobs:' .. ARGV[4])
return 1
